/**
 * The HF Jobs provider against the Hub emulator (see test/HfJobs.test.ts): the Hub's faults (5xx, 429 with
 * its rate-limit headers, redirects, a fixed-window rate limit), and many sandboxes at once.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import { assertCancelled, emulator, jobOf, labelledJob, recordingServer, resetFaults } from "../support/hfJobs.js"
import { emulatedHub, emulatorLayer, fastSchedules } from "../support/hub.js"
import { assertGone, eventually } from "../support/local.js"

// Small pages: listing more jobs than one page holds is cheap. A log snapshot (`HfJobs.logs`) counts the
// log complete after 1 s without a line, not 5: the emulator replays a log at once, in one burst.
const Env = Layer.merge(
  emulatedHub({ listPageSize: 3 }, { schedules: { logQuietWindow: "1 second" } }),
  // Quick Hub retries and stage checks for every sandbox and by-id call here (see support/hub.ts).
  Schedules.layer(fastSchedules)
)

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })(
  "HF Jobs provider: the Hub's faults (emulated Hub)",
  (it) => {
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
          const sb = yield* Sandbox.make({ transport: "proxy" })
          assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
          return sb.id
        }).pipe(Effect.scoped)
        assert.isAtLeast(Date.now() - started, 1000, "the 429's Retry-After was honoured")
        assert.strictEqual((yield* emu.jobs).length, before + 1)
        yield* assertCancelled(id)
      })
    )

    it.effect(
      "10 sandboxes made in parallel are all cancelled when the scope closes",
      () =>
        Effect.gen(function* () {
          yield* resetFaults
          // Five on each transport: each start costs some 0.5 s of CPU in its job (the unpacked server
          // compiled afresh, a stand-in cloudflared for a tunnel), so twenty cost ten seconds of it.
          const ids = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, i) => i),
            (i) =>
              Sandbox.make({ transport: i % 2 === 0 ? "proxy" : "tunnel" }).pipe(
                Effect.tap((sb) => sb.exec(`echo ${i}`)),
                Effect.map((sb) => sb.id)
              ),
            { concurrency: "unbounded" }
          ).pipe(Effect.scoped)
          assert.strictEqual(new Set(ids).size, 10)
          yield* Effect.forEach(ids, assertCancelled, { concurrency: "unbounded", discard: true })
        }),
      // Ten servers and five cloudflareds start at once: on a machine busy with other suites that alone can
      // take a minute. A bound against a hang, not a measure of speed.
      120_000
    )

    it.effect("a rate-limited stage check during the start is waited out, not a failure", () =>
      Effect.gen(function* () {
        yield* resetFaults
        const emu = yield* emulator
        // Longer than the (fast) Hub retries last: a start that gives up on a 429 fails here.
        emu.faults.schedulingDelay = "2 seconds"
        emu.faults.hubErrors = [{ route: "inspect", status: 429, times: 1000, retryAfterSeconds: 0 }]
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport: "proxy" })
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
          const sb = yield* Sandbox.make({ transport: "tunnel" })
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
            const sb = yield* Sandbox.make({ transport })
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
  }
)

describe("HF Jobs provider under the Hub's fixed-window rate limit", () => {
  // Windows much smaller than the Hub's (5 minutes), so that waiting them out stays quick. They run back to
  // back from the emulator's start, and the emulator starts with the test: the window the test uses up is
  // then nearly whole when the sandbox's start asks the Hub.
  const RateLimited = Layer.unwrapScoped(
    Effect.map(
      Testing.make({ schedulingDelay: "100 millis", rateLimit: { quota: 4, window: "2 seconds" } }),
      (emulator) => emulatorLayer(emulator, false)
    )
  ).pipe(Layer.merge(Schedules.layer(fastSchedules)))

  it.live(
    "a sandbox starts, runs and is released while the Hub refuses some of its requests with 429",
    () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        // The window in force is used up first (the limiter counts every request, whatever its route), so
        // the start's first request meets the limit however slowly the machine makes the start's requests.
        const spent = yield* Effect.promise(async () => {
          for (let n = 1; n <= 20; n++) if ((await fetch(`${emu.url}/api/whoami-v2`)).status === 429) return n
          return 0
        })
        assert.isAbove(spent, 0, "the limiter answered 429 within 20 requests")
        const before = (yield* emu.requests).length
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ transport: "proxy" })
          assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
          return sb.id
        }).pipe(Effect.scoped)
        yield* assertCancelled(id)
        const requests = (yield* emu.requests).slice(before)
        assert.isAbove(requests.filter((r) => r.status === 429).length, 0, "the limiter refused some requests")
        assert.strictEqual(requests.filter((r) => r.route === "create" && r.status === 200).length, 1)
      }).pipe(Effect.provide(RateLimited)),
    60_000
  )
})
