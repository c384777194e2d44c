/**
 * The `hf-sandbox` CLI on HF Jobs, against the Hub emulator (jobs run as local processes; proxy and
 * tunnel hosts are routed to it), and how it finds the token. The harness (test/support/cli.ts) runs the
 * commands in this process. The CLI on the local provider is test/cli/local.test.ts: the two files run
 * side by side.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import {
  cli,
  createHf,
  emulator,
  expectCode,
  hf,
  job,
  startInProcess,
  TERMINAL,
  useCliHarness,
  work
} from "../support/cli.js"
import { closedPort } from "../support/ports.js"
import { until } from "../support/processes.js"

useCliHarness()

// ---------------------------------------------------------------------------
// HF Jobs (emulated Hub)
// ---------------------------------------------------------------------------

describe("hf-sandbox CLI, HF Jobs (emulated Hub)", () => {
  const token = () => Redacted.value(emulator.token)

  it("create leaves the job running; exec attaches, streams and exits with the command's code; kill cancels it", async () => {
    const created = await hf(["create", "--flavor", "cpu-upgrade", "--lifetime", "30m", "-e", "MODE=test"])
    expectCode(created, 0)
    const id = created.stdout.trim()
    assert.include(created.stderr, "10m")
    const record = await job(id)
    // The command has ended and released what it held: the job was left running, not cancelled.
    assert.strictEqual(record.stage, "RUNNING", "the job outlives the CLI")
    assert.strictEqual(record.cancelRequests, 0)
    const spec = record.spec as { flavor: string; timeoutSeconds: number; environment: Record<string, string> }
    assert.strictEqual(spec.flavor, "cpu-upgrade")
    assert.strictEqual(spec.timeoutSeconds, 1800)
    assert.strictEqual(spec.environment.MODE, "test")

    const ok = await hf(["exec", id, "--", "sh", "-c", 'echo "mode=$MODE"; echo warn >&2; exit 3'])
    expectCode(ok, 3)
    assert.strictEqual(ok.stdout, "mode=test\n")
    assert.strictEqual(ok.stderr, "warn\n")
    expectCode(await hf(["exec", "--timeout", "1s", id, "--", "sleep", "30"]), 124)

    const listed = await hf(["ls", "--json"])
    assert.deepInclude(
      (JSON.parse(listed.stdout) as Array<{ id: string; stage: string }>).map((s) => [s.id, s.stage]),
      [id, "RUNNING"]
    )
    const killed = await hf(["kill", id])
    expectCode(killed, 0)
    await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
    for (const r of [created, ok, listed, killed]) assert.notInclude(r.stdout + r.stderr, token())
  })

  it("secrets travel as job secrets (a bare NAME from the environment) and are never printed", async () => {
    const result = await cli(
      ["create", "--json", "--transport", "proxy", "-s", "API_KEY", "-s", "OTHER=inline-value"],
      {
        hf: true,
        env: { API_KEY: "from-the-env-1234" }
      }
    )
    expectCode(result, 0)
    const { id } = JSON.parse(result.stdout) as { id: string }
    const record = await job(id)
    assert.strictEqual(record.secrets.API_KEY, "from-the-env-1234")
    assert.strictEqual(record.secrets.OTHER, "inline-value")
    const visible = JSON.stringify((record.spec as { environment: unknown }).environment)
    assert.notInclude(visible, "from-the-env-1234")
    assert.notInclude(visible, "inline-value")
    assert.notInclude(result.stdout + result.stderr, "from-the-env-1234")
    const inside = await hf(["exec", id, "--", "printenv API_KEY"])
    assert.strictEqual(inside.stdout, "from-the-env-1234\n")
    expectCode(await hf(["kill", id]), 0)
  })

  it("cp both ways over the Jobs proxy, a file and a directory; kill --all cancels every job", async () => {
    const first = await createHf("--transport", "proxy")
    const second = await createHf()
    const src = path.join(work, "hf-src")
    fs.mkdirSync(path.join(src, "nested"), { recursive: true })
    fs.writeFileSync(path.join(src, "x.txt"), "x-ray")
    fs.writeFileSync(path.join(src, "nested", "y.txt"), "yankee")
    expectCode(await hf(["cp", path.join(src, "x.txt"), `${first}:in/x.txt`]), 0)
    expectCode(await hf(["cp", src, `${first}:in/tree`]), 0)
    const seen = await hf(["exec", first, "--", "cat in/x.txt in/tree/nested/y.txt"])
    assert.strictEqual(seen.stdout, "x-rayyankee")
    const back = path.join(work, "hf-back")
    expectCode(await hf(["cp", `${first}:in/tree`, back]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "nested", "y.txt"), "utf8"), "yankee")
    expectCode(await hf(["cp", `${first}:in/x.txt`, path.join(back, "copy.txt")]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "copy.txt"), "utf8"), "x-ray")

    const killed = await hf(["kill", "--all", "-q"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), [first, second].sort())
    for (const id of [first, second])
      await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
    const listed = await hf(["ls", "-q"])
    assert.strictEqual(listed.stdout, "")
  })

  it("ls and kill --all see sandboxes on every page of the Hub's listing", async () => {
    const post = (labels: Record<string, string>) =>
      fetch(`${emulator.url}/api/jobs/${emulator.user}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
        body: JSON.stringify({ dockerImage: "python:3.12", command: ["sleep", "60"], labels })
      }).then((r) => r.json() as Promise<{ id: string }>)
    // Jobs that carry the sandbox labels are listed as sandboxes; they need no server to be killed.
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) {
      const nonce = `${i}`.padStart(32, "0")
      ids.push((await post({ "hf-sandbox": "1", "hf-sandbox-mode": "dedicated", "hf-sandbox-nonce": nonce })).id)
    }
    for (let i = 0; i < 3; i++) await post({ other: "job" })
    const listed = await hf(["ls", "-q"])
    expectCode(listed, 0)
    assert.deepStrictEqual(listed.stdout.trim().split("\n").sort(), ids.slice().sort())
    const killed = await hf(["kill", "--all", "-q"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), ids.slice().sort())
    for (const id of ids) assert.strictEqual((await job(id)).stage, "CANCELED")
    const others = (await Effect.runPromise(emulator.jobs)).filter(
      (j) => (j.spec as { labels?: Record<string, string> }).labels?.other === "job"
    )
    for (const other of others) {
      if (!TERMINAL.includes(other.stage)) {
        await fetch(`${emulator.url}/api/jobs/${emulator.user}/${other.id}/cancel`, {
          method: "POST",
          headers: { authorization: `Bearer ${token()}` }
        })
      }
    }
  })

  it("run: a job that ends with the command (code and output), and on Ctrl-C too", async () => {
    const result = await hf(["run", "--transport", "proxy", "--", "echo job says hi; exit 9"])
    expectCode(result, 9)
    assert.strictEqual(result.stdout, "job says hi\n")
    const jobs = await Effect.runPromise(emulator.jobs)
    // The release asks the server to shut down before it cancels the job: it may complete first.
    await until("the last job to end", async () =>
      ["CANCELED", "COMPLETED"].includes((await job(jobs.at(-1)!.id)).stage)
    )

    // Ctrl-C is an interruption of the run (the local Ctrl-C test shows the program's signal handling).
    const running = startInProcess(["run", "--", "echo ready; sleep 30"], { hf: true })
    // A bound, not a race: a start through a quick tunnel can take long on a loaded machine (the other
    // test file may be starting ten sandboxes at the same moment).
    await until(
      () => `"ready" on stdout: ${running.stdout()}`,
      () => running.stdout().includes("ready"),
      60_000
    )
    expectCode(await running.interrupt(), 130)
    const last = (await Effect.runPromise(emulator.jobs)).at(-1)!
    await until(`job ${last.id} to end`, async () => ["CANCELED", "COMPLETED"].includes((await job(last.id)).stage))
  }, 150_000)

  it("process logs -f shows a background process's output live through the quick tunnel", async () => {
    const id = await createHf() // the default transport: a quick tunnel
    // The process waits for a file the test writes only once the follower printed the first line, so an
    // edge that holds the stream until it ends would show nothing, ever.
    const spawned = await hf([
      "spawn",
      "-q",
      id,
      "--",
      "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second"
    ])
    expectCode(spawned, 0)
    const follower = startInProcess(["process", "logs", "-f", id, spawned.stdout.trim()], { hf: true })
    try {
      await until(
        () => `"first" on stdout: ${follower.stdout()}`,
        () => follower.stdout().includes("first"),
        30_000
      )
      expectCode(await hf(["exec", id, "--", "touch go"]), 0)
      const followed = await follower.done
      expectCode(followed, 0)
      assert.strictEqual(followed.stdout, "first\nsecond\n")
    } finally {
      await follower.interrupt()
      expectCode(await hf(["kill", id]), 0)
    }
  })

  it("run and create send the original's two anonymous telemetry events; none with an opt-out set", async () => {
    const pings = async () => await Effect.runPromise(emulator.telemetry)
    const before = (await pings()).length
    expectCode(await hf(["run", "--transport", "proxy", "--", "true"]), 0)
    const sent = (await pings()).slice(before)
    assert.deepStrictEqual(
      sent.map((p) => p.path),
      ["/api/telemetry/hf-sandbox/create", "/api/telemetry/hf-sandbox/terminate"]
    )
    assert.match(sent[0]!.userAgent, /flavor\/cpu-basic; timeout\/none; forward_hf_token\/false$/)
    assert.match(sent[1]!.userAgent, /reason\/scope$/)
    const session = /session_id\/([0-9a-f]+)/.exec(sent[0]!.userAgent)?.[1]
    assert.include(sent[1]!.userAgent, `session_id/${session}`)
    for (const ping of sent) {
      assert.isUndefined(ping.authorization)
      assert.notInclude(ping.userAgent, token())
    }
    const id = await createHf("--transport", "proxy")
    assert.deepStrictEqual(
      (await pings()).slice(before + 2).map((p) => p.path),
      ["/api/telemetry/hf-sandbox/create"]
    )
    expectCode(await hf(["kill", id]), 0)
    // A telemetry endpoint that never answers or drops the connection fails nothing.
    for (const fault of ["hang", "reset"] as const) {
      emulator.faults.telemetry = fault
      const count = (await pings()).length
      const result = await hf(["run", "--transport", "proxy", "--", "echo still-works"])
      emulator.faults.telemetry = undefined
      expectCode(result, 0)
      assert.strictEqual(result.stdout, "still-works\n")
      assert.strictEqual(result.stderr, "")
      assert.isAtLeast((await pings()).length, count + 1)
    }
    // Both opt-outs side by side: neither run may send a ping.
    const count = (await pings()).length
    const optOuts = [{ HF_HUB_DISABLE_TELEMETRY: "1" }, { DO_NOT_TRACK: "1" }]
    const runs = await Promise.all(
      optOuts.map((env) => cli(["run", "--transport", "proxy", "--", "true"], { hf: true, env }))
    )
    for (const run of runs) expectCode(run, 0)
    assert.deepStrictEqual((await pings()).slice(count), [])
  })

  it("whoami is asked once per token across commands, cached 0600 under a hash of the token", async () => {
    const fresh = fs.mkdtempSync(path.join(work, "state-"))
    const whoamis = async () => (await Effect.runPromise(emulator.requests)).filter((r) => r.route === "whoami").length
    const before = await whoamis()
    for (let i = 0; i < 3; i++)
      expectCode(await cli(["ls", "-q"], { hf: true, env: { HF_SANDBOX_STATE_DIR: fresh } }), 0)
    assert.strictEqual((await whoamis()) - before, 1, "one whoami for three commands")
    const dir = path.join(fresh, "namespaces")
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700)
    const files = fs.readdirSync(dir)
    assert.strictEqual(files.length, 1)
    assert.match(files[0]!, /^[0-9a-f]{64}\.json$/)
    assert.strictEqual(fs.statSync(path.join(dir, files[0]!)).mode & 0o777, 0o600)
    const text = fs.readFileSync(path.join(dir, files[0]!), "utf8")
    assert.notInclude(text + files[0], token())
    assert.strictEqual((JSON.parse(text) as { namespace: string }).namespace, emulator.user)
  })

  it("NAMESPACE/ID wherever an id is taken; a malformed id or label fails before any request", async () => {
    const id = await createHf("--transport", "proxy", "--label", "team=ml", "-l", "flag")
    const spec = (await job(id)).spec as { labels: Record<string, string> }
    assert.strictEqual(spec.labels.team, "ml")
    assert.strictEqual(spec.labels.flag, "")
    const ref = `${emulator.user}/${id}`
    const ok = await hf(["exec", ref, "--", "echo via-ref"])
    expectCode(ok, 0)
    assert.strictEqual(ok.stdout, "via-ref\n")
    fs.writeFileSync(path.join(work, "ref.txt"), "by reference")
    expectCode(await hf(["cp", path.join(work, "ref.txt"), `${ref}:ref.txt`]), 0)
    assert.strictEqual((await hf(["exec", id, "--", "cat ref.txt"])).stdout, "by reference")
    // `logs NAMESPACE/ID`: the next test, beside `logs ID` (a snapshot waits 5 s for the log to go quiet).

    const before = (await Effect.runPromise(emulator.requests)).length
    const jobsBefore = (await Effect.runPromise(emulator.jobs)).length
    const bad = await hf(["exec", "../../x", "--", "true"])
    expectCode(bad, 125)
    assert.include(bad.stderr, "24 hex digits")
    const badLogs = await hf(["logs", "alice/../x"])
    expectCode(badLogs, 1)
    assert.include(badLogs.stderr, "24 hex digits")
    const badLabel = await hf(["create", "--label", "bad key=x"])
    expectCode(badLabel, 2)
    assert.include(badLabel.stderr, '--label: "bad key" is not a label key (1 to 100 letters, digits')
    assert.strictEqual((await Effect.runPromise(emulator.requests)).length, before, "no Hub request at all")
    assert.strictEqual((await Effect.runPromise(emulator.jobs)).length, jobsBefore)

    expectCode(await hf(["kill", ref]), 0)
    await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
  })

  it("logs prints the job's log, by ID and by NAMESPACE/ID; an unknown id fails clearly", async () => {
    const id = await createHf("--transport", "proxy")
    // Side by side: each snapshot ends only once the log has been quiet for 5 s.
    const both = await Promise.all([id, `${emulator.user}/${id}`].map((ref) => hf(["logs", "--tail", "5", ref])))
    for (const logs of both) {
      expectCode(logs, 0)
      assert.isAtMost(logs.stdout.trim().split("\n").length, 5)
      assert.include(logs.stdout, '"event":"listening"')
    }
    expectCode(await hf(["kill", id]), 0)
    const unknown = await hf(["exec", "0123456789abcdef01234567", "--", "true"])
    expectCode(unknown, 125)
    assert.include(unknown.stderr, "cannot attach to sandbox 0123456789abcdef01234567")
  })
})

describe("hf-sandbox CLI, credentials", () => {
  it("finds the token as the library does: a blank HF_TOKEN is unset, the token file is read, a 401 names it", async () => {
    const home = path.join(work, "hf-home-credentials")
    fs.mkdirSync(home, { recursive: true })
    fs.writeFileSync(path.join(home, "token"), `${Redacted.value(emulator.token)}\r\n`)
    const listed = await cli(["ls", "--json"], { hf: true, env: { HF_TOKEN: " ", HF_HOME: home } })
    expectCode(listed, 0)

    fs.writeFileSync(path.join(home, "token"), "hf_wrong_0000000000000000000000")
    const refused = await cli(["ls"], { hf: true, env: { HF_TOKEN: "", HF_HOME: home } })
    assert.notStrictEqual(refused.code, 0)
    assert.include(refused.stderr, `token file ${path.join(home, "token")}`)
    assert.include(refused.stderr, "hf auth login")
    assert.notInclude(refused.stderr, "hf_wrong_0000000000000000000000")
  })

  it("an unreachable Hub is said with HF_ENDPOINT, the CLI's way to set it (it has no flag)", async () => {
    const env = { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` }
    const unreachable = await cli(["ls"], { hf: true, env })
    assert.notStrictEqual(unreachable.code, 0)
    assert.include(unreachable.stderr, "ECONNREFUSED", unreachable.stderr)
    assert.include(unreachable.stderr, "Check the network, and HF_ENDPOINT if you set one.")
    assert.notInclude(unreachable.stderr, "option")
  })
})
