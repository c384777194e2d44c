/**
 * One host of a pool: a sandbox started by its provider with `Spec.host` (its server in host mode), under
 * the same start as `Sandbox.make` (the provider's scoped provisioning, the wait for its health, the start
 * bound), in a scope of its own below the pool's. Its record is made before it boots, so that slots can
 * be reserved on it while it does (a burst boots only the hosts it needs).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type * as Protocol from "../../Protocol.js"
import { PoolError, type StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import { type Acquire, start } from "../sandbox/open.js"
import type * as Spec from "../sandbox/spec.js"
import * as HostWire from "../wire/host.js"
import type { Config } from "./options.js"
import * as Refusal from "./refusal.js"

/** A host that answers: its endpoint (its token is the host token) and its host routes. */
export interface Booted {
  readonly endpoint: SandboxProvider.Endpoint
  readonly client: HostWire.HostClient
  /** The server's answer to the health probe that found it ready (a host's capacity and count). */
  readonly health: Protocol.HealthResponse
}

/** A host of the pool, from the moment it is decided on. */
export interface Host {
  /** The pool's own number for it (its id is known once it started). */
  readonly seq: number
  /** The pool's `sandboxesPerHost`; an adopted host's own, as its server says. */
  capacity: number
  /** Slots reserved or leased on it. */
  reserved: number
  /** It refused a sandbox for want of room (someone else fills it too): no more are reserved on it. */
  full: boolean
  status: "booting" | "ready" | "dead"
  /** Its endpoint and routes once it answers; its start's failure otherwise. */
  readonly ready: Deferred.Deferred<Booted, PoolError | StartError>
  booted: Booted | undefined
  readonly scope: Scope.CloseableScope
}

/** What booting a host needs: the provider, the pool's settings resolved once, the HttpClient. */
export interface BootContext {
  readonly provider: SandboxProvider.Service
  readonly config: Config
  readonly resolved: Spec.Resolved
  readonly http: HttpClient.HttpClient
}

/** A new host's record, in a scope of its own forked from the pool's hosts' scope. */
export const record = (hostsScope: Scope.Scope, seq: number, capacity: number) =>
  Effect.map(
    Effect.zip(Deferred.make<Booted, PoolError | StartError>(), Scope.fork(hostsScope, ExecutionStrategy.sequential)),
    ([ready, scope]): Host => ({
      seq,
      capacity,
      reserved: 0,
      full: false,
      status: "booting",
      ready,
      booted: undefined,
      scope
    })
  )

/** The spec a host starts with: the pool's hosts' options, and what makes it a host. */
const hostSpec = ({ config, resolved }: BootContext): SandboxProvider.Spec => ({
  ...resolved.spec,
  host: {
    capacity: config.sandboxesPerHost,
    pool: config.name,
    maxHosts: config.maxHosts,
    weakIsolation: config.weakIsolation,
    ...(config.hostTokenActs ? { hostTokenActs: true } : {})
  }
})

/** A host started by its provider (the default of {@link boot}). */
const provisioned: Acquire = (provider, spec) => provider.provision(spec)

/**
 * Starts the host (or, with `acquire` attaching to a running one, attaches to it) and completes its
 * `ready` with its endpoint, or with its start's error (its scope is then closed with it: the provider
 * stops what it started).
 */
export const boot = (ctx: BootContext, host: Host, acquire: Acquire = provisioned): Effect.Effect<Booted, StartError> =>
  Effect.gen(function* () {
    const { resolved } = ctx
    const { endpoint, health } = yield* start({
      provider: ctx.provider,
      spec: hostSpec(ctx),
      timeouts: resolved.timeouts,
      scope: host.scope,
      acquire,
      schedules: resolved.schedules,
      healthProbeTimeout: resolved.healthProbeTimeout
    }).pipe(Effect.provideService(Schedules.Schedules, resolved.schedules), Effect.mapError(Refusal.inPoolTerms))
    const client = yield* HostWire.make(endpoint, resolved.timeouts)
    return { endpoint, client, health }
  }).pipe(
    // The host's own requests go through the application's client, as a sandbox's do.
    Effect.provideService(HttpClient.HttpClient, ctx.http),
    Effect.tapBoth({
      onFailure: (error) => Deferred.fail(host.ready, error),
      onSuccess: (booted) =>
        Effect.zipRight(
          Effect.sync(() => {
            host.booted = booted
            if (host.status === "booting") host.status = "ready"
          }),
          Deferred.succeed(host.ready, booted)
        )
    }),
    Effect.onInterrupt(() =>
      Deferred.fail(
        host.ready,
        new PoolError({ pool: ctx.config.name, reason: "HostFailed", detail: "the pool closed while the host started" })
      )
    ),
    Effect.withSpan("SandboxPool.bootHost", { attributes: { "pool.name": ctx.config.name } })
  )

/** Terminates a host: its scope closes (the provider stops it), bounded as a sandbox's release is. */
export const terminate = (host: Host): Effect.Effect<void> => Scope.close(host.scope, Exit.void)

/** The host's id once it started (the pool's number for it before). */
export const idOf = (host: Host): string => host.booted?.endpoint.id ?? `#${host.seq}`
