/**
 * The body of `SandboxPool`: a pool's hosts (internal/pool/host), where leases go (internal/pool/slots),
 * back-pressure, and leases as `Sandbox`es (internal/pool/pooled).
 *
 * Back-pressure: with `maxHosts`, the pool's slots (maxHosts × sandboxesPerHost) are the permits of an
 * Effect `Semaphore`; a lease takes one before it reserves a slot on a host, and waits on the semaphore
 * (never a poll) for at most `acquireTimeout`. Without `maxHosts` a lease never waits for a slot: a host
 * is booted for it when every other is full.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import { PoolError, type StartError } from "../../SandboxError.js"
import type * as SandboxPool from "../../SandboxPool.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import * as Spec from "../sandbox/spec.js"
import * as Adopt from "./adopt.js"
import * as Host from "./host.js"
import * as Lease from "./lease.js"
import * as Options from "./options.js"
import * as Pooled from "./pooled.js"
import * as Slots from "./slots.js"

/** A running pool's parts. */
interface Pool {
  readonly config: Options.Config
  readonly boot: Host.BootContext
  readonly slots: Slots.Slots
  /** Every decision on slots and hosts is taken under this lock. */
  readonly lock: Effect.Semaphore
  /** The pool's slots, with `maxHosts`. */
  readonly permits: Effect.Semaphore | undefined
  /** The scope every host's own is forked from: its hosts terminate in parallel when it closes. */
  readonly hosts: Scope.Scope
  /** The fibers booting hosts and watching them, interrupted when the pool closes. */
  readonly fibers: FiberSet.FiberSet
}

/** The pool's service, its warm hosts started, every host terminated when the scope closes. */
export const make = (
  options: SandboxPool.LayerOptions
): Effect.Effect<
  SandboxPool.SandboxPool,
  PoolError | StartError,
  SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope
> =>
  Effect.gen(function* () {
    const config = yield* Options.resolve(options)
    const provider = yield* SandboxProvider.SandboxProvider
    const resolved = yield* Spec.resolve(provider, config.hostOptions)
    // Forked before the close finalizer below is added: the pool's scope runs its finalizers in reverse,
    // so `close` runs first and this scope closes after it.
    const hosts = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.parallel)
    const pool: Pool = {
      config,
      boot: { provider, config, resolved, http: yield* HttpClient.HttpClient },
      slots: Slots.empty(),
      lock: yield* Effect.makeSemaphore(1),
      permits:
        config.maxHosts === undefined
          ? undefined
          : yield* Effect.makeSemaphore(config.maxHosts * config.sandboxesPerHost),
      hosts,
      fibers: yield* FiberSet.make()
    }
    // Added after the hosts' scope, so run before it closes: no host is booted or replaced once the pool
    // closes, and the hosts stop together (each bounded by its provider's release).
    yield* Effect.addFinalizer(() => close(pool))
    // Running hosts of its name first (HF's discovery): they count towards warmUp.
    if (config.adopt) yield* adopt(pool)
    const warm = yield* pool.lock.withPermits(1)(
      Effect.forEach(Array.from({ length: Math.max(0, config.warmUp - pool.slots.hosts.length) }), () => spawn(pool))
    )
    yield* Effect.forEach(warm, (host) => Deferred.await(host.ready), { concurrency: "unbounded", discard: true })
    return {
      name: config.name,
      hosts: Effect.sync(() => pool.slots.hosts.flatMap((host) => info(host))),
      make: (makeOptions = {}) => lease(pool, makeOptions)
    }
  }).pipe(Effect.withSpan("SandboxPool.layer"))

const info = (host: Host.Host): ReadonlyArray<SandboxPool.HostInfo> =>
  host.booted === undefined || host.status !== "ready"
    ? []
    : [
        {
          id: host.booted.endpoint.id,
          capacity: host.capacity,
          leased: host.reserved,
          details: host.booted.endpoint.details
        }
      ]

/** Stops every host: nothing boots any more, boots under way are interrupted, hosts stop in parallel. */
const close = (pool: Pool) =>
  Effect.gen(function* () {
    const hosts = yield* pool.lock.withPermits(1)(
      Effect.sync(() => {
        pool.slots.closing = true
        const hosts = pool.slots.hosts.splice(0)
        // Leases still open when the pool closes have nothing left to delete.
        for (const host of hosts) host.status = "dead"
        return hosts
      })
    )
    yield* FiberSet.clear(pool.fibers)
    yield* Effect.forEach(hosts, Host.terminate, { concurrency: "unbounded", discard: true })
  })

/**
 * Decides on a new host and starts booting it, in the pool's hosts' scope (a lease that asked for it may
 * be interrupted; the host stays the pool's). Runs under the lock.
 */
const spawn = (pool: Pool): Effect.Effect<Host.Host> =>
  Effect.gen(function* () {
    const host = yield* Host.record(pool.hosts, pool.slots.next++, pool.config.sandboxesPerHost)
    pool.slots.hosts.push(host)
    yield* Host.boot(pool.boot, host).pipe(
      Effect.matchEffect({
        // A host that did not start is dropped; the leases that waited for it fail with its error.
        onFailure: () => Effect.sync(() => Slots.drop(pool.slots, host)),
        onSuccess: (booted) => watch(pool, host, booted)
      }),
      FiberSet.run(pool.fibers)
    )
    return host
  })

/** Adopts the running hosts of the pool's name (internal/pool/adopt), watched as the pool's own are. */
const adopt = (pool: Pool) =>
  Effect.gen(function* () {
    const adopted = yield* Adopt.running(pool.boot, pool.hosts, () => pool.slots.next++)
    yield* pool.lock.withPermits(1)(
      Effect.forEach(adopted, (host) =>
        Effect.zipRight(
          Effect.sync(() => pool.slots.hosts.push(host)),
          FiberSet.run(pool.fibers, watch(pool, host, host.booted!))
        )
      )
    )
  })

/** When a running host ends on its own, it is dropped (its sandboxes with it), and replaced to keep `warmUp`. */
const watch = (pool: Pool, host: Host.Host, booted: Host.Booted) =>
  Effect.gen(function* () {
    yield* Effect.either(booted.endpoint.died)
    const replace = yield* pool.lock.withPermits(1)(
      Effect.gen(function* () {
        if (pool.slots.closing || !Slots.drop(pool.slots, host)) return false
        const missing = pool.config.warmUp - pool.slots.hosts.length
        for (let i = 0; i < missing && Slots.mayBoot(pool.slots, pool.config.maxHosts); i++) yield* spawn(pool)
        return true
      })
    )
    // What the provider still holds of the ended host (its working directory, its job) is released.
    if (replace) yield* Host.terminate(host)
  })

/** A lease: a slot (waiting for one within `acquireTimeout`), a sandbox made on its host, its `Sandbox`. */
const lease = (pool: Pool, options: SandboxPool.MakeOptions) =>
  Effect.gen(function* () {
    const { config } = pool
    const wanted = yield* Options.lease(config.name, options)
    const sandboxScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const placed = yield* Effect.gen(function* () {
      if (pool.permits !== undefined) yield* Lease.takePermit(pool.permits)
      return yield* Lease.place({ ...pool, spawn: () => spawn(pool) }, wanted)
    }).pipe(
      Effect.timeoutFail({
        duration: config.acquireTimeout,
        onTimeout: () =>
          new PoolError({
            pool: config.name,
            reason: "AcquireTimeout",
            detail: `no slot came free within ${Duration.format(config.acquireTimeout)} (acquireTimeout): ${pool.slots.hosts.length} host(s) of ${config.sandboxesPerHost} sandboxes are full${config.maxHosts === undefined ? "" : ` and maxHosts is ${config.maxHosts}`}; raise maxHosts or sandboxesPerHost, lower the concurrency, or wait longer`
          })
      }),
      Scope.extend(sandboxScope),
      Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(sandboxScope, exit) : Effect.void))
    )
    const { resolved } = pool.boot
    return yield* Pooled.sandboxWith(pool.boot.http)(
      {
        host: placed.booted.endpoint,
        sandbox: placed.created,
        // HF's server makes no per-sandbox tokens: its sandboxes take the host token.
        token: Pooled.tokenOf(placed.created, placed.booted.endpoint.token)
      },
      { scope: sandboxScope, timeouts: resolved.timeouts, schedules: resolved.schedules, cwd: options.cwd }
    )
  }).pipe(Effect.withSpan("SandboxPool.make", { attributes: { "pool.name": pool.config.name } }))
