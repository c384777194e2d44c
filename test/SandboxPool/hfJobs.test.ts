/**
 * `SandboxPool` on HF Jobs through the Hub emulator: hosts are jobs with HF's pool labels and host env,
 * leases run in them, a pooled id connects from a second client, and every host job is cancelled when
 * the pool closes.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxPool from "hf-sandbox/SandboxPool"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Schedules from "hf-sandbox/Schedules"
import { assertCancelled, jobOf } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { eventually } from "../support/local.js"

// A log snapshot (a pooled sandbox's log is its host job's) counts the log complete after 1 s without a
// line, not 5: the emulator replays a log at once, in one burst.
const Env = Layer.merge(emulatedHub({}, { schedules: { logQuietWindow: "1 second" } }), Schedules.layer(fastSchedules))
const weakIsolation = process.getuid?.() !== 0

layer(Env, { excludeTestServices: true, timeout: "120 seconds" })("SandboxPool on HF Jobs (emulated)", (it) => {
  it.effect("host jobs carry the pool's labels and env; leases run there; the pool's close cancels them", () =>
    Effect.gen(function* () {
      const hosts = yield* Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        const sb = yield* SandboxPool.make({ env: { WHO: "pooled" } })
        const [hostId] = sb.id.split(".")
        assert.strictEqual((yield* sb.exec('echo "$WHO"')).stdout, "pooled\n")
        yield* sb.files.write("a.txt", "from a lease")
        const again = yield* Sandbox.connect(sb.id)
        assert.strictEqual(yield* again.files.readText("a.txt"), "from a lease")
        const job = yield* jobOf(hostId!)
        const { labels } = job.spec as { readonly labels: Record<string, string> }
        assert.strictEqual(labels["hf-sandbox-mode"], "pool")
        assert.strictEqual(labels["hf-sandbox-pool"], "rl")
        assert.strictEqual(labels["hf-sandbox"], "1")
        assert.isTrue(job.environment.SBX_HOMES_DIR!.startsWith(job.workdir), "the container's own homes")
        assert.strictEqual(job.environment.SBX_HOST_MODE, "1")
        assert.strictEqual(job.environment.SBX_CAPACITY, "8")
        assert.strictEqual(job.environment.SBX_MAX_HOSTS, "2")
        // For HF's Python client, which sends the host token on a sandbox's routes.
        assert.strictEqual(job.environment.SBX_HOST_TOKEN_ACTS, "1")
        return yield* pool.hosts
      }).pipe(
        Effect.scoped,
        Effect.provide(
          SandboxPool.layer({
            name: "rl",
            sandboxesPerHost: 8,
            maxHosts: 2,
            warmUp: 2,
            weakIsolation,
            hostTokenActs: true
          })
        )
      )
      assert.strictEqual(hosts.length, 2)
      for (const host of hosts) yield* assertCancelled(host.id)
    })
  )

  it.effect("a host job that dies mid-run: its leases fail naming it, and the pool boots another", () =>
    Effect.gen(function* () {
      const pool = yield* SandboxPool.SandboxPool
      const sb = yield* SandboxPool.make()
      const [hostId] = sb.id.split(".")
      const job = yield* jobOf(hostId!)
      // The job's whole process group, as a crash of its container.
      process.kill(-job.pid!, "SIGKILL")
      const error = yield* Effect.flip(sb.exec("echo never"))
      assert.strictEqual(error._tag, "ConnectionLostError")
      assert.strictEqual(error._tag === "ConnectionLostError" ? error.host : undefined, hostId)
      yield* eventually(
        Effect.flatMap(pool.hosts, (hosts) =>
          hosts.length === 1 && hosts[0]!.id !== hostId ? Effect.void : Effect.fail("not replaced yet")
        ),
        "60 seconds"
      )
      const next = yield* SandboxPool.make()
      assert.strictEqual((yield* next.exec("echo again")).stdout, "again\n")
    }).pipe(Effect.scoped, Effect.provide(SandboxPool.layer({ name: "crashy", weakIsolation })))
  )

  it.effect("by pooled id through the provider: its metrics and log through its host, its kill deletes only it", () =>
    Effect.gen(function* () {
      const sb = yield* SandboxPool.make()
      const other = yield* SandboxPool.make()
      const [hostId, localId] = sb.id.split(".")
      // The provider's by-id metrics are a job's: a pooled id goes to the sandbox's routes on its host.
      const [sample] = yield* Stream.runCollect(
        Stream.take(SandboxProvider.metrics(sb.id, { interval: "100 millis" }), 1)
      )
      assert.isAbove(sample!.memoryTotalBytes, 0)
      const lines = yield* eventually(
        Effect.flatMap(Stream.runCollect(SandboxProvider.logs(sb.id)), (chunk) =>
          Array.from(chunk).some((line) => line.includes("created")) ? Effect.succeed(chunk) : Effect.fail("not yet")
        ),
        "30 seconds"
      )
      for (const line of lines) assert.include(line, localId!)
      yield* SandboxProvider.kill(sb.id)
      const job = yield* jobOf(hostId!)
      assert.strictEqual(job.stage, "RUNNING", "the host job keeps running")
      assert.strictEqual((yield* other.exec("echo still")).stdout, "still\n")
      const again = yield* Effect.flip(SandboxProvider.kill(sb.id))
      assert.strictEqual(again._tag === "StartError" ? again.reason : undefined, "NotFound")
    }).pipe(Effect.scoped, Effect.provide(SandboxPool.layer({ name: "byid", weakIsolation })))
  )

  it.effect("a pool adopts the running host jobs of its name, and its close leaves them running", () =>
    Effect.gen(function* () {
      const [kept] = yield* Effect.flatMap(SandboxPool.SandboxPool, (pool) => pool.hosts).pipe(
        Effect.provide(Layer.fresh(SandboxPool.layer({ name: "warm", detach: true, weakIsolation })))
      )
      const used = yield* Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        const sb = yield* SandboxPool.make()
        assert.strictEqual((yield* sb.exec("echo adopted")).stdout, "adopted\n")
        return { hosts: (yield* pool.hosts).map((h) => h.id), on: sb.id.split(".")[0] }
      }).pipe(Effect.scoped, Effect.provide(Layer.fresh(SandboxPool.layer({ name: "warm", weakIsolation }))))
      assert.deepStrictEqual(used, { hosts: [kept!.id], on: kept!.id }, "adopted: no host job started")
      assert.strictEqual((yield* jobOf(kept!.id)).stage, "RUNNING", "its close left the job it did not start")
      yield* SandboxProvider.sweep({ labels: { "hf-sandbox-pool": "warm" } })
      yield* assertCancelled(kept!.id)
    })
  )
})
