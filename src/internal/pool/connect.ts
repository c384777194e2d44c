/**
 * `Sandbox.connect("<host>.<local>")`: a pooled sandbox reached from anywhere with nothing stored. The
 * host is attached to through its provider's by-id connect (which knows its token), the sandbox is looked
 * up among the host's (`GET /v1/sandboxes`), and its token derived from the host token (the wire
 * contract). The `Sandbox` does not own it: closing the scope only detaches; `terminate` deletes it.
 *
 * HF's own server (sandbox-server) has no per-sandbox tokens: it takes the host token on a sandbox's
 * routes and refuses the derived one. Which server the host runs is in the health answer the attach
 * already read (ours says `mode: "host"`; HF's has no `mode`), so no request is spent finding out: ours
 * gets the derived token (it never needs the host token on a sandbox's routes, and refuses it there
 * unless `SBX_HOST_TOKEN_ACTS=1`), HF's the host token.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import type * as Protocol from "../../Protocol.js"
import type { ConnectOptions, Sandbox } from "../../Sandbox.js"
import { StartError } from "../../SandboxError.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import { attachTo, sandboxScope, start } from "../sandbox/open.js"
import * as Spec from "../sandbox/spec.js"
import * as StartErrors from "../startError.js"
import type * as Wire from "../wire/client.js"
import * as HostWire from "../wire/host.js"
import * as Pooled from "./pooled.js"

/** A host attached to by id, in a scope of the caller's (closing it detaches), with its host routes. */
export interface Attached {
  readonly provider: SandboxProvider.Service
  readonly host: SandboxProvider.Endpoint
  readonly client: HostWire.HostClient
  readonly scope: Scope.CloseableScope
  readonly timeouts: Wire.Timeouts
  readonly schedules: Schedules.Service
  /** The host's health answer (with the host token), as the attach read it. */
  readonly health: Protocol.HealthResponse
}

/**
 * Attaches to host `hostId` through the provider's by-id connect (which knows the host token) and waits
 * for it to answer, then runs `use` on it; a failure of `use` detaches.
 */
export const withHost = <A, E, R>(
  hostId: string,
  options: ConnectOptions,
  use: (attached: Attached) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | StartError, R | SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    const provider = yield* SandboxProvider.SandboxProvider
    const { healthProbeTimeout, schedules, spec, timeouts } = yield* Spec.resolve(provider, options)
    const scope = yield* sandboxScope(false)
    const { endpoint: host, health } = yield* start({
      provider,
      spec,
      timeouts,
      scope,
      acquire: attachTo(hostId),
      schedules,
      healthProbeTimeout
    }).pipe(Effect.provideService(Schedules.Schedules, schedules))
    const client = yield* HostWire.make(host, timeouts)
    return yield* use({ provider, host, client, scope, timeouts, schedules, health }).pipe(
      Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
    )
  })

/** Attaches to the pooled sandbox `id` (`<host>.<local>`, split as `parts`). */
export const connect = (
  id: string,
  parts: { readonly hostId: string; readonly localId: string },
  options: ConnectOptions
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  withHost(parts.hostId, options, ({ client, health, host, provider, schedules, scope, timeouts }) =>
    Effect.gen(function* () {
      const fail = (detail: string, reason: StartError["reason"] = "NotReady") =>
        new StartError({ provider: provider.name, reason, detail })
      const listed = yield* Effect.mapError(client.list, (error) =>
        fail(`host ${parts.hostId} did not list its sandboxes: ${error.message}`)
      )
      const found = listed.find((sandbox) => sandbox.id === parts.localId)
      if (found === undefined) {
        return yield* fail(`sandbox ${id} no longer exists on host ${parts.hostId}`, "NotFound")
      }
      const pooled: Pooled.Pooled = {
        host,
        sandbox: found,
        token: tokenOf(health, host.token, parts.localId),
        kill: Pooled.remove(client, parts.localId)
      }
      return yield* Pooled.sandbox(pooled, { scope, timeouts, schedules, cwd: options.cwd })
    })
  ).pipe(
    Effect.mapError((error) => StartErrors.during(`attach to sandbox ${id}`, error)),
    Effect.withSpan("Sandbox.connect", { attributes: { "sandbox.id": id } })
  )

/** The token a sandbox of the host takes: its derived own on our host, the host's on HF's (see above). */
const tokenOf = (
  health: Protocol.HealthResponse,
  hostToken: Redacted.Redacted<string>,
  localId: string
): Redacted.Redacted<string> => (health.mode === HOST_MODE ? HostWire.sandboxToken(hostToken, localId) : hostToken)

/** What our server's health says in host mode (routes_host.health_fields). */
const HOST_MODE = "host"
