/**
 * Opening a sandbox, for `make` and `connect`: the options checked, a scope of its own, the endpoint
 * the provider gives, the wait until its server answers, usage telemetry, and then its API.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import type * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { MakeOptions, Sandbox } from "../../Sandbox.js"
import { AuthError, RequestTimeoutError, StartError } from "../../SandboxError.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import * as Telemetry from "../../Telemetry.js"
import { connectWith } from "../providerSeam.js"
import * as StartErrors from "../startError.js"
import * as Wire from "../wire/client.js"
import { build } from "./api.js"
import type { Running } from "./running.js"
import * as Spec from "./spec.js"
import { reportUsage } from "./usage.js"

/** How a sandbox's endpoint is obtained: provisioned (`make`) or attached to (`connect`). */
export type Acquire = (
  provider: SandboxProvider.Service,
  spec: SandboxProvider.Spec
) => Effect.Effect<SandboxProvider.Endpoint, StartError, Scope.Scope>

/**
 * `connect`'s way to an endpoint: the provider attaches to the sandbox `id`. One that cannot is refused as
 * the seam's `connect` refuses it (`InvalidOptions`: a provider to change, not a sandbox to wait for).
 */
export const attachTo =
  (id: string): Acquire =>
  (provider, spec) =>
    connectWith(provider, id, spec)

/** Opens a sandbox from the endpoint `acquire` gives, waits until it answers, and builds its API. */
export const open = (
  operation: "make" | "connect",
  options: MakeOptions,
  acquire: Acquire,
  spanAttributes: Record<string, unknown> = {}
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    const startedAt = yield* Clock.currentTimeMillis
    const provider = yield* SandboxProvider.SandboxProvider
    yield* Effect.annotateCurrentSpan("sandbox.provider", provider.name)
    // Usage is reported for sandboxes made here, not for ones a `connect` only attaches to.
    const telemetry = operation === "make" ? yield* Telemetry.Telemetry : Telemetry.disabled
    const { healthProbeTimeout, schedules, spec, timeouts } = yield* Spec.resolve(provider, options)
    const scope = yield* sandboxScope(spec.detach ?? false)
    const { endpoint, wire } = yield* start({
      provider,
      spec,
      timeouts,
      scope,
      acquire,
      schedules,
      healthProbeTimeout
    }).pipe(
      // The provider starts the sandbox under the schedules in force for it, the `make`'s own included.
      Effect.provideService(Schedules.Schedules, schedules),
      // A failed `connect` started nothing: its message says the attach failed.
      Effect.mapError((error) =>
        operation === "connect"
          ? StartErrors.during(`attach to sandbox ${String(spanAttributes["sandbox.id"])}`, error)
          : error
      )
    )

    const state = { terminated: false, terminatedByUser: false }
    if (telemetry.enabled) {
      yield* reportUsage(telemetry, scope, spec, endpoint, startedAt, () => state.terminatedByUser)
    }
    return yield* assemble({ endpoint, wire, scope, cwd: options.cwd, schedules, state })
  }).pipe(Effect.withSpan(`Sandbox.${operation}`, { attributes: spanAttributes }))

/**
 * The API of a sandbox whose server answers, over its endpoint and wire client, living as long as its
 * scope: what `make`, `connect` and a pool's lease (internal/pool) all end with.
 */
export const assemble = (
  opened: Omit<Running, "attributes" | "state"> & { readonly state?: Running["state"] | undefined }
): Effect.Effect<Sandbox> =>
  Effect.gen(function* () {
    const { endpoint, scope } = opened
    // Every span of this sandbox says which one it is; never a secret, a command or a path.
    const attributes: Record<string, unknown> = {
      "sandbox.id": endpoint.id,
      "sandbox.provider": endpoint.provider,
      ...(typeof endpoint.details.transport === "string" ? { "sandbox.transport": endpoint.details.transport } : {})
    }
    yield* Effect.annotateCurrentSpan(attributes)
    const state = opened.state ?? { terminated: false, terminatedByUser: false }
    const fileSystem = yield* Effect.serviceOption(FileSystem.FileSystem)
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        state.terminated = true
      })
    )
    return build({ ...opened, attributes, state }, fileSystem)
  })

/**
 * The sandbox gets a scope of its own, so that a failed start is released at once instead of when the
 * caller's (possibly long-lived) scope closes, and so that `terminate` can close it early. A detached
 * sandbox's scope is closed with success whatever the caller's exit: the provider then only detaches
 * (a failed start closes it with the failure, which stops the sandbox).
 */
export const sandboxScope = (detach: boolean): Effect.Effect<Scope.CloseableScope, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (parent) =>
    detach
      ? Effect.tap(Scope.make(ExecutionStrategy.sequential), (child) =>
          Scope.addFinalizer(parent, Scope.close(child, Exit.void))
        )
      : Scope.fork(parent, ExecutionStrategy.sequential)
  )

/** What starting a sandbox needs. */
export interface StartContext {
  readonly provider: SandboxProvider.Service
  readonly spec: SandboxProvider.Spec
  readonly timeouts: Wire.Timeouts
  readonly scope: Scope.CloseableScope
  readonly acquire: Acquire
  readonly schedules: Schedules.Service
  readonly healthProbeTimeout: Duration.Duration
}

/**
 * The endpoint and its wire client, once the server answers, within `startTimeout`, with the health
 * answer that said so. A failure closes the sandbox's scope with that failure (the provider stops what
 * it started).
 */
export const start = ({ acquire, healthProbeTimeout, provider, schedules, scope, spec, timeouts }: StartContext) =>
  Effect.gen(function* () {
    const endpoint = yield* acquire(provider, spec)
    const wire = yield* Wire.make(endpoint, timeouts)
    const health = yield* Effect.raceFirst(
      ready(provider, wire, schedules.healthPoll, healthProbeTimeout),
      endpoint.died
    )
    return { endpoint, wire, health }
  }).pipe(
    Effect.timeoutFail({
      duration: spec.startTimeout,
      onTimeout: () =>
        new StartError({
          provider: provider.name,
          reason: "Timeout",
          detail: `the sandbox was not ready within ${Duration.format(spec.startTimeout)} (startTimeout)`
        })
    }),
    Scope.extend(scope),
    Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
  )

/** Polls the server's health until it answers as this sandbox's server. */
const ready = (
  provider: SandboxProvider.Service,
  wire: Wire.WireClient,
  healthPoll: Schedule.Schedule<unknown>,
  probeTimeout: Duration.Duration
) =>
  wire.health.pipe(
    // Only a server that knows this sandbox's token reports its version. One that answers without it
    // refuses our token (or is not ours): an authenticated call says which, in one more round trip,
    // and is final — waiting for a server to change its mind about a token would use up startTimeout.
    Effect.filterOrElse(
      (health) => health.version !== undefined,
      () => Effect.flatMap(wire.processes, () => Effect.fail(new AuthError({ operation: "health", status: 200 })))
    ),
    Effect.timeoutFail({
      duration: probeTimeout,
      onTimeout: () => new RequestTimeoutError({ operation: "health", timeoutMs: Duration.toMillis(probeTimeout) })
    }),
    Effect.retry({
      schedule: healthPoll,
      while: (error) => error._tag !== "AuthError"
    }),
    Effect.mapError((cause) => StartError.fromHealthCheck(cause, provider.name))
  )
