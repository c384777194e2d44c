/**
 * The HF Jobs provider end to end against the Hub emulator: real job processes running the real
 * server, reached through the emulated Jobs proxy or a stand-in cloudflared and an emulated edge. The
 * provider code is exactly what runs against huggingface.co; only the endpoint and HttpClient differ.
 */

import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type * as net from "node:net"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"
import { emulatedHub, emulatorLayer, fastSchedules } from "./support/hub.js"
import { assertGone, eventually } from "./support/local.js"

// Small pages: listing more jobs than one page holds is cheap.
const Env = emulatedHub({ listPageSize: 3 })

const fast = fastSchedules

const emulator = Testing.HubEmulatorService

const resetFaults = Effect.map(emulator, (emu) => {
  Object.assign(emu.faults, Testing.noFaults())
})

/** The job of a sandbox, as the emulator records it. */
const jobOf = (id: string) =>
  Effect.flatMap(emulator, (emu) => emu.job(id)).pipe(
    Effect.flatMap((job) => (job ? Effect.succeed(job) : Effect.die(new Error(`no job ${id}`))))
  )

/**
 * The job ended because the client released it: its server was asked to shut down (so the job may have
 * COMPLETED before the cancel arrived) and the job was cancelled.
 */
const assertCancelled = (id: string) =>
  eventually(
    Effect.flatMap(jobOf(id), (job) =>
      (job.stage === "CANCELED" || job.stage === "COMPLETED") && job.cancelRequests >= 1
        ? Effect.succeed(job)
        : Effect.fail(new Error(`job ${id} is ${job.stage} after ${job.cancelRequests} cancel requests`))
    )
  ).pipe(Effect.tap((job) => (job.pid === undefined ? Effect.void : assertGone([job.pid]))))

const quickStart = (sb: Sandbox.Sandbox) =>
  Effect.gen(function* () {
    const py = yield* sb.exec(["python3", "-c", "print(1+1)"])
    assert.deepInclude(py, { exitCode: 0, stdout: "2\n" })
    const pipeline = yield* sb.exec("printf 'b\\na\\n' | sort | head -n 1")
    assert.strictEqual(pipeline.stdout, "a\n")
    yield* sb.files.write("notes/hello.txt", "hello from a job")
    assert.strictEqual(yield* sb.files.readText("notes/hello.txt"), "hello from a job")
  })

/** The tunnel URLs a job's log announced, oldest first. */
const markersOf = (job: Testing.JobRecord) =>
  job.logs.flatMap((line) => {
    const match = /^HF_SANDBOX_TUNNEL (\{.*\})$/.exec(line)
    return match === null ? [] : [(JSON.parse(match[1]!) as { url: string }).url]
  })

const hostOf = (url: string) => new URL(url).hostname

/** The test's HttpClient, recording the host of every tunnel request it sends. */
const recordingClient = Effect.map(HttpClient.HttpClient, (http) => {
  const hosts: Array<string> = []
  const client = HttpClient.tapRequest(http, (request) =>
    Effect.sync(() => {
      const host = hostOf(request.url)
      if (host.endsWith(".trycloudflare.com")) hosts.push(host)
    })
  )
  return { client, hosts }
})

/** A job that carries the sandbox labels (and so is listed as one) without running a server: cheap in bulk. */
const labelledJob = (extra: Record<string, string> = {}) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.promise(() =>
      fetch(`${emu.url}/api/jobs/${emu.user}`, {
        method: "POST",
        headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
        body: JSON.stringify({
          dockerImage: "python:3.12",
          command: ["sleep", "60"],
          flavor: "cpu-basic",
          labels: {
            "hf-sandbox": "1",
            "hf-sandbox-mode": "dedicated",
            "hf-sandbox-nonce": randomBytes(16).toString("hex"),
            ...extra
          }
        })
      }).then((r) => r.json() as Promise<{ id: string }>)
    )
  ).pipe(Effect.map((job) => job.id))

const cancelRaw = (id: string) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.promise(() =>
      fetch(`${emu.url}/api/jobs/${emu.user}/${id}/cancel`, {
        method: "POST",
        headers: { authorization: `Bearer ${Redacted.value(emu.token)}` }
      }).then((r) => r.arrayBuffer())
    )
  )

/** A loopback HTTP server that records the requests it gets (a host the Hub must not send the token to). */
const recordingServer = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ url: string; seen: Array<string | undefined>; server: http.Server }>((resolve) => {
        const seen: Array<string | undefined> = []
        const server = http.createServer((req, res) => {
          seen.push(req.headers.authorization)
          res.writeHead(200, { "content-type": "application/json" })
          res.end("[]")
        })
        server.listen(0, "127.0.0.1", () =>
          resolve({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen, server })
        )
      })
  ),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs provider (emulated Hub)", (it) => {
  for (const transport of ["tunnel", "proxy"] as const) {
    it.effect(`quick start over the ${transport}; scope close cancels the job`, () =>
      Effect.gen(function* () {
        yield* resetFaults
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport, schedules: fast })
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

  it.effect("finds the tunnel after the log stream is cut twice, and rides out the edge's 530 warm-up", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.cutLogStreams = 2
      emu.faults.tunnelWarmup530Ms = 1500
      const sb = yield* Sandbox.make({ schedules: fast })
      assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
      assert.strictEqual(emu.faults.cutLogStreams, 0)
    }).pipe(Effect.scoped)
  )

  it.effect("cloudflared is restarted after a 429 at tunnel creation", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.tunnelCreate429 = 2
      const sb = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" }, schedules: fast })
      assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
      const job = yield* jobOf(sb.id)
      assert.isTrue(job.logs.some((line) => line.includes("429 Too Many Requests")))
    }).pipe(Effect.scoped)
  )

  it.effect("a restarted tunnel is followed: a request in flight fails, later ones reach the new URL", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const { client, hosts } = yield* recordingClient
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" }, schedules: fast }).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
        assert.strictEqual((yield* sb.exec("echo before")).stdout, "before\n")
        const first = markersOf(yield* jobOf(sb.id))
        assert.strictEqual(first.length, 1)
        assert.deepStrictEqual([...new Set(hosts)], [hostOf(first[0]!)])

        // A followed output stream open when cloudflared dies (an exec's stream would reattach: see
        // test/exec-resume.test.ts).
        const started = yield* Deferred.make<void>()
        const proc = yield* sb.spawn("echo started; sleep 30")
        const inFlight = yield* proc.output({ follow: true }).pipe(
          Stream.tap((event) => (event._tag === "Stdout" ? Deferred.succeed(started, undefined) : Effect.void)),
          Stream.runDrain,
          Effect.fork
        )
        yield* Deferred.await(started)
        const killed = yield* emu.killTunnel(sb.id)
        assert.deepStrictEqual(killed, first)
        const lost = yield* Effect.flip(Fiber.join(inFlight))
        assert.strictEqual(lost._tag, "ConnectionLostError")

        // The server restarts cloudflared and announces a new hostname; the sandbox follows it.
        const again = yield* eventually(sb.exec("echo after"), "30 seconds")
        assert.strictEqual(again.stdout, "after\n")
        const markers = markersOf(yield* jobOf(sb.id))
        assert.strictEqual(markers.length, 2)
        assert.notStrictEqual(markers[1], markers[0])
        const afterRestart = hosts.length
        assert.strictEqual((yield* sb.exec("echo again")).stdout, "again\n")
        assert.deepStrictEqual([...new Set(hosts.slice(afterRestart))], [hostOf(markers[1]!)])
        // The dead hostname answers like Cloudflare's edge for a tunnel that is gone.
        const http = yield* HttpClient.HttpClient
        const dead = yield* http.execute(HttpClientRequest.get(`${markers[0]}/health`))
        assert.strictEqual(dead.status, 530)
        assert.strictEqual(yield* dead.text, "error code: 1033")
        return sb.id
      }).pipe(Effect.scoped)
      yield* assertCancelled(id)
    })
  )

  for (const firstByteMs of [0, 1200]) {
    it.effect(
      `connect to a job whose tunnel was restarted uses the newest URL (log's first byte after ${firstByteMs} ms)`,
      () =>
        Effect.gen(function* () {
          yield* resetFaults
          const emu = yield* emulator
          const made = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" }, schedules: fast })
          yield* made.files.write("kept.txt", "across the restart")
          const killed = yield* emu.killTunnel(made.id)
          assert.strictEqual(killed.length, 1)
          const markers = yield* eventually(
            Effect.flatMap(jobOf(made.id), (job) => {
              const found = markersOf(job)
              return found.length === 2 ? Effect.succeed(found) : Effect.fail(new Error(`${found.length} markers`))
            }),
            "30 seconds"
          )
          const { client, hosts } = yield* recordingClient
          emu.faults.logFirstByteDelayMs = firstByteMs
          const text = yield* Effect.gen(function* () {
            const other = yield* Sandbox.connect(made.id, { startTimeout: "20 seconds", schedules: fast })
            return yield* other.files.readText("kept.txt")
          }).pipe(Effect.scoped, Effect.provideService(HttpClient.HttpClient, client))
          assert.strictEqual(text, "across the restart")
          // Not one request went to the dead tunnel, not even the first health probe.
          assert.deepStrictEqual([...new Set(hosts)], [hostOf(markers[1]!)])
          assert.strictEqual((yield* made.exec("echo alive")).stdout, "alive\n")
          yield* made.terminate
          yield* assertCancelled(made.id)
        }).pipe(Effect.scoped)
    )
  }

  it.effect("a log snapshot waits for a slow first byte; only then does its quiet window start", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const sb = yield* Sandbox.make({ transport: "proxy", schedules: { ...fast, logQuietWindow: "500 millis" } })
      emu.faults.logFirstByteDelayMs = 2500
      const jobs = HfJobs.layer({
        token: emu.token,
        endpoint: emu.url,
        // Named, so that this second provider does not ask whoami (counted by the last test).
        namespace: emu.user,
        publicDns: false,
        schedules: { logQuietWindow: "500 millis" }
      })
      const lines = yield* HfJobs.logs(sb.id).pipe(Stream.runCollect, Effect.provide(jobs))
      assert.isTrue(Chunk.some(lines, (line) => line.includes('"event":"listening"')))
      const viaSandbox = yield* sb.logs().pipe(Stream.runCollect)
      assert.isTrue(Chunk.some(viaSandbox, (line) => line.includes('"event":"listening"')))
    }).pipe(Effect.scoped)
  )

  it.effect(
    "a start whose log stream stays silent (banner and keep-alives only) reopens it, after slow scheduling",
    () =>
      Effect.gen(function* () {
        yield* resetFaults
        const emu = yield* emulator
        emu.faults.schedulingDelay = "2 seconds"
        emu.faults.silentLogStreams = 1
        const sb = yield* Sandbox.make({ startTimeout: "40 seconds", schedules: { ...fast, logStall: "1 second" } })
        assert.strictEqual((yield* sb.exec("echo found")).stdout, "found\n")
        assert.strictEqual(emu.faults.silentLogStreams, 0, "the silent stream was served")
      }).pipe(Effect.scoped)
  )

  it.effect("a job that crashes before it is ready fails with JobFailed and its log tail", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.crashBeforeReady = 1
      const error = yield* Effect.flip(Sandbox.make({ schedules: fast }).pipe(Effect.scoped))
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
      const error = yield* Effect.flip(Sandbox.make({ startTimeout: "1 second", schedules: fast }).pipe(Effect.scoped))
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
      const fiber = yield* Effect.fork(Sandbox.make({ schedules: fast }).pipe(Effect.scoped))
      const created = yield* eventually(
        Effect.flatMap(emu.jobs, (jobs) =>
          jobs.length > before ? Effect.succeed(jobs[jobs.length - 1]!) : Effect.fail(new Error("no job yet"))
        )
      )
      yield* Fiber.interrupt(fiber)
      yield* assertCancelled(created.id)
    })
  )

  it.effect("Hub 500 and 429 on create, inspect and cancel are retried; exactly one job is created", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      emu.faults.hubErrors = [
        { route: "create", status: 500, times: 1 },
        { route: "create", status: 429, times: 1, retryAfterSeconds: 1 },
        { route: "inspect", status: 503, times: 2 },
        { route: "cancel", status: 500, times: 2 }
      ]
      const started = Date.now()
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy", schedules: fast })
        assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
        return sb.id
      }).pipe(Effect.scoped)
      assert.isAtLeast(Date.now() - started, 1000, "the 429's Retry-After was honoured")
      assert.strictEqual((yield* emu.jobs).length, before + 1)
      yield* assertCancelled(id)
    })
  )

  it.effect("the HF token reaches the job only when forwarded, and no token appears in logs, command or errors", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const hfToken = Redacted.value(emu.token)
      const plain = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ secrets: { API_KEY: "s3cret" }, schedules: fast })
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
        const sb = yield* Sandbox.make({ forwardHfToken: true, transport: "proxy", schedules: fast })
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
      const error = yield* Effect.flip(Sandbox.make({ schedules: fast }).pipe(Effect.scoped))
      for (const secret of [hfToken, ...sandboxTokens]) {
        assert.notInclude(error.message, secret)
        assert.notInclude(JSON.stringify(error), secret)
      }
    })
  )

  it.effect("connect, list, kill and logs manage sandboxes by id", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const made = yield* Sandbox.make({ labels: { purpose: "connect-test" }, schedules: fast })
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
      const made = yield* Sandbox.make({ transport: "proxy", schedules: { ...fast, logQuietWindow: "300 millis" } })
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
        const error = yield* Effect.flip(Sandbox.make({ labels, schedules: fast }).pipe(Effect.scoped))
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
        labels: { "team.ml": "a-b_c.1", empty: "", ["k".repeat(100)]: "v".repeat(100) },
        schedules: fast
      })
      const spec = (yield* jobOf(fine.id)).spec as { labels: Record<string, string> }
      assert.strictEqual(spec.labels["team.ml"], "a-b_c.1")
    }).pipe(Effect.scoped)
  )

  it.effect("sb.logs follows the job's log until the sandbox ends", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const sb = yield* Sandbox.make({ transport: "proxy", schedules: fast })
      const seen = yield* Deferred.make<void>()
      const follower = yield* sb.logs({ follow: true }).pipe(
        Stream.tap((line) => (line.includes('"event":"listening"') ? Deferred.succeed(seen, undefined) : Effect.void)),
        Stream.runCollect,
        Effect.fork
      )
      yield* Deferred.await(seen)
      yield* sb.terminate
      const lines = yield* Fiber.join(follower)
      assert.isTrue(Chunk.some(lines, (line) => line.includes('"event":"listening"')))
    }).pipe(Effect.scoped)
  )

  it.effect("a background process's followed output arrives live through the quick tunnel", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const sb = yield* Sandbox.make({ transport: "tunnel", schedules: fast })
      // The process cannot end before the test saw its first line: it waits for a file the test writes
      // only then. An edge that holds the stream until it ends therefore shows nothing, ever.
      const proc = yield* sb.spawn("echo first; while [ ! -e go ]; do sleep 0.05; done; echo second", {
        timeout: "60 seconds"
      })
      const firstSeen = yield* Deferred.make<void>()
      const follower = yield* proc.output({ follow: true }).pipe(
        Stream.tap((event) =>
          event._tag === "Stdout" && event.text.includes("first") ? Deferred.succeed(firstSeen, undefined) : Effect.void
        ),
        Stream.runCollect,
        Effect.fork
      )
      const live = yield* Deferred.await(firstSeen).pipe(Effect.timeout("30 seconds"), Effect.option)
      yield* sb.files.write("go", "")
      assert.isTrue(live._tag === "Some", "the first line did not arrive while the process was running")
      const events = yield* Fiber.join(follower)
      const text = Chunk.toArray(events)
        .flatMap((event) => (event._tag === "Stdout" ? [event.text] : []))
        .join("")
      assert.strictEqual(text, "first\nsecond\n")
      assert.deepInclude(yield* proc.wait, { exitCode: 0 })
    }).pipe(Effect.scoped)
  )

  it.effect("20 sandboxes made in parallel are all cancelled when the scope closes", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const ids = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          Sandbox.make({ transport: i % 2 === 0 ? "proxy" : "tunnel", schedules: fast }).pipe(
            Effect.tap((sb) => sb.exec(`echo ${i}`)),
            Effect.map((sb) => sb.id)
          ),
        { concurrency: "unbounded" }
      ).pipe(Effect.scoped)
      assert.strictEqual(new Set(ids).size, 20)
      yield* Effect.forEach(ids, assertCancelled, { concurrency: "unbounded", discard: true })
    })
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
        [
          Sandbox.make({ idleTimeout: "1 second", schedules: fast }),
          Sandbox.make({ timeout: "2h", idleTimeout: "1 hour", schedules: fast })
        ],
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
      const fiber = yield* Effect.fork(Sandbox.make({ schedules: fast }).pipe(Effect.scoped))
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

  it.effect("a rate-limited stage check during the start is waited out, not a failure", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      // Longer than the (fast) Hub retries last: a start that gives up on a 429 fails here.
      emu.faults.schedulingDelay = "2 seconds"
      emu.faults.hubErrors = [{ route: "inspect", status: 429, times: 1000, retryAfterSeconds: 0 }]
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy", schedules: fast })
        assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
        emu.faults.hubErrors = []
        return sb.id
      }).pipe(Effect.scoped)
      yield* assertCancelled(id)
    })
  )

  it.effect("a rate-limited log stream is reopened no sooner than the Hub's RateLimit reset", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      // The start follows the job's log for the tunnel URL; its first request is refused for 2 s.
      emu.faults.hubErrors = [{ route: "logs", status: 429, times: 1, retryAfterSeconds: 2 }]
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "tunnel", schedules: fast })
        assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
        return sb.id
      }).pipe(Effect.scoped)
      const logs = (yield* emu.requests).filter((r) => r.route === "logs" && r.path.includes(id))
      const limited = logs.findIndex((r) => r.status === 429)
      assert.isAtLeast(limited, 0, "the first log request was rate-limited")
      const next = logs[limited + 1]
      assert.isDefined(next, "the log was reopened")
      // A lower bound only: a loaded machine can only make the gap longer.
      assert.isAtLeast(next!.at - logs[limited]!.at, 2000)
    })
  )

  it.effect("release ends the job through its own server while the Hub's cancel is rate-limited for minutes", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      for (const transport of ["proxy", "tunnel"] as const) {
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport, schedules: fast })
          assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
          emu.faults.hubErrors = [{ route: "cancel", status: 429, times: 1000, retryAfterSeconds: 600 }]
          return sb.id
        }).pipe(Effect.scoped)
        const job = yield* eventually(
          Effect.flatMap(jobOf(id), (job) =>
            job.stage === "COMPLETED" ? Effect.succeed(job) : Effect.fail(new Error(`job ${id} is ${job.stage}`))
          )
        )
        assert.strictEqual(job.cancelRequests, 0, "every cancel was refused")
        if (job.pid !== undefined) yield* assertGone([job.pid])
        emu.faults.hubErrors = []
      }
    })
  )

  it.effect("Hub redirects: to the same host they are followed; to another host refused, the token not sent", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const id = yield* labelledJob()
      emu.faults.hubRedirects = [
        { route: "list", times: 1 },
        { route: "inspect", times: 1, status: 308 }
      ]
      assert.include(
        (yield* HfJobs.list()).map((info) => info.id),
        id
      )
      yield* HfJobs.kill(id)
      assert.strictEqual((yield* jobOf(id)).stage, "CANCELED")

      // Every request of the route is redirected while it is in force, not only the next one: a request
      // still in flight from an earlier test (a release's inspect) must not use it up first.
      const elsewhere = yield* recordingServer
      emu.faults.hubRedirects = [{ route: "list", times: 1000, toOrigin: elsewhere.url }]
      const refused = yield* Effect.flip(HfJobs.list())
      assert.strictEqual(refused._tag, "HubError")
      assert.include(refused.message, "redirect")
      assert.include(refused.message, new URL(elsewhere.url).host)
      emu.faults.hubRedirects = [{ route: "inspect", times: 1000, toOrigin: elsewhere.url }]
      const before = (yield* emu.requests).length
      const refusedInspect = yield* Effect.flip(HfJobs.kill(id))
      emu.faults.hubRedirects = []
      assert.include(refusedInspect.message, "redirect")
      // A refused redirect is an answer, not a transient failure: it is not asked again.
      const redirected = (yield* emu.requests).slice(before).filter((r) => r.route === "inspect" && r.status === 307)
      assert.lengthOf(redirected, 1)
      assert.deepStrictEqual(elsewhere.seen, [])
    }).pipe(Effect.scoped)
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
      Layer.merge(NodeHttpClient.layerUndici)
    ),
    { excludeTestServices: true }
  )("no token", (it) => {
    it.effect("fails with a StartError that says how to log in", () =>
      Effect.gen(function* () {
        const saved = { ...process.env }
        process.env.HF_TOKEN = ""
        process.env.HUGGING_FACE_HUB_TOKEN = ""
        process.env.HF_TOKEN_PATH = "/nonexistent/token"
        const exit = yield* Sandbox.make().pipe(Effect.scoped, Effect.exit)
        process.env = saved
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "NoToken")
        assert.include(error.message, "hf auth login")
      })
    )
  })
})

describe("HF Jobs provider under the Hub's fixed-window rate limit", () => {
  layer(
    Layer.unwrapScoped(
      Effect.map(
        // A window much smaller than the Hub's (5 minutes), so that waiting it out stays quick.
        Testing.make({ schedulingDelay: "100 millis", rateLimit: { quota: 4, window: "2 seconds" } }),
        (emulator) => emulatorLayer(emulator, false)
      )
    ),
    { excludeTestServices: true, timeout: "60 seconds" }
  )("rate limited", (it) => {
    it.effect("a sandbox starts, runs and is released while the Hub refuses some of its requests with 429", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport: "proxy", schedules: fast })
          assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
          return sb.id
        }).pipe(Effect.scoped)
        yield* assertCancelled(id)
        const requests = yield* emu.requests
        assert.isAbove(requests.filter((r) => r.status === 429).length, 0, "the limiter refused some requests")
        assert.strictEqual(requests.filter((r) => r.route === "create" && r.status === 200).length, 1)
      })
    )
  })
})
