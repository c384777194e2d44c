/**
 * A running sandbox as its operations see it: the endpoint, the wire client, the sandbox's scope and
 * whether it was terminated, and the guards every operation runs under (fail at once once terminated,
 * and a span named for the operation that says which sandbox it is).
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TerminatedError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Schedules from "../../Schedules.js"
import type * as Wire from "../wire/client.js"

/** Whether the sandbox was terminated, and whether by the user (`terminate`) rather than its scope. */
export interface State {
  terminated: boolean
  terminatedByUser: boolean
}

/** What the operations of one running sandbox share. */
export interface Running {
  readonly endpoint: SandboxProvider.Endpoint
  readonly wire: Wire.WireClient
  /** The sandbox's own scope: closing it stops (or, detached, detaches from) the sandbox. */
  readonly scope: Scope.CloseableScope
  /** Every span of this sandbox says which one it is; never a secret, a command or a path. */
  readonly attributes: Record<string, unknown>
  /** The default working directory of commands (`MakeOptions.cwd`). */
  readonly cwd: string | undefined
  /** The schedules in force for this sandbox (its `make`'s own over the Context value). */
  readonly schedules: Schedules.Service
  readonly state: State
}

/** Fails at once when the sandbox is terminated. */
export const alive = <A, E, R>(
  running: Running,
  operation: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | TerminatedError, R> =>
  Effect.suspend(
    (): Effect.Effect<A, E | TerminatedError, R> =>
      running.state.terminated
        ? Effect.fail(new TerminatedError({ sandboxId: running.endpoint.id, operation }))
        : effect
  )

/** {@link alive}, in a span named for the operation. */
export const guard = <A, E, R>(
  running: Running,
  operation: string,
  effect: Effect.Effect<A, E, R>,
  extra: Record<string, unknown> = {}
): Effect.Effect<A, E | TerminatedError, R> =>
  alive(running, operation, effect).pipe(
    Effect.withSpan(`Sandbox.${operation}`, { attributes: { ...running.attributes, ...extra } })
  )

/** {@link guard} for a stream: the span lasts as long as the stream runs. */
export const guardStream = <A, E, R>(
  running: Running,
  operation: string,
  stream: Stream.Stream<A, E, R>,
  extra: Record<string, unknown> = {}
): Stream.Stream<A, E | TerminatedError, R> =>
  Stream.unwrap(alive(running, operation, Effect.succeed(stream))).pipe(
    Stream.withSpan(`Sandbox.${operation}`, { attributes: { ...running.attributes, ...extra } })
  )
