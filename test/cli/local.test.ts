/**
 * The `hf-sandbox` CLI on the local provider, its help and its errors for bad arguments, and the library
 * side of `create` (`Sandbox.make({ detach: true })`). The harness (test/support/cli.ts) runs most commands
 * in this process and the real program where only it can show what is tested. The CLI on HF Jobs is
 * test/cli/hfJobs.test.ts: the two files run side by side.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"
import { descendants } from "../../src/internal/processTree.js"
import {
  binary,
  cli,
  createLocal,
  emulator,
  expectCode,
  finish,
  job,
  local,
  localPids,
  shell,
  start,
  startInProcess,
  stateDir,
  stateFiles,
  stateOf,
  useCliHarness,
  work
} from "../support/cli.js"
import { isAlive, until, waitGone, waitNoneWithArg } from "../support/processes.js"

useCliHarness()

// Local provider
// ---------------------------------------------------------------------------

describe("hf-sandbox CLI, local provider", () => {
  it("create leaves a server running in its own session after the CLI exits; its state is the user's alone", async () => {
    // The real program: the server must outlive the process that made it.
    const created = await binary(["--local", "create"])
    expectCode(created, 0)
    const id = created.stdout.trim()
    const state = stateOf(id)
    localPids.add(state.pid)
    assert.include(created.stderr, "10m without a request", "the output says how the sandbox ends")
    assert.isTrue(isAlive(state.pid), "the server outlives the CLI")
    const stat = fs.readFileSync(`/proc/${state.pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    assert.strictEqual(Number(fields[3]), state.pid, "its own session (sid = pid)")
    assert.strictEqual(fs.statSync(path.join(stateDir, `${id}.json`)).mode & 0o777, 0o600)
    assert.strictEqual(fs.statSync(stateDir).mode & 0o777, 0o700)
    // The token is in the state file only: never on a command line, never printed.
    assert.match(state.token, /^[0-9a-f]{64}$/)
    assert.notInclude(fs.readFileSync(`/proc/${state.pid}/cmdline`, "utf8"), state.token)
    assert.notInclude(created.stdout + created.stderr, state.token)

    const listed = await local(["ls"])
    expectCode(listed, 0)
    assert.include(listed.stdout, id)

    const killed = await local(["kill", id])
    expectCode(killed, 0)
    assert.strictEqual(killed.stdout.trim(), id)
    assert.deepStrictEqual(await waitGone([state.pid]), [])
    assert.deepStrictEqual(stateFiles(), [])
  })

  it("-q output works in $(...): create, exec, kill in a shell script", async () => {
    const result = await shell(
      'set -e; id=$($HF_SANDBOX create --local -q); $HF_SANDBOX exec "$id" -- echo "hi from $id" > out.txt; ' +
        'cat out.txt; $HF_SANDBOX kill -q "$id"',
      false
    )
    expectCode(result, 0)
    const lines = result.stdout.trim().split("\n")
    assert.match(lines[0]!, /^hi from local-[0-9a-f]{12}$/)
    assert.strictEqual(lines[1], lines[0]!.slice("hi from ".length), "kill -q prints the id")
  })

  it("create --ssh or --volume is refused by its flag, in words without the library's calls", async () => {
    const ssh = await local(["create", "--ssh"])
    expectCode(ssh, 1)
    assert.include(ssh.stderr, "invalid --ssh: true is refused: SSH is an HF Jobs feature")
    const volume = await local(["create", "-v", "hf://datasets/org/ds:/data"])
    expectCode(volume, 1)
    assert.include(volume.stderr, "invalid --volume: ")
    assert.include(volume.stderr, "copy the files into the sandbox")
    for (const r of [ssh, volume])
      assert.notMatch(r.stderr, /sb\.|files\.upload|files\.fromHub|ssh is an HF Jobs option/, r.stderr)
  })

  it("exec exits with the command's code: 0, 3, 124 on timeout, 128+N on a signal, 127 for a missing program; an argument the library refuses is said for the command typed, by its flag", async () => {
    const id = await createLocal()
    expectCode(await local(["exec", id, "--", "true"]), 0)
    // Refused by the library once connected, and said for the command typed, never as the library's call.
    // (Checked on this test's sandbox: a server of its own cost a start for one wording.)
    const bad = await local(["exec", id, "--timeout", "0s", "--", "true"])
    expectCode(bad, 125)
    assert.strictEqual(
      bad.stderr,
      "hf-sandbox: exec: invalid --timeout: 0 must be longer than zero (leave it out for the default)\n"
    )
    const three = await local(["exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
    expectCode(three, 3)
    assert.strictEqual(three.stdout, "out\n")
    assert.strictEqual(three.stderr, "err\n")
    // However late the command starts, it cannot end within its timeout: a short one races nothing.
    const timedOut = await local(["exec", "--timeout", "200ms", id, "--", "sleep 30"])
    expectCode(timedOut, 124)
    assert.include(timedOut.stderr, "timed out")
    expectCode(await local(["exec", id, "--", "sh", "-c", "kill -TERM $$"]), 128 + 15)
    const missing = await local(["exec", id, "--", "no-such-program-xyz", "--flag"])
    expectCode(missing, 127)
    assert.include(missing.stderr, "no-such-program-xyz")
    expectCode(await local(["kill", id]), 0)
  })

  it("exec streams stdout and stderr live and apart, as bytes, with -e and --cwd", async () => {
    const id = await createLocal()
    // The command goes on only once the test has seen its first line: output held until the command ends
    // would never arrive, and the command never end.
    const go = path.join(work, "exec-go")
    const running = startInProcess([
      "--local",
      "exec",
      "-e",
      "GREETING=hello",
      "--cwd",
      "/",
      id,
      "--",
      `echo "$GREETING from $(pwd)"; while [ ! -e ${go} ]; do sleep 0.05; done; echo late >&2; echo done`
    ])
    await until(
      () => `"hello from /" on stdout: ${running.stdout()}`,
      () => running.stdout().includes("hello from /\n"),
      30_000
    )
    fs.writeFileSync(go, "")
    const result = await running.done
    expectCode(result, 0)
    assert.strictEqual(result.stdout, "hello from /\ndone\n")
    assert.strictEqual(result.stderr, "late\n")

    const binary = await local(["exec", id, "--", "printf", "\\000\\377\\376abc"])
    expectCode(binary, 0)
    assert.deepStrictEqual([...binary.stdoutBytes], [0, 255, 254, 97, 98, 99])

    // A reader that goes away stops the command, as SIGPIPE would stop a local one.
    const piped = await shell(`$HF_SANDBOX exec ${id} -- yes | head -n 2`)
    expectCode(piped, 0)
    assert.strictEqual(piped.stdout, "y\ny\n")
    await until(
      "no `yes` left in the sandbox",
      async () => (await local(["exec", id, "--", "pgrep -x yes || echo none"])).stdout === "none\n"
    )
    expectCode(await local(["kill", id]), 0)
  })

  it("--json: one document per command, NDJSON for exec", async () => {
    // `--timeout` is the deprecated alias of `--lifetime`: this is the test that it still works.
    const created = await local(["--json", "create", "--timeout", "10m"])
    expectCode(created, 0)
    const doc = JSON.parse(created.stdout) as {
      id: string
      provider: string
      idleTimeoutSeconds: number
      lifetimeSeconds?: number
      timeoutSeconds?: number
    }
    localPids.add(stateOf(doc.id).pid)
    assert.strictEqual(doc.provider, "local")
    assert.strictEqual(doc.idleTimeoutSeconds, 600)
    // A local sandbox has a lifetime only when given one; the server enforces it (--lifetime).
    assert.strictEqual(doc.lifetimeSeconds, 600)
    // The field's former name stays, with the same value, for scripts written before.
    assert.strictEqual(doc.timeoutSeconds, 600)
    if (process.platform === "linux") {
      assert.include(fs.readFileSync(`/proc/${stateOf(doc.id).pid}/cmdline`, "utf8").split("\0"), "--lifetime")
    }
    assert.strictEqual(created.stderr, "")

    const exec = await local(["exec", "--json", doc.id, "--", "echo a; echo b >&2; exit 5"])
    expectCode(exec, 5)
    const events = exec.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; data?: string; exitCode?: number })
    assert.strictEqual(events[0]!.event, "start")
    assert.deepInclude(events, { event: "stdout", data: "a\n" })
    assert.deepInclude(events, { event: "stderr", data: "b\n" })
    assert.deepInclude(events.at(-1)!, { event: "exit", exitCode: 5 })

    const listed = JSON.parse((await local(["ls", "--json"])).stdout) as Array<{ id: string }>
    assert.deepStrictEqual(
      listed.map((s) => s.id),
      [doc.id]
    )
    const spawned = await local(["spawn", "--json", doc.id, "--", "sleep", "30"])
    expectCode(spawned, 0)
    assert.match((JSON.parse(spawned.stdout) as { id: string }).id, /^p-\d+$/)
    const killed = await local(["kill", "--json", "--all"])
    expectCode(killed, 0)
    assert.deepStrictEqual(JSON.parse(killed.stdout), { killed: [doc.id], failed: [] })
    const failed = await local(["exec", "--json", doc.id, "--", "true"])
    expectCode(failed, 125)
    // The error's own tag, not the CLI's wrapper; and nothing "did not start": exec starts nothing.
    assert.strictEqual((JSON.parse(failed.stdout) as { error: { type: string } }).error.type, "StartError")
    assert.notInclude(failed.stderr, "did not start")
  })

  it("ls, logs and kill without a token say how to give one the CLI's way, under the error's own tag", async () => {
    const env = { HF_ENDPOINT: emulator.url, HF_TOKEN_PATH: path.join(work, "no-such-token") }
    for (const args of [["ls"], ["logs", "687fb701029421ae5549d998"], ["kill", "687fb701029421ae5549d998"]]) {
      const result = await cli([...args, "--json"], { env })
      expectCode(result, 1)
      const doc = JSON.parse(result.stdout) as {
        error?: { type: string }
        failed?: ReadonlyArray<{ type: string }>
      }
      // kill reports each id's failure in its document; the others fail as a whole.
      const error = doc.error ?? doc.failed![0]!
      const what = `${args[0]}: ${result.stderr}`
      assert.strictEqual(error.type, "StartError", what)
      assert.notInclude(result.stderr, "did not start", what)
      assert.notInclude(result.stderr, "HfJobs.layer", what)
      assert.include(result.stderr, "HF_TOKEN", what)
      assert.include(result.stderr, "hf auth login", what)
    }
  })

  it("cp copies a file and a directory both ways, docker-style", async () => {
    const id = await createLocal()
    const src = path.join(work, "cp-src")
    fs.mkdirSync(path.join(src, "sub"), { recursive: true })
    fs.writeFileSync(path.join(src, "a.txt"), "alpha")
    fs.writeFileSync(path.join(src, "sub", "b.bin"), Buffer.from([0, 1, 2, 255]))
    fs.chmodSync(path.join(src, "a.txt"), 0o755)
    fs.symlinkSync("a.txt", path.join(src, "link"))

    expectCode(await local(["cp", path.join(src, "a.txt"), `${id}:data/one.txt`]), 0)
    expectCode(await local(["cp", src, `${id}:data/tree`]), 0)
    expectCode(await local(["cp", src, `${id}:data/tree`]), 0) // onto an existing directory: lands inside
    const listing = await local(["exec", id, "--", "cd data && cat one.txt && find tree | sort"])
    expectCode(listing, 0)
    assert.strictEqual(
      listing.stdout,
      [
        "alphatree",
        "tree/a.txt",
        "tree/cp-src",
        "tree/cp-src/a.txt",
        "tree/cp-src/link",
        "tree/cp-src/sub",
        "tree/cp-src/sub/b.bin",
        "tree/link",
        "tree/sub",
        "tree/sub/b.bin",
        ""
      ].join("\n")
    )

    const back = path.join(work, "cp-back")
    fs.mkdirSync(back)
    expectCode(await local(["cp", `${id}:data/one.txt`, `${back}/`]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "one.txt"), "utf8"), "alpha")
    const copied = await local(["cp", "--json", `${id}:data/tree`, path.join(back, "tree")])
    expectCode(copied, 0)
    assert.strictEqual((JSON.parse(copied.stdout) as { bytes: number }).bytes, 18)
    assert.deepStrictEqual([...fs.readFileSync(path.join(back, "tree", "sub", "b.bin"))], [0, 1, 2, 255])
    assert.strictEqual(fs.statSync(path.join(back, "tree", "a.txt")).mode & 0o777, 0o755)
    assert.strictEqual(fs.readlinkSync(path.join(back, "tree", "link")), "a.txt")

    const missing = await local(["cp", `${id}:nope`, back])
    expectCode(missing, 1)
    assert.include(missing.stderr, "no such file or directory")
    expectCode(await local(["kill", id]), 0)
  })

  it("cp from a sandbox skips links that lead out and drops setuid; --links and --preserve-modes ask otherwise", async () => {
    const id = await createLocal()
    const made = await local([
      "exec",
      id,
      "--",
      "mkdir -p hostile && cd hostile && echo x > suid && chmod 4755 suid && ln -s ../../.. up && ln -s suid ok"
    ])
    expectCode(made, 0)
    const dest = path.join(work, "cp-hostile")
    const tamed = await local(["cp", "--json", `${id}:hostile`, dest])
    expectCode(tamed, 0)
    const doc = JSON.parse(tamed.stdout) as { skippedLinks: ReadonlyArray<{ name: string; target: string }> }
    assert.deepStrictEqual(doc.skippedLinks, [{ name: "up", target: "../../.." }])
    assert.isFalse(fs.existsSync(path.join(dest, "up")))
    assert.strictEqual(fs.readlinkSync(path.join(dest, "ok")), "suid")
    assert.strictEqual(fs.statSync(path.join(dest, "suid")).mode & 0o7777, 0o755 & ~process.umask())
    const noted = await local(["cp", "-q", `${id}:hostile`, path.join(work, "cp-hostile-noted")])
    expectCode(noted, 0)
    assert.include(noted.stderr, "up -> ../../..")
    assert.include(noted.stderr, "--links keep")

    const refused = await local(["cp", "--links", "refuse", `${id}:hostile`, path.join(work, "cp-refused")])
    expectCode(refused, 1)
    assert.include(refused.stderr, 'links: "refuse"')
    assert.isFalse(fs.existsSync(path.join(work, "cp-refused")))

    const exact = path.join(work, "cp-exact")
    expectCode(await local(["cp", "--links", "keep", "--preserve-modes", `${id}:hostile`, exact]), 0)
    assert.strictEqual(fs.readlinkSync(path.join(exact, "up")), "../../..")
    assert.strictEqual(fs.statSync(path.join(exact, "suid")).mode & 0o7777, 0o4755)
    expectCode(await local(["kill", id]), 0)
  })

  it("logs, spawn, and kill --all stop every server (and what it started) and empty the state directory", async () => {
    const first = await createLocal()
    const second = await createLocal("--idle-timeout", "5m")
    const spawned = await local(["spawn", "-q", first, "--", "sleep 300"])
    expectCode(spawned, 0)
    assert.match(spawned.stdout.trim(), /^p-\d+$/)
    const sleeper = (await descendants(stateOf(first).pid).pipe(Effect.runPromise)).slice()
    assert.isNotEmpty(sleeper)

    const listed = await local(["ls", "-q"])
    assert.deepStrictEqual(listed.stdout.trim().split("\n").sort(), [first, second].sort())

    const killed = await local(["kill", "--all"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), [first, second].sort())
    assert.deepStrictEqual(await waitGone([...localPids, ...sleeper]), [])
    assert.deepStrictEqual(stateFiles(), [])
    const logs = await local(["logs", first])
    expectCode(logs, 1)
    assert.include(logs.stderr, first)
  })

  it("logs of a local sandbox: its start, each command and how it ended; never a command's environment", async () => {
    const id = await createLocal()
    const secret = "s3cret-value-91c2"
    expectCode(await local(["exec", "-e", `TOKEN=${secret}`, id, "--", 'test -n "$TOKEN"; exit 3']), 3)
    expectCode(await local(["exec", "--timeout", "1", id, "--", "sleep", "30"]), 124)
    expectCode(await local(["spawn", "-q", "--tag", "web", id, "--", "sleep 300"]), 0)
    const logs = await local(["logs", id])
    expectCode(logs, 0)
    const text = logs.stdout
    assert.match(text, /started: version \S+ \(protocol \d+\), Python \S+, pid \d+, /)
    assert.match(text, /working directory \/\S+, listening on 127\.0\.0\.1:\d+/)
    assert.match(
      text,
      /command started, pid (\d+): test -n "\$TOKEN"; exit 3\n.*command pid \1 ended: exit status 3 \(/
    )
    assert.match(text, /command started, pid (\d+): sleep 30\n.*command pid \1 timed out after 1s: killed by signal 9/)
    assert.match(text, /command started, pid (\d+): sleep 300\n.*command pid \1 is background process p-\d+ "web"/)
    assert.notInclude(text, secret)
    expectCode(await local(["kill", id]), 0)
  })

  it("process ls, logs and kill: background processes by id or pid, with clear errors", async () => {
    const id = await createLocal()
    const first = await local(["spawn", "-q", id, "--tag", "web", "--", "echo hello; echo oops >&2; exec sleep 300"])
    expectCode(first, 0)
    const web = first.stdout.trim()
    const second = await local(["spawn", "-q", id, "--", "exit 3"])
    expectCode(second, 0)
    const done = second.stdout.trim()

    const listing = async () =>
      JSON.parse((await local(["process", "ls", "--json", id])).stdout) as Array<Sandbox.ProcessInfo>
    await until(
      `process ${done} listed as not running`,
      async () => (await listing()).find((p) => p.id === done)?.running === false
    )
    const table = await local(["process", "ls", id])
    expectCode(table, 0)
    assert.match(table.stdout, new RegExp(`${web}\\s+\\d+\\s+web\\s+running`))
    assert.match(table.stdout, new RegExp(`${done}\\s+\\d+\\s+-\\s+exited \\(3\\)`))
    assert.deepStrictEqual((await local(["process", "ls", "-q", id])).stdout.trim().split("\n"), [web, done])

    const logs = await local(["process", "logs", id, web])
    expectCode(logs, 0)
    assert.strictEqual(logs.stdout, "hello\n")
    assert.strictEqual(logs.stderr, "oops\n")

    const pid = (await listing()).find((p) => p.id === web)!.pid
    const killed = await local(["process", "kill", "--json", id, String(pid), done])
    expectCode(killed, 0)
    assert.deepStrictEqual(JSON.parse(killed.stdout), { killed: [web], exited: [done] })
    assert.deepStrictEqual(await waitGone([pid]), [])
    assert.deepInclude(
      (await listing()).find((p) => p.id === web),
      { running: false, signal: 15 }
    )
    // Following an exited process replays its output and ends.
    const followed = await local(["process", "logs", "-f", "--json", id, web])
    expectCode(followed, 0)
    const events = followed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as object)
    assert.deepInclude(events, { event: "stdout", data: "hello\n" })
    assert.deepInclude(events, { event: "stderr", data: "oops\n" })
    assert.deepInclude(events.at(-1), { event: "exit", exitCode: null, signal: 15 })

    const unknown = await local(["process", "kill", id, "p-99"])
    expectCode(unknown, 1)
    assert.include(unknown.stderr, `no background process p-99 in ${id}`)
    const badSignal = await local(["process", "kill", "--signal", "NOPE", id, web])
    expectCode(badSignal, 2)
    assert.include(badSignal.stderr, "--signal must be")
    expectCode(await local(["kill", id]), 0)
  })

  it("a sandbox's idle timeout ends it; stale state is cleaned by ls", async () => {
    // Short: the server's --start-grace holds the idle clock until the CLI has reached it.
    const idle = await createLocal("--idle-timeout", "300ms")
    const crashed = await createLocal()
    process.kill(stateOf(crashed).pid, "SIGKILL")
    await until(`the idle sandbox ${idle}'s server to exit`, () => !isAlive(stateOf(idle).pid), 10_000)
    const follow = await local(["logs", "-f", idle])
    expectCode(follow, 0)
    assert.include(follow.stdout, "idle", "the server's log says why it stopped")
    assert.include(follow.stdout, "stopped: exit status 0")
    const listed = await local(["ls", "--json"])
    assert.deepStrictEqual(JSON.parse(listed.stdout), [])
    assert.deepStrictEqual(stateFiles(), [])
    const gone = await local(["exec", idle, "--", "true"])
    expectCode(gone, 125)
    assert.include(gone.stderr, idle)
  })

  it("run: create, exec, stop in one go, with the command's exit code; nothing is left", async () => {
    // In this process: the exit code as the shell sees it is shown by the -q script and Ctrl-C tests.
    const result = await local(["run", "--", "echo one-liner; exit 4"])
    expectCode(result, 4)
    assert.strictEqual(result.stdout, "one-liner\n")
    assert.deepStrictEqual(stateFiles(), [], "run's sandbox is not detached")
  })

  it("Ctrl-C: run stops its sandbox, exec kills its command; both exit 130", async () => {
    const running = start(["--local", "run", "--", "echo ready; sleep 30"])
    const done = finish(running)
    let ready = false
    running.stdout!.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) ready = true
    })
    // A bound, not a race: on a loaded machine a Node start and a server start can take over 10 s.
    await until('"ready" on run\'s stdout', () => ready, 60_000)
    const family = await descendants(running.pid!).pipe(Effect.runPromise)
    running.kill("SIGINT")
    const result = await done
    expectCode(result, 130)
    assert.deepStrictEqual(await waitGone(family), [], "the server and the command are gone")

    const id = await createLocal()
    const exec = start(["--local", "exec", "--json", id, "--", "sleep", "30"])
    const execDone = finish(exec)
    let pid: number | undefined
    exec.stdout!.on("data", (b: Buffer) => {
      const match = /"event":"start","pid":(\d+)/.exec(b.toString())
      if (match) pid = Number(match[1])
    })
    await until("exec's start event, with its pid", () => pid !== undefined, 60_000)
    exec.kill("SIGINT")
    expectCode(await execDone, 130)
    assert.deepStrictEqual(await waitGone([pid!]), [], "the remote command was killed")
    expectCode(await local(["kill", id]), 0)
  }, 150_000) // two real program starts, each waited for up to 60 s on a loaded machine

  it("bad arguments: a clear message, exit code 2, no stack trace", async () => {
    const cases: Array<[Array<string>, string]> = [
      [["exec"], "Missing argument <ID>"],
      [["bogus"], "Invalid subcommand"],
      [["create", "--idle-timeout", "soon"], 'invalid --idle-timeout "soon"'],
      [["create", "--lifetime", "soon"], 'invalid --lifetime "soon"'],
      [
        ["create", "--lifetime", "10m", "--timeout", "20m"],
        "--lifetime 10m and its deprecated alias --timeout 20m differ"
      ],
      [["create", "-e", "NOVALUE"], 'invalid -e/--env "NOVALUE"'],
      [["create", "-s", "HF_SANDBOX_TEST_UNSET"], "HF_SANDBOX_TEST_UNSET is not set"],
      [["exec", "local-0123456789ab", "--timout", "5", "--", "ls"], "unknown option --timout"],
      [["exec", "--tiemout", "local-0123456789ab"], "unknown option --tiemout"],
      [["exec", "local-0123456789ab"], "missing the command"],
      [["kill"], "give their ids, or --all"],
      [["run", "echo", "hi"], "run needs --"],
      [["ls", "--", "x"], "unexpected --"],
      [["cp", "a", "b"], "must be in a sandbox"],
      [["cp", "--preserve-modes", "a", "local-0123456789ab:b"], "--preserve-modes applies to copies from a sandbox"],
      [[], "usage: hf-sandbox"]
    ]
    for (const [args, message] of cases) {
      const result = await local(args)
      expectCode(result, 2)
      assert.include(result.stderr, message, args.join(" "))
      assert.notMatch(result.stderr, /^\s+at /m, "no stack trace")
    }
    const unknown = await local(["exec", "local-0123456789ab", "--", "true"])
    expectCode(unknown, 125)
    assert.include(unknown.stderr, "no local sandbox local-0123456789ab")
    assert.notMatch(unknown.stderr, /^\s+at /m)
  })
})

// ---------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------

describe("hf-sandbox --help", () => {
  const leaves = [
    "create",
    "exec",
    "spawn",
    "cp",
    "ls",
    "logs",
    "kill",
    "run",
    "expose",
    "ssh",
    "hardware",
    "top",
    "process ls",
    "process kill",
    "process logs"
  ]

  /** Fails unless the help is fit for a terminal: short lines, no @effect/cli internals. */
  const readable = (text: string, what: string) => {
    for (const line of text.split("\n")) assert.isAtMost(line.length, 100, `${what}: ${line}`)
    assert.notInclude(text, "--wizard", what)
    assert.notInclude(text, "main.js", what)
    assert.notInclude(text, "A true or false value", what)
    assert.include(text, "EXAMPLES", what)
  }

  it("the overview lists every command and the options every command takes, with examples", async () => {
    for (const args of [["--help"], ["-h"], ["--local", "--help"]]) {
      const result = await local(args.slice(args[0] === "--local" ? 1 : 0))
      expectCode(result, 0)
      readable(result.stdout, args.join(" "))
      assert.include(result.stdout, "hf-sandbox [--local] [--json] [-q] COMMAND")
      // Every leaf's command, `process` once for its three.
      for (const name of new Set(leaves.map((leaf) => leaf.split(" ")[0]!))) {
        assert.match(result.stdout, new RegExp(`^  ${name} +\\S`, "m"), name)
      }
      for (const flag of ["--local", "--json", "--quiet", "--help", "--version"]) assert.include(result.stdout, flag)
    }
    const processes = await local(["process", "--help"])
    expectCode(processes, 0)
    readable(processes.stdout, "process --help")
    for (const name of ["ls", "kill", "logs"]) assert.match(processes.stdout, new RegExp(`^  ${name} +\\S`, "m"))
  })

  it("each command's help names hf-sandbox, describes every option and argument, and ends with examples", async () => {
    for (const leaf of leaves) {
      const result = await local([...leaf.split(" "), "--help"])
      expectCode(result, 0)
      const text = result.stdout
      readable(text, leaf)
      assert.include(text, `$ hf-sandbox ${leaf} `, leaf)
      assert.include(text.slice(text.indexOf("\nEXAMPLES\n")), `hf-sandbox ${leaf} `, leaf)
      // Every option and argument heading (unindented, after OPTIONS/ARGUMENTS) is followed by its description.
      const lines = text.slice(text.indexOf("\nARGUMENTS") + 1, text.indexOf("\nEXAMPLES")).split("\n")
      lines.forEach((line, i) => {
        if (!/^(<|-|\()/.test(line)) return
        const next = lines.slice(i + 1).find((l) => l !== "")
        assert.match(next ?? "", /^ {2}\S/, `${leaf}: ${line} has a description`)
      })
    }
  })

  it("an unknown option is reported as one, wherever it is; --wizard is one of them", async () => {
    const cases = [
      ["--wizard"],
      ["exec", "--wizard", "local-0123456789ab", "--", "true"],
      ["--completions", "bash"],
      ["ls", "--bogus"],
      ["--bogus", "ls"],
      ["cp", "--bogus", "a", "b"],
      ["logs", "--tail", "5", "--bogus", "local-0123456789ab"],
      ["process", "ls", "--bogus", "local-0123456789ab"],
      ["kill", "--bogus", "local-0123456789ab"]
    ]
    for (const args of cases) {
      const result = await local(args)
      expectCode(result, 2)
      const flag = args.find((a) => a.startsWith("--") && a !== "--tail" && a !== "--")!
      assert.include(result.stderr, `unknown option ${flag}`, args.join(" "))
      assert.notInclude(result.stderr, "Received unknown argument", args.join(" "))
    }
  })
})

// ---------------------------------------------------------------------------
// The library side of `create`: Sandbox.make({ detach: true })
// ---------------------------------------------------------------------------

describe("Sandbox.make({ detach: true })", () => {
  const localLive = (options: LocalSandbox.Options = {}) =>
    LocalSandbox.layer({ stateDir, ...options }).pipe(
      Layer.provideMerge(NodeContext.layer),
      Layer.merge(NodeHttpClient.layerUndici)
    )
  const hfLive = () =>
    HfJobs.layer({ token: emulator.token, endpoint: emulator.url, publicDns: false }).pipe(
      Layer.provideMerge(NodeContext.layer),
      Layer.merge(
        Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emulator))).pipe(
          Layer.provide(NodeHttpClient.layerUndici)
        )
      )
    )

  it("local: following the log of a live detached sandbox waits for new lines and ends when it does", async () => {
    const id = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true, lifetime: "1500 millis" })
      return sb.id
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    const { pid } = stateOf(id)
    localPids.add(pid)
    const lines = await Effect.runPromise(
      LocalSandbox.logs(id, { stateDir, follow: true }).pipe(Stream.runCollect, Effect.timeout("15 seconds"))
    )
    assert.match(Array.from(lines).join("\n"), /lifetime of 1\.5s reached/)
    assert.deepStrictEqual(await waitGone([pid]), [])
    // The server cannot remove its own state file; listing cleans what is stale.
    assert.deepStrictEqual(await Effect.runPromise(LocalSandbox.list({ stateDir })), [])
  })

  it("local: closing the scope only detaches; connect attaches; terminate stops it and removes its files", async () => {
    const made = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true })
      yield* sb.files.write("note.txt", "kept")
      return { id: sb.id, workdir: sb.details.workdir as string }
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    const { pid } = stateOf(made.id)
    localPids.add(pid)
    assert.isTrue(isAlive(pid), "the scope closed, the server lives on")
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(made.id)
      assert.strictEqual(yield* sb.files.readText("note.txt"), "kept")
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.isTrue(isAlive(pid), "a connection's scope only detaches too")
    assert.deepStrictEqual(
      (await Effect.runPromise(LocalSandbox.list({ stateDir }))).map((s) => s.id),
      [made.id]
    )
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(made.id)
      yield* sb.terminate
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.deepStrictEqual(await waitGone([pid]), [])
    assert.isFalse(fs.existsSync(made.workdir), "the working directory is removed")

    // terminate on the sandbox make returned stops it just the same.
    const pid2 = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true })
      const serverPid = sb.details.pid as number
      yield* sb.terminate
      return serverPid
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.deepStrictEqual(await waitGone([pid2]), [])
  })

  it("local: a failed start leaves nothing: no server, no state file, no log, no working directory", async () => {
    const pidFile = path.join(work, "fake-server.pid")
    const script = path.join(work, "fake-server.py")
    fs.writeFileSync(
      script,
      [
        "import json, os, time",
        `open(${JSON.stringify(pidFile)}, "w").write(str(os.getpid()))`,
        'print(json.dumps({"event": "listening", "host": "127.0.0.1", "port": 9, "pid": os.getpid(), "version": "0", "protocol": 1}), flush=True)',
        "time.sleep(60)"
      ].join("\n")
    )
    const tempDir = fs.mkdtempSync(path.join(work, "tmp-"))
    const failed = await Sandbox.make({ detach: true, startTimeout: "1 second" }).pipe(
      Effect.scoped,
      Effect.flip,
      Effect.provide(localLive({ serverScript: script, tempDir })),
      Effect.runPromise
    )
    assert.strictEqual(failed._tag, "StartError")
    // The pid it wrote if it got that far (a loaded machine may not run its first line within 1 s), and
    // no process left running its script either way.
    if (fs.existsSync(pidFile)) assert.deepStrictEqual(await waitGone([Number(fs.readFileSync(pidFile, "utf8"))]), [])
    assert.deepStrictEqual(await waitNoneWithArg(script), [])
    assert.deepStrictEqual(stateFiles(), [])
    assert.deepStrictEqual(fs.readdirSync(tempDir), [])

    const missing = await Sandbox.make({ detach: true }).pipe(
      Effect.scoped,
      Effect.flip,
      Effect.provide(localLive({ python: path.join(work, "no-python-here") })),
      Effect.runPromise
    )
    assert.strictEqual(missing._tag, "StartError")
    assert.deepStrictEqual(stateFiles(), [])
  })

  it("HF Jobs: the job keeps running after the scope closes; terminate after connect cancels it", async () => {
    const id = await Sandbox.make({ detach: true, transport: "proxy" }).pipe(
      Effect.map((sb) => sb.id),
      Effect.scoped,
      Effect.provide(hfLive()),
      Effect.runPromise
    )
    // Its scope has closed: a release that cancelled the job would have done so by now.
    assert.strictEqual((await job(id)).stage, "RUNNING")
    assert.strictEqual((await job(id)).cancelRequests, 0)
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(id)
      assert.strictEqual((yield* sb.exec("echo still here")).stdout, "still here\n")
      yield* sb.terminate
    }).pipe(Effect.scoped, Effect.provide(hfLive()), Effect.runPromise)
    await until(`job ${id} to end`, async () => ["CANCELED", "COMPLETED"].includes((await job(id)).stage))
  })
})
