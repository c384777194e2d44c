/**
 * The pool's own logic over in-process fake hosts (test/support/fakeHost.ts): options, warm-up, where
 * leases go, how many hosts a burst boots, back-pressure and its timeout, a host that dies, the pool's
 * close, and `Sandbox.connect` by pooled id (with HF's server's host-token fallback).
 */

import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxPool from "hf-sandbox/SandboxPool"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as FakeHost from "../support/fakeHost.js"
import { eventually } from "../support/local.js"

const env = (k: FakeHost.Knobs) => Layer.merge(FakeHost.layer(k), NodeHttpClient.layerUndici)

/** Runs `body` with a pool of these options over fake hosts. */
const withPool = <A, E>(
  k: FakeHost.Knobs,
  options: SandboxPool.LayerOptions,
  body: Effect.Effect<
    A,
    E,
    SandboxPool.SandboxPool | Scope.Scope | SandboxProvider.SandboxProvider | HttpClient.HttpClient
  >
) => body.pipe(Effect.scoped, Effect.provide(SandboxPool.layer(options)), Effect.provide(env(k)))

describe("SandboxPool over fake hosts", () => {
  it.live("a bad option fails before any host starts, naming the option and the value", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      const cases: ReadonlyArray<[SandboxPool.LayerOptions, string]> = [
        [{ sandboxesPerHost: 0 }, "sandboxesPerHost"],
        [{ maxHosts: 1.5 }, "maxHosts"],
        [{ warmUp: 3, maxHosts: 2 }, "warmUp"],
        [{ acquireTimeout: "soon" as never }, "acquireTimeout"],
        [{ name: "a b" }, "name"],
        [{ env: { "1X": "y" } }, "env"]
      ]
      for (const [options, option] of cases) {
        const error = yield* Effect.flip(withPool(k, options, Effect.void))
        assert.strictEqual(error._tag, "PoolError")
        if (error._tag !== "PoolError") continue
        assert.strictEqual(error.reason, "InvalidOptions")
        assert.strictEqual(error.option, option)
        assert.include(error.message, option)
      }
      assert.strictEqual(k.hosts.length, 0)
      const lease = yield* Effect.flip(withPool(k, { warmUp: 0 }, SandboxPool.make({ env: { "a-b": "1" } })))
      assert.strictEqual(lease._tag === "PoolError" ? lease.option : undefined, "env")
    })
  )

  it.live("warm hosts start in parallel as hosts of the pool; a lease is a sandbox under its host's prefix", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      k.gate = yield* Deferred.make<void>()
      const gate = k.gate
      const pool = yield* Effect.fork(
        withPool(
          k,
          { warmUp: 2, sandboxesPerHost: 7, name: "evals", env: { A: "1" } },
          Effect.gen(function* () {
            const hosts = yield* Effect.flatMap(SandboxPool.SandboxPool, (p) => p.hosts)
            const sb = yield* SandboxPool.make({ env: { B: "2" }, idleTimeout: "90 seconds" })
            const [hostId, localId] = sb.id.split(".")
            const host = k.hosts.find((h) => h.id === hostId)!
            assert.deepStrictEqual(host.sandboxes.get(localId!), { env: { A: "1", B: "2" }, idle: 90 })
            assert.deepStrictEqual(yield* sb.processes, [])
            assert.include(host.requests, `GET /v1/sandboxes/${localId}/processes`)
            assert.strictEqual(sb.details.host, hostId)
            return hosts
          })
        )
      )
      // Both boots are under way before either is let through: they run in parallel.
      // (`k.hosts` stays empty until a boot passes the gate, so it is the boots begun that show this.)
      yield* eventually(
        Effect.suspend(() => (k.boots === 2 ? Effect.void : Effect.fail(`${k.boots} of 2 boots begun`)))
      )
      assert.strictEqual(k.hosts.length, 0)
      yield* Deferred.succeed(gate, undefined)
      const hosts = yield* pool.await.pipe(Effect.flatten)
      assert.strictEqual(hosts.length, 2)
      assert.strictEqual(k.hosts.length, 2)
      for (const host of k.hosts) {
        assert.deepStrictEqual(host.spec.host, {
          capacity: 7,
          pool: "evals",
          maxHosts: undefined,
          weakIsolation: false
        })
        assert.isTrue(host.closed, "the pool's close terminates every host")
        assert.strictEqual(host.sandboxes.size, 0, "a lease's close deletes its sandbox")
      }
    })
  )

  it.live("a burst boots only the hosts it needs; released slots are reused", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      yield* withPool(
        k,
        { warmUp: 1, sandboxesPerHost: 5 },
        Effect.gen(function* () {
          // 12 leases held at once: 3 hosts of 5.
          const all = yield* Deferred.make<void>()
          let leased = 0
          const ids = yield* Effect.forEach(
            Array.from({ length: 12 }),
            () =>
              Effect.gen(function* () {
                const sb = yield* SandboxPool.make()
                if (++leased === 12) yield* Deferred.succeed(all, undefined)
                yield* Deferred.await(all)
                return sb.id
              }).pipe(Effect.scoped),
            { concurrency: "unbounded" }
          )
          assert.strictEqual(new Set(ids).size, 12)
          assert.strictEqual(new Set(ids.map((id) => id.split(".")[0])).size, 3)
          assert.strictEqual(k.hosts.length, 3)
          // Every slot is free again: 15 more leases, 5 at a time, boot nothing.
          yield* Effect.forEach(Array.from({ length: 15 }), () => Effect.scoped(SandboxPool.make()), {
            concurrency: 5,
            discard: true
          })
          assert.strictEqual(k.hosts.length, 3)
          assert.deepStrictEqual(
            k.hosts.map((h) => h.sandboxes.size),
            [0, 0, 0]
          )
        })
      )
    })
  )

  it.live("a host that refuses a sandbox for want of room is taken as full, and the lease goes elsewhere", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      // Another client fills the hosts too: each takes only 2 of its 5 from us.
      k.reportedCapacity = 2
      yield* withPool(
        k,
        { warmUp: 1, sandboxesPerHost: 5 },
        Effect.gen(function* () {
          const ids = yield* Effect.forEach(Array.from({ length: 4 }), () =>
            Effect.map(SandboxPool.make(), (sb) => sb.id)
          )
          assert.strictEqual(new Set(ids.map((id) => id.split(".")[0])).size, 2)
        })
      )
      assert.strictEqual(k.hosts.length, 2)
    })
  )

  it.live("with maxHosts, leases wait for a free slot (back-pressure), and time out when none comes", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      yield* withPool(
        k,
        { warmUp: 1, sandboxesPerHost: 3, maxHosts: 2 },
        Effect.forEach(
          Array.from({ length: 20 }),
          () => Effect.flatMap(SandboxPool.make(), (sb) => sb.processes).pipe(Effect.scoped),
          { concurrency: 20, discard: true }
        )
      )
      assert.strictEqual(k.hosts.length, 2)

      const t = FakeHost.knobs()
      const error = yield* withPool(
        t,
        { warmUp: 1, sandboxesPerHost: 1, maxHosts: 1, acquireTimeout: "200 millis" },
        Effect.gen(function* () {
          yield* SandboxPool.make()
          return yield* Effect.flip(Effect.scoped(SandboxPool.make()))
        })
      )
      assert.strictEqual(error._tag, "PoolError")
      assert.strictEqual(error._tag === "PoolError" ? error.reason : undefined, "AcquireTimeout")
      assert.include(error.message, "maxHosts")
      assert.strictEqual(t.hosts.length, 1)
    })
  )

  it.live("a host that dies: its leases fail naming it, and the pool replaces it", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      yield* withPool(
        k,
        { warmUp: 1, sandboxesPerHost: 4 },
        Effect.gen(function* () {
          const pool = yield* SandboxPool.SandboxPool
          const sb = yield* SandboxPool.make()
          const first = k.hosts[0]!
          yield* Effect.promise(first.kill)
          const error = yield* Effect.flip(sb.processes)
          assert.strictEqual(error._tag, "ConnectionLostError")
          assert.strictEqual(error._tag === "ConnectionLostError" ? error.host : undefined, first.id)
          assert.include(error.message, first.id)
          // The replacement comes up on its own (warmUp 1), and new leases go there.
          const hosts = yield* eventually(
            Effect.flatMap(pool.hosts, (hosts) =>
              hosts.length === 1 && hosts[0]!.id !== first.id
                ? Effect.succeed(hosts)
                : Effect.fail(`no replacement for ${first.id} yet: ${hosts.map((h) => h.id).join(", ")}`)
            )
          )
          const next = yield* SandboxPool.make()
          assert.strictEqual(next.id.split(".")[0], hosts[0]!.id)
          assert.deepStrictEqual(yield* next.processes, [])
        })
      )
      assert.strictEqual(k.hosts.length, 2)
      assert.isTrue(k.hosts.every((h) => h.closed))
    })
  )

  it.live("a failed host start fails the layer; an interrupted pool stops what it started", () =>
    Effect.gen(function* () {
      const failing = FakeHost.knobs()
      failing.failBoots = true
      const error = yield* Effect.flip(withPool(failing, { warmUp: 2 }, Effect.void))
      assert.strictEqual(error._tag, "StartError")

      // Interrupted while a host boots: nothing is left.
      const booting = FakeHost.knobs()
      booting.gate = yield* Deferred.make<void>()
      const early = yield* Effect.fork(withPool(booting, { warmUp: 1 }, Effect.never))
      // Interrupt only once the boot is under way (held at the gate), not before the pool began it.
      yield* eventually(Effect.suspend(() => (booting.boots === 1 ? Effect.void : Effect.fail("no boot begun yet"))))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(early)))
      assert.strictEqual(booting.hosts.length, 0)

      // Interrupted once running: every host is terminated.
      const running = FakeHost.knobs()
      const late = yield* Effect.fork(withPool(running, { warmUp: 2 }, Effect.never))
      yield* eventually(
        Effect.suspend(() =>
          running.hosts.length === 2 ? Effect.void : Effect.fail(`${running.hosts.length} of 2 hosts up`)
        )
      )
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(late)))
      assert.isTrue(running.hosts.every((h) => h.closed))
    })
  )

  it.live("a lease asked of a closed pool fails saying so", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      const pool = yield* withPool(k, {}, SandboxPool.SandboxPool)
      const error = yield* Effect.flip(Effect.scoped(pool.make()))
      assert.strictEqual(error._tag, "PoolError")
      assert.include(error.message, "the pool is closed")
      assert.strictEqual(k.hosts.length, 1)
    })
  )

  it.live("Sandbox.connect by pooled id: found through its host, not owned; HF's server takes the host token", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      yield* withPool(
        k,
        { warmUp: 1 },
        Effect.gen(function* () {
          const sb = yield* SandboxPool.make()
          const [hostId, localId] = sb.id.split(".")
          const host = k.hosts[0]!
          yield* Effect.scoped(
            Effect.gen(function* () {
              const before = host.requests.length
              const other = yield* Sandbox.connect(sb.id)
              // The host's health says which server it is: no request to the sandbox's routes to find out.
              assert.deepStrictEqual(
                host.requests.slice(before).filter((r) => r.includes(`/v1/sandboxes/${localId}`)),
                []
              )
              assert.strictEqual(other.id, sb.id)
              assert.deepStrictEqual(yield* other.processes, [])
            })
          )
          assert.isTrue(host.sandboxes.has(localId!), "closing a connect's scope does not delete the sandbox")
          k.hostTokenOnly = true
          yield* Effect.scoped(Effect.flatMap(Sandbox.connect(sb.id), (other) => other.processes))
          k.hostTokenOnly = false
          const missing = yield* Effect.flip(Effect.scoped(Sandbox.connect(`${hostId}.0123456789abcdef`)))
          assert.strictEqual(missing.reason, "NotFound")
          assert.include(missing.message, hostId!)
          yield* Effect.scoped(Effect.flatMap(Sandbox.connect(sb.id), (other) => other.terminate))
          assert.isFalse(host.sandboxes.has(localId!), "terminate deletes it")
        })
      )
    })
  )
})
