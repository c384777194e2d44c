/** The accessors of the provider seam: the by-id operations of the provider in use, or a typed refusal. */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Sandbox from "../Sandbox.js"
import { type HubError, type OperationError, StartError } from "../SandboxError.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as PoolById from "./pool/byId.js"
import * as HostLog from "./pool/hostLog.js"
import * as ById from "./sandbox/byId.js"
import * as Sweep from "./sweep.js"
import * as HostWire from "./wire/host.js"

// The Tag is handed in by the public module (which defines it), so this module needs only its types: no
// import cycle between the two.
type Tag = typeof SandboxProvider.SandboxProvider

/** The provider's refusal of an operation it does not have (a provider written before the seam had it). */
export const unsupported = (provider: string, during: string, operation: string) =>
  new StartError({
    provider,
    reason: "InvalidOptions",
    detail: `the ${provider} provider does not support ${operation}: use a provider that does, or its own API`,
    during
  })

export const list =
  (tag: Tag) =>
  (options: SandboxProvider.ListOptions = {}) =>
    Effect.flatMap(tag, (provider) =>
      provider.list === undefined
        ? Effect.fail(unsupported(provider.name, "list sandboxes", "listing sandboxes"))
        : provider.list(options)
    )

// A pooled id (`<host>.<local>`) is routed here, once for every provider: the provider knows its host only.

export const kill = (tag: Tag) => (id: string) =>
  Effect.flatMap(tag, (provider) => {
    const pooled = HostWire.splitPooledId(id)
    if (pooled !== undefined) return PoolById.kill(id, pooled)
    return provider.kill === undefined
      ? Effect.fail(unsupported(provider.name, `kill sandbox ${id}`, "stopping sandboxes by id"))
      : provider.kill(id)
  })

export const logs =
  (tag: Tag) =>
  (id: string, options: SandboxProvider.LogOptions = {}) =>
    Stream.unwrap(
      Effect.map(tag, (provider) => {
        const pooled = HostWire.splitPooledId(id)
        if (provider.logs === undefined) {
          return Stream.fail(unsupported(provider.name, `read the log of sandbox ${id}`, "reading logs by id"))
        }
        const hostLogs = provider.logs
        // A pooled sandbox's log is its host's lines about it.
        return pooled === undefined
          ? hostLogs(id, options)
          : HostLog.of((given) => hostLogs(pooled.hostId, given), pooled.localId, options)
      })
    )

/**
 * A sandbox's resource samples by id: the platform's where it measures them (`Service.metrics`), else the
 * sandbox's own server's, attached to by id (a pooled id: through its host, on the sandbox's own routes).
 */
export const metrics =
  (tag: Tag) =>
  (
    id: string,
    options: Sandbox.MetricsOptions = {}
  ): Stream.Stream<Sandbox.MetricsSample, StartError | HubError | OperationError, SandboxProvider.SandboxProvider> =>
    Stream.unwrapScoped(Effect.flatMap(tag, (provider) => samplesOf(provider, id, options))).pipe(
      Stream.withSpan("SandboxProvider.metrics", { attributes: { "sandbox.id": id } })
    )

const samplesOf = (
  provider: SandboxProvider.Service,
  id: string,
  options: Sandbox.MetricsOptions
): Effect.Effect<
  Stream.Stream<Sandbox.MetricsSample, StartError | HubError | OperationError>,
  StartError,
  SandboxProvider.SandboxProvider | Scope.Scope
> =>
  provider.metrics !== undefined && HostWire.splitPooledId(id) === undefined
    ? Effect.succeed(provider.metrics(id, options))
    : PoolById.withHttp(Effect.map(ById.connect(id, {}), (sb) => sb.metrics(options)))

/** Attaches through `provider`, or refuses when it cannot attach: `Sandbox.connect`'s way too. */
export const connectWith = (provider: SandboxProvider.Service, id: string, spec: SandboxProvider.Spec) =>
  provider.connect === undefined
    ? Effect.fail(unsupported(provider.name, `attach to sandbox ${id}`, "attaching to sandboxes by id"))
    : provider.connect(id, spec)

export const connect = (tag: Tag) => (id: string, spec: SandboxProvider.Spec) =>
  Effect.flatMap(tag, (provider) => connectWith(provider, id, spec))

export const sweep =
  (tag: Tag) =>
  (options: SandboxProvider.SweepOptions = {}) =>
    Effect.gen(function* () {
      const provider = yield* tag
      const filters = yield* Sweep.filters(provider.name, options)
      const listing = yield* list(tag)({
        labels: filters.labels,
        name: filters.name,
        providerOptions: options.providerOptions
      })
      const matches = yield* Sweep.select(
        listing.rows.filter((row) => filters.name === undefined || row.name === filters.name),
        filters.olderThan
      )
      return options.dryRun ? matches : yield* Sweep.stopAll(matches, (row) => kill(tag)(row.id))
    }).pipe(Effect.withSpan("SandboxProvider.sweep", { attributes: { "sweep.dryRun": options.dryRun ?? false } }))
