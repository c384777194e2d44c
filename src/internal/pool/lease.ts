/**
 * A lease's way to its sandbox: a permit of the pool's slots (with `maxHosts`), a slot reserved on a host
 * (a new host booted for it when every other is full), the sandbox made there with `POST /v1/sandboxes`,
 * and the release that deletes it and frees the slot, in the lease's scope.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Protocol from "../../Protocol.js"
import { type OperationError, PoolError, type StartError } from "../../SandboxError.js"
import * as Host from "./host.js"
import type * as Options from "./options.js"
import * as Pooled from "./pooled.js"
import * as Slots from "./slots.js"

/** What placing a lease needs of its pool. */
export interface Placement {
  readonly config: Options.Config
  readonly slots: Slots.Slots
  readonly lock: Effect.Semaphore
  /** Decides on a new host and boots it (called under the lock). */
  readonly spawn: () => Effect.Effect<Host.Host>
}

/** What a lease got: its host, and the sandbox made on it. */
export interface Placed {
  readonly host: Host.Host
  readonly booted: Host.Booted
  readonly created: Protocol.CreatedSandbox
}

/**
 * Takes one of the pool's slot permits for the scope: waiting is interruptible (a timeout ends it and
 * takes nothing), and once taken it is given back when the scope closes.
 */
export const takePermit = (permits: Effect.Semaphore) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.zipRight(
      restore(permits.take(1)),
      Effect.addFinalizer(() => permits.release(1))
    )
  )

/** Reserves a slot: on a host with room, else on a new one; none while every host is full and no more may boot. */
const reserve = (placement: Placement) =>
  placement.lock.withPermits(1)(
    Effect.suspend(() => {
      const slot = Slots.reserveExisting(placement.slots)
      if (slot !== undefined) return Effect.succeed(slot)
      if (placement.slots.closing) {
        return Effect.fail(
          new PoolError({ pool: placement.config.name, reason: "HostFailed", detail: "the pool is closed" })
        )
      }
      if (!Slots.mayBoot(placement.slots, placement.config.maxHosts)) {
        // Only reached when a host refused a sandbox it had room for by our count (someone else fills it):
        // the pool's permits say a slot is free somewhere, but not where.
        return Effect.fail(
          new PoolError({
            pool: placement.config.name,
            reason: "HostFailed",
            detail: `every host is full and maxHosts (${placement.config.maxHosts}) are running: another client fills them`
          })
        )
      }
      return Effect.map(placement.spawn(), Slots.take)
    })
  )

/**
 * Places a lease: a slot, the host's readiness, the sandbox made there. A host that says it is full
 * (others fill it too) is taken as full, and the next one is tried. Every step frees what it took when
 * it fails or is interrupted; the made sandbox is deleted when the scope closes.
 */
export const place = (
  placement: Placement,
  wanted: { readonly env: Record<string, string>; readonly idleSeconds: number }
): Effect.Effect<Placed, PoolError | StartError, Scope.Scope> =>
  Effect.gen(function* () {
    const slot = yield* reserve(placement)
    const { host } = slot
    const booted = yield* Deferred.await(host.ready).pipe(Effect.onError(() => slot.free))
    const created = yield* Effect.acquireRelease(
      create(placement.config, host, booted, wanted).pipe(Effect.onError(() => slot.free)),
      (made) => (made === undefined ? Effect.void : release(slot, booted, made.id))
    )
    if (created !== undefined) return { host, booted, created }
    yield* Effect.zipRight(
      Effect.sync(() => {
        host.full = true
      }),
      slot.free
    )
    return yield* place(placement, wanted)
  })

/** One sandbox made on the host; `undefined` when it had no room. */
const create = (
  config: Options.Config,
  host: Host.Host,
  booted: Host.Booted,
  wanted: { readonly env: Record<string, string>; readonly idleSeconds: number }
) =>
  booted.client.create(Pooled.createRequest({ ...config.env, ...wanted.env }, wanted.idleSeconds)).pipe(
    Effect.map((answer) => answer.sandboxes[0]),
    Effect.mapError((error) => hostError(config, host, error))
  )

/** A host that failed a lease's request: `HostLost` when it ended, else `HostFailed`; its error is the cause. */
const hostError = (config: Options.Config, host: Host.Host, error: OperationError) =>
  new PoolError({
    pool: config.name,
    reason: host.status === "dead" || error._tag === "ConnectionLostError" ? "HostLost" : "HostFailed",
    host: Host.idOf(host),
    detail: `the host could not make the sandbox: ${error.message}`,
    cause: error
  })

/**
 * A lease's release: its sandbox deleted on the host (bounded, interruptible; nothing to delete on a host
 * that ended), then its slot freed.
 */
const release = (slot: Slots.Slot, booted: Host.Booted, id: string) =>
  Effect.suspend(() =>
    slot.host.status === "dead" ? Effect.void : Effect.interruptible(Pooled.remove(booted.client, id))
  ).pipe(Effect.ensuring(slot.free))
