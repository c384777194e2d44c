/**
 * The HF Jobs provider against the Hub emulator (see test/HfJobs.test.ts): the quick tunnel (a restarted
 * cloudflared, the edge's warm-up, live streaming through it) and the job's log stream (cut, silent,
 * slow to send its first byte), as the start and `sb.logs` meet them.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import { assertCancelled, emulator, hostOf, jobOf, markersOf, recordingClient, resetFaults } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { eventually } from "../support/local.js"

// A log snapshot (`HfJobs.logs`) counts the log complete after 1 s without a line, not 5: the emulator
// replays a log at once, in one burst.
const Env = Layer.merge(
  emulatedHub({}, { schedules: { logQuietWindow: "1 second" } }),
  // Quick Hub retries and stage checks for every sandbox and by-id call here (see support/hub.ts).
  Schedules.layer(fastSchedules)
)

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })(
  "HF Jobs provider: quick tunnel and log streams (emulated Hub)",
  (it) => {
    it.effect("finds the tunnel after the log stream is cut twice, and rides out the edge's 530 warm-up", () =>
      Effect.gen(function* () {
        yield* resetFaults
        const emu = yield* emulator
        emu.faults.cutLogStreams = 2
        emu.faults.tunnelWarmup530Ms = 1500
        const sb = yield* Sandbox.make()
        assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
        assert.strictEqual(emu.faults.cutLogStreams, 0)
      }).pipe(Effect.scoped)
    )

    it.effect("cloudflared is restarted after a 429 at tunnel creation", () =>
      Effect.gen(function* () {
        yield* resetFaults
        const emu = yield* emulator
        emu.faults.tunnelCreate429 = 2
        const sb = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" } })
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
          const sb = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" } }).pipe(
            Effect.provideService(HttpClient.HttpClient, client)
          )
          assert.strictEqual((yield* sb.exec("echo before")).stdout, "before\n")
          const first = markersOf(yield* jobOf(sb.id))
          assert.strictEqual(first.length, 1)
          assert.deepStrictEqual([...new Set(hosts)], [hostOf(first[0]!)])

          // A followed output stream open when cloudflared dies (an exec's stream would reattach: see
          // test/Sandbox/execResume.test.ts).
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
            const made = yield* Sandbox.make({ env: { SBX_TUNNEL_BACKOFF: "0.1" } })
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
              const other = yield* Sandbox.connect(made.id, { startTimeout: "20 seconds" })
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
        const sb = yield* Sandbox.make({ transport: "proxy", schedules: { logQuietWindow: "500 millis" } })
        // Three quiet windows: a snapshot whose window started with the request would end, empty, long before.
        emu.faults.logFirstByteDelayMs = 1500
        const jobs = HfJobs.layer({
          token: emu.token,
          endpoint: emu.url,
          // Named, so that this second provider need not ask whoami.
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
          const sb = yield* Sandbox.make({ startTimeout: "40 seconds", schedules: { logStall: "1 second" } })
          assert.strictEqual((yield* sb.exec("echo found")).stdout, "found\n")
          assert.strictEqual(emu.faults.silentLogStreams, 0, "the silent stream was served")
        }).pipe(Effect.scoped)
    )

    it.effect("sb.logs follows the job's log until the sandbox ends", () =>
      Effect.gen(function* () {
        yield* resetFaults
        const sb = yield* Sandbox.make({ transport: "proxy" })
        const seen = yield* Deferred.make<void>()
        const follower = yield* sb.logs({ follow: true }).pipe(
          Stream.tap((line) =>
            line.includes('"event":"listening"') ? Deferred.succeed(seen, undefined) : Effect.void
          ),
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
        const sb = yield* Sandbox.make({ transport: "tunnel" })
        // The process cannot end before the test saw its first line: it waits for a file the test writes
        // only then. An edge that holds the stream until it ends therefore shows nothing, ever.
        const proc = yield* sb.spawn("echo first; while [ ! -e go ]; do sleep 0.05; done; echo second", {
          timeout: "60 seconds"
        })
        const firstSeen = yield* Deferred.make<void>()
        const follower = yield* proc.output({ follow: true }).pipe(
          Stream.tap((event) =>
            event._tag === "Stdout" && event.text.includes("first")
              ? Deferred.succeed(firstSeen, undefined)
              : Effect.void
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
  }
)
