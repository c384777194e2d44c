/**
 * The HF Jobs provider end to end against the Hub emulator: real job processes running the real
 * server, reached through the emulated Jobs proxy or a stand-in cloudflared and an emulated edge. The
 * provider code is exactly what runs against huggingface.co; only the endpoint and HttpClient differ.
 * This file: a sandbox's life (start, failures to start, release) and managing sandboxes by id. The
 * quick tunnel and log streams are in test/HfJobs/tunnel.test.ts, the Hub's faults in
 * test/HfJobs/hubFaults.test.ts: vitest runs the three side by side.
 */
import { randomBytes } from "node:crypto"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Schedules from "hf-sandbox/Schedules"
import { assertCancelled, cancelRaw, emulator, jobOf, labelledJob, resetFaults } from "./support/hfJobs.js"
import { emulatedHub, fastSchedules } from "./support/hub.js"
import { assertGone, eventually } from "./support/local.js"

// Small pages: listing more jobs than one page holds is cheap. A log snapshot (`HfJobs.logs`) counts the
// log complete after 1 s without a line, not 5: the emulator replays a log at once, in one burst.
const Env = Layer.merge(
  emulatedHub({ listPageSize: 3 }, { schedules: { logQuietWindow: "1 second" } }),
  // Quick Hub retries and stage checks for every sandbox and by-id call here (see support/hub.ts).
  Schedules.layer(fastSchedules)
)

const quickStart = (sb: Sandbox.Sandbox) =>
  Effect.gen(function* () {
    const py = yield* sb.exec(["python3", "-c", "print(1+1)"])
    assert.deepInclude(py, { exitCode: 0, stdout: "2\n" })
    const pipeline = yield* sb.exec("printf 'b\\na\\n' | sort | head -n 1")
    assert.strictEqual(pipeline.stdout, "a\n")
    yield* sb.files.write("notes/hello.txt", "hello from a job")
    assert.strictEqual(yield* sb.files.readText("notes/hello.txt"), "hello from a job")
  })

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs provider (emulated Hub)", (it) => {
  for (const transport of ["tunnel", "proxy"] as const) {
    it.effect(`quick start over the ${transport}; scope close cancels the job`, () =>
      Effect.gen(function* () {
        yield* resetFaults
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport })
          assert.strictEqual(sb.provider, "hf-jobs")
          assert.strictEqual(sb.details.transport, transport)
          yield* quickStart(sb)
          return sb.id
        }).pipe(Effect.scoped)
        const job = yield* assertCancelled(id)
        const spec = job.spec as { labels: Record<string, string>; expose?: unknown; flavor: string }
        assert.strictEqual(spec.labels["hf-sandbox"], "1")
        assert.strictEqual(spec.labels["hf-sandbox-mode"], "dedicated")
        assert.match(spec.labels["hf-sandbox-nonce"] ?? "", /^[0-9a-f]{32}$/)
        assert.strictEqual(spec.flavor, "cpu-basic")
        // The proxy transport depends on `expose` reaching the Hub in the create body.
        assert.deepStrictEqual(spec.expose, transport === "proxy" ? { ports: [49983] } : undefined)
      })
    )
  }

  it.effect("HF options as a Context value: a make's own win, labels merge, the job gets them", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const make = (options: Sandbox.MakeOptions) =>
        Sandbox.make(options).pipe(
          HfJobs.withSandboxOptions({ flavor: "cpu-upgrade", labels: { team: "ml", run: "a" } }),
          HfJobs.withSandboxOptions({ transport: "proxy", labels: { suite: "s" } })
        )
      const inherited = yield* make({})
      assert.strictEqual(inherited.details.transport, "proxy")
      const spec = (yield* jobOf(inherited.id)).spec as { labels: Record<string, string>; flavor: string }
      assert.strictEqual(spec.flavor, "cpu-upgrade")
      assert.deepInclude(spec.labels, { team: "ml", run: "a", suite: "s" })
      const own = yield* make({ flavor: "cpu-basic", labels: { run: "b" } })
      const ownSpec = (yield* jobOf(own.id)).spec as { labels: Record<string, string>; flavor: string }
      assert.strictEqual(ownSpec.flavor, "cpu-basic", "the make's own flavor wins")
      assert.deepInclude(ownSpec.labels, { team: "ml", run: "b", suite: "s" })
    }).pipe(Effect.scoped)
  )

  it.effect("HF options are checked before any job exists, wherever they were given", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      const wrongType = yield* Effect.flip(Sandbox.make({ transport: "pigeon" as "proxy" }))
      assert.strictEqual(wrongType.reason, "InvalidOptions")
      assert.include(wrongType.message, 'transport: "pigeon" is not one of "tunnel" or "proxy"')
      assert.deepStrictEqual(wrongType.invalid, {
        option: "transport",
        problem: '"pigeon" is not one of "tunnel" or "proxy"'
      })
      const fromContext = yield* Effect.flip(
        Sandbox.make({}).pipe(HfJobs.withSandboxOptions({ cloudflared: { version: "2026.4.0" } }))
      )
      assert.include(fromContext.message, 'cloudflared.version: "2026.4.0" is older than 2026.5.0')
      assert.strictEqual(fromContext.invalid?.option, "cloudflared.version")
      const badLabel = yield* Effect.flip(Sandbox.make({}).pipe(HfJobs.withSandboxOptions({ labels: { "a b": "x" } })))
      assert.include(badLabel.message, 'labels: "a b" is not a label key (1 to 100 letters, digits')
      assert.strictEqual((yield* emu.jobs).length, before, "no job was created")
      // The start bound follows the transport in force: the proxy's is shorter.
      const provider = yield* SandboxProvider.SandboxProvider
      const bound = (options: HfJobs.SandboxOptions) =>
        provider.startTimeout!({
          image: "python:3.12",
          env: {},
          idleTimeout: undefined,
          secrets: {},
          lifetime: undefined,
          providerOptions: {}
        }).pipe(HfJobs.withSandboxOptions(options))
      assert.strictEqual(Duration.toMinutes(yield* bound({ transport: "proxy" })), 2)
      assert.strictEqual(Duration.toMinutes(yield* bound({})), 3)
    }).pipe(Effect.scoped)
  )

  it.effect("a job that crashes before it is ready fails with JobFailed and its log tail", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.crashBeforeReady = 1
      const error = yield* Effect.flip(Sandbox.make().pipe(Effect.scoped))
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.reason, "JobFailed")
      assert.include(error.message, "ERROR")
      assert.include(error.message, "137")
      const jobs = yield* emu.jobs
      const job = jobs[jobs.length - 1]!
      assert.strictEqual(job.stage, "ERROR")
      if (job.pid !== undefined) yield* assertGone([job.pid])
    })
  )

  it.effect("startTimeout exceeded: StartError Timeout, and the job is cancelled", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.schedulingDelay = "30 seconds"
      const before = (yield* emu.jobs).length
      const error = yield* Effect.flip(Sandbox.make({ startTimeout: "1 second" }).pipe(Effect.scoped))
      assert.strictEqual(error.reason, "Timeout")
      const jobs = yield* emu.jobs
      assert.strictEqual(jobs.length, before + 1)
      yield* assertCancelled(jobs[jobs.length - 1]!.id)
    })
  )

  it.effect("interrupting make cancels the job it created", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.schedulingDelay = "30 seconds"
      const before = (yield* emu.jobs).length
      const fiber = yield* Effect.fork(Sandbox.make().pipe(Effect.scoped))
      const created = yield* eventually(
        Effect.flatMap(emu.jobs, (jobs) =>
          jobs.length > before ? Effect.succeed(jobs[jobs.length - 1]!) : Effect.fail(new Error("no job yet"))
        )
      )
      yield* Fiber.interrupt(fiber)
      yield* assertCancelled(created.id)
    })
  )

  it.effect("the HF token reaches the job only when forwarded, and no token appears in logs, command or errors", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const hfToken = Redacted.value(emu.token)
      const plain = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ secrets: { API_KEY: "s3cret" } })
        assert.strictEqual((yield* sb.exec('echo "$API_KEY"')).stdout, "s3cret\n")
        assert.notInclude((yield* sb.exec("env")).stdout, hfToken)
        return yield* jobOf(sb.id)
      }).pipe(Effect.scoped)
      assert.notProperty(plain.secrets, "HF_TOKEN")
      assert.property(plain.secrets, "SBX_TOKEN")
      const visibleEnv = (plain.spec as { environment: Record<string, string> }).environment
      assert.notProperty(visibleEnv, "SBX_TOKEN")
      assert.notProperty(visibleEnv, "API_KEY")

      const forwarded = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ forwardHfToken: true, transport: "proxy" })
        assert.strictEqual((yield* sb.exec('printf %s "$HF_TOKEN"')).stdout, hfToken)
        return yield* jobOf(sb.id)
      }).pipe(Effect.scoped)
      assert.strictEqual(forwarded.secrets.HF_TOKEN, hfToken)

      const sandboxTokens = [plain, forwarded].map((job) => job.secrets.SBX_TOKEN!)
      for (const job of [plain, forwarded]) {
        const visible = [
          job.logs.join("\n"),
          JSON.stringify((job.spec as { command: unknown }).command),
          JSON.stringify((job.spec as { environment: unknown }).environment),
          JSON.stringify((job.spec as { labels: unknown }).labels)
        ].join("\n")
        for (const secret of [hfToken, ...sandboxTokens, "s3cret"]) assert.notInclude(visible, secret)
      }
      emu.faults.crashBeforeReady = 1
      const error = yield* Effect.flip(Sandbox.make().pipe(Effect.scoped))
      for (const secret of [hfToken, ...sandboxTokens]) {
        assert.notInclude(error.message, secret)
        assert.notInclude(JSON.stringify(error), secret)
      }
    })
  )

  it.effect("connect, list, kill and logs manage sandboxes by id", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const made = yield* Sandbox.make({ labels: { purpose: "connect-test" } })
      yield* made.files.write("from-first.txt", "written by the first client")

      const listed = yield* HfJobs.list()
      const mine = listed.find((info) => info.id === made.id)
      assert.isDefined(mine)
      assert.strictEqual(mine?.labels.purpose, "connect-test")
      assert.include(["RUNNING", "SCHEDULING"], mine?.stage)

      const text = yield* Effect.gen(function* () {
        const other = yield* Sandbox.connect(made.id)
        return yield* other.files.readText("from-first.txt")
      }).pipe(Effect.scoped)
      assert.strictEqual(text, "written by the first client")
      // Detaching did not stop it.
      assert.strictEqual((yield* made.exec("echo alive")).stdout, "alive\n")

      const lines = yield* Stream.runCollect(HfJobs.logs(made.id, { tail: 50 }))
      assert.isTrue(Chunk.some(lines, (line) => line.startsWith("HF_SANDBOX_TUNNEL ")))
      assert.isFalse(Chunk.some(lines, (line) => line.startsWith("===== Job started")))

      // A job that is not a sandbox is refused, whatever runs in it.
      const emu = yield* emulator
      const plain = yield* Effect.promise(() =>
        fetch(`${emu.url}/api/jobs/${emu.user}`, {
          method: "POST",
          headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
          body: JSON.stringify({ dockerImage: "python:3.12", command: ["sleep", "30"], flavor: "cpu-basic" })
        }).then((r) => r.json() as Promise<{ id: string }>)
      )
      const notSandbox = yield* Effect.flip(Sandbox.connect(plain.id).pipe(Effect.scoped))
      assert.include(notSandbox.message, "not an hf-sandbox sandbox")
      const notKilled = yield* Effect.flip(HfJobs.kill(plain.id))
      assert.strictEqual(notKilled._tag, "StartError")
      assert.isUndefined((yield* HfJobs.list()).find((info) => info.id === plain.id))

      yield* HfJobs.kill(made.id)
      yield* assertCancelled(made.id)
      const after = yield* HfJobs.list()
      assert.isUndefined(after.find((info) => info.id === made.id))
      const refused = yield* Effect.flip(Sandbox.connect(made.id).pipe(Effect.scoped))
      assert.strictEqual(refused._tag, "StartError")
      assert.include(refused.message, "not running")
    }).pipe(Effect.scoped)
  )

  it.effect("ids are checked before any request; namespace/id is taken wherever an id is", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const made = yield* Sandbox.make({ transport: "proxy", schedules: { logQuietWindow: "300 millis" } })
      const before = (yield* emu.requests).length
      for (const bad of [
        "../../x",
        "alice/../x",
        `${emu.user}/${made.id}/cancel`,
        `../${made.id}`,
        made.id.toUpperCase()
      ]) {
        const connected = yield* Effect.flip(Sandbox.connect(bad).pipe(Effect.scoped))
        assert.strictEqual(connected._tag, "StartError")
        assert.strictEqual(connected.reason, "InvalidOptions", connected.message)
        assert.include(connected.message, "24 hex digits")
        const killed = yield* Effect.flip(HfJobs.kill(bad))
        assert.strictEqual(killed._tag === "StartError" ? killed.reason : killed._tag, "InvalidOptions")
        const logged = yield* Effect.flip(Stream.runDrain(HfJobs.logs(bad)))
        assert.strictEqual(logged._tag === "StartError" ? logged.reason : logged._tag, "InvalidOptions")
      }
      const conflict = yield* Effect.flip(
        Sandbox.connect(`acme/${made.id}`, { namespace: emu.user }).pipe(Effect.scoped)
      )
      assert.include(conflict.message, "namespace")
      assert.strictEqual((yield* emu.requests).length, before, "no request for a malformed id")

      const ref = `${emu.user}/${made.id}`
      const text = yield* Effect.gen(function* () {
        const other = yield* Sandbox.connect(ref)
        assert.strictEqual(other.id, made.id)
        return (yield* other.exec("echo via-namespace")).stdout
      }).pipe(Effect.scoped)
      assert.strictEqual(text, "via-namespace\n")
      const lines = yield* Stream.runCollect(HfJobs.logs(ref, { tail: 50 }))
      assert.isTrue(Chunk.some(lines, (line) => line.includes('"event":"listening"')))
      yield* HfJobs.kill(ref)
      yield* assertCancelled(made.id)
    }).pipe(Effect.scoped)
  )

  it.effect("labels are checked as the Hub checks them, before any job exists; the emulator refuses bad ones", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      for (const labels of [
        { "bad key": "x" },
        { ok: "a/b" },
        { ["k".repeat(101)]: "v" },
        { k: "v".repeat(101) },
        { "": "v" }
      ]) {
        const error = yield* Effect.flip(Sandbox.make({ labels }).pipe(Effect.scoped))
        assert.strictEqual(error.reason, "InvalidOptions", error.message)
        assert.include(error.message, "label")
      }
      assert.strictEqual((yield* emu.jobs).length, before, "no job was created")
      const answer = yield* Effect.promise(() =>
        fetch(`${emu.url}/api/jobs/${emu.user}`, {
          method: "POST",
          headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
          body: JSON.stringify({ dockerImage: "python:3.12", command: ["true"], labels: { "bad key": "x" } })
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error: string } }))
      )
      assert.strictEqual(answer.status, 400)
      assert.include(answer.body.error, "label")
      const fine = yield* Sandbox.make({
        transport: "proxy",
        labels: { "team.ml": "a-b_c.1", empty: "", ["k".repeat(100)]: "v".repeat(100) }
      })
      const spec = (yield* jobOf(fine.id)).spec as { labels: Record<string, string> }
      assert.strictEqual(spec.labels["team.ml"], "a-b_c.1")
    }).pipe(Effect.scoped)
  )

  it.effect("a client that never releases still stops paying: the idle timeout and the job timeout end the job", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      // A start slower than the idle timeout (a loaded machine, a slow quick tunnel): the sandbox must not
      // end as idle before its client has reached it.
      emu.faults.tunnelRegisterDelayMs = 2_000
      // Made in a scope that is never closed while the job is watched, as if the client had been SIGKILLed.
      const scope = yield* Scope.make()
      const [idle, capped] = yield* Effect.all(
        // `timeout` is the deprecated alias of `lifetime`: this is the test that it still reaches the job.
        [Sandbox.make({ idleTimeout: "1 second" }), Sandbox.make({ timeout: "2h", idleTimeout: "1 hour" })],
        { concurrency: 2 }
      ).pipe(Scope.extend(scope))
      const ended = (id: string, stage: string) =>
        eventually(
          Effect.flatMap(jobOf(id), (job) =>
            job.stage === stage ? Effect.succeed(job) : Effect.fail(new Error(`job ${id} is ${job.stage}`))
          ),
          "40 seconds"
        )
      const idled = yield* ended(idle.id, "COMPLETED")
      assert.strictEqual(idled.cancelRequests, 0)
      // The job timeout the client asked for comes due when the test says, not when a loaded machine
      // happens to get there: nothing else has ended the job by then.
      assert.strictEqual((yield* jobOf(capped.id)).stage, "RUNNING")
      assert.isTrue(yield* emu.expireTimeout(capped.id))
      const timedOut = yield* ended(capped.id, "CANCELED")
      assert.strictEqual(timedOut.cancelRequests, 0)
      assert.strictEqual(timedOut.message, "timeout")
      assert.strictEqual((timedOut.spec as { timeoutSeconds: number }).timeoutSeconds, 7200)
      for (const job of [idled, timedOut]) if (job.pid !== undefined) yield* assertGone([job.pid])
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.effect("list and kill see every page; the Hub is asked for sandbox labels and live stages", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const batch = `b${randomBytes(4).toString("hex")}`
      const ids = yield* Effect.forEach(Array.from({ length: 7 }), () => labelledJob({ batch }))
      // Newer jobs that are not sandboxes push the sandboxes further down the pages.
      for (let i = 0; i < 4; i++) {
        yield* Effect.promise(() =>
          fetch(`${emu.url}/api/jobs/${emu.user}`, {
            method: "POST",
            headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
            body: JSON.stringify({ dockerImage: "python:3.12", command: ["sleep", "60"] })
          }).then((r) => r.arrayBuffer())
        )
      }
      const mark = (yield* emu.requests).length
      const listed = (yield* HfJobs.list()).filter((info) => info.labels.batch === batch).map((info) => info.id)
      assert.deepStrictEqual(listed.slice().sort(), ids.slice().sort())
      const asked = (yield* emu.requests).slice(mark).filter((r) => r.route === "list")
      assert.isAtLeast(asked.length, 3, "7 sandboxes on pages of 3")
      const query = new URL(asked[0]!.path, emu.url).searchParams
      assert.include(query.getAll("label"), "hf-sandbox=1")
      assert.includeMembers(query.getAll("stage"), ["SCHEDULING", "RUNNING"])

      yield* cancelRaw(ids[0]!)
      const live = (yield* HfJobs.list()).filter((info) => info.labels.batch === batch)
      assert.notInclude(
        live.map((info) => info.id),
        ids[0]
      )
      const all = (yield* HfJobs.list({ all: true })).filter((info) => info.labels.batch === batch)
      assert.strictEqual(all.length, 7)
      yield* Effect.forEach(ids.slice(1), (id) => HfJobs.kill(id), { discard: true })
      for (const id of ids) assert.strictEqual((yield* jobOf(id)).stage, "CANCELED")
    })
  )

  it.effect("an interrupted create is found by its nonce beyond the first page, and cancelled", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.createAnswerDelayMs = 30_000
      emu.faults.schedulingDelay = "30 seconds"
      const before = (yield* emu.jobs).length
      const fiber = yield* Effect.fork(Sandbox.make().pipe(Effect.scoped))
      const orphan = yield* eventually(
        Effect.flatMap(emu.jobs, (jobs) =>
          jobs.length > before ? Effect.succeed(jobs[jobs.length - 1]!) : Effect.fail(new Error("no job yet"))
        )
      )
      emu.faults.createAnswerDelayMs = 0
      // Other sandboxes created meanwhile fill the first pages.
      const others = yield* Effect.forEach(Array.from({ length: 4 }), () => labelledJob())
      yield* Fiber.interrupt(fiber)
      yield* assertCancelled(orphan.id)
      yield* Effect.forEach(others, cancelRaw, { discard: true })
    })
  )

  it.effect("whoami is asked once for the provider's life", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const requests = yield* emu.requests
      assert.strictEqual(requests.filter((r) => r.route === "whoami" && r.status === 200).length, 1)
    })
  )
})

describe("HF Jobs provider without credentials", () => {
  layer(
    HfJobs.layer({ endpoint: "http://127.0.0.1:9" }).pipe(
      Layer.provide(NodeContext.layer),
      Layer.merge(NodeHttpClient.layerUndici),
      // The layer reads the environment when it is built: this one has no token anywhere.
      Layer.provide(
        Layer.setConfigProvider(
          ConfigProvider.fromMap(
            new Map([
              ["HF_TOKEN", ""],
              ["HUGGING_FACE_HUB_TOKEN", ""],
              ["HF_TOKEN_PATH", "/nonexistent/token"]
            ])
          )
        )
      )
    ),
    { excludeTestServices: true }
  )("no token", (it) => {
    it.effect("fails with a StartError that says how to log in", () =>
      Effect.gen(function* () {
        const exit = yield* Sandbox.make().pipe(Effect.scoped, Effect.exit)
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "NoToken")
        assert.include(error.message, "hf auth login")
      })
    )
  })
})
