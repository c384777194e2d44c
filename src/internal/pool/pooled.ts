/**
 * A sandbox on a pool host as a `Sandbox`: its endpoint is its host's, with its own token, its routes
 * under `/v1/sandboxes/{id}` (`Endpoint.hosted`), and the host's end as its own; its API is assembled by
 * the same code as a dedicated sandbox's (internal/sandbox/open `assemble`).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Protocol from "../../Protocol.js"
import type * as Sandbox from "../../Sandbox.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Schedules from "../../Schedules.js"
import { assemble } from "../sandbox/open.js"
import * as Wire from "../wire/client.js"
import * as HostWire from "../wire/host.js"
import * as HostLog from "./hostLog.js"

/** What a pooled sandbox is made of. */
export interface Pooled {
  /** Its host's endpoint (the host token, the host's base URL). */
  readonly host: SandboxProvider.Endpoint
  /** Its id on the host, and what the host said of it. */
  readonly sandbox: {
    readonly id: string
    readonly uid?: number | null | undefined
    readonly home?: string | undefined
  }
  /** The token its routes are sent with: its own (derived), or the host's for HF's server (see connect). */
  readonly token: Redacted.Redacted<string>
  /** Set for a sandbox this client does not own (`connect`): `terminate` deletes it. */
  readonly kill?: Effect.Effect<void> | undefined
}

/** The request that makes one sandbox on a host, with `env`, and its idle timeout when `idleSeconds` > 0. */
export const createRequest = (env: Record<string, string>, idleSeconds: number): Protocol.CreateSandboxesRequest => ({
  count: 1,
  env,
  ...(idleSeconds > 0 ? { idle_timeout_secs: idleSeconds } : {})
})

/** A made sandbox's token: its own when the host gave one, else the host's (HF's server makes none). */
export const tokenOf = (
  created: { readonly token?: string | undefined },
  hostToken: Redacted.Redacted<string>
): Redacted.Redacted<string> => (created.token === undefined ? hostToken : Redacted.make(created.token))

/** How long deleting a pooled sandbox may take: the host kills its processes and removes its home. */
const DELETE_BOUND = "30 seconds"

/** Deletes sandbox `id` on its host, bounded by {@link DELETE_BOUND}, its failure ignored. */
export const remove = (client: HostWire.HostClient, id: string): Effect.Effect<void> =>
  client.remove(id).pipe(Effect.timeout(DELETE_BOUND), Effect.ignore)

/** The endpoint of a pooled sandbox. */
export const endpoint = ({ host, kill, sandbox, token }: Pooled): SandboxProvider.Endpoint => {
  const hostId = host.id
  const hostLogs = host.logs
  return {
    id: HostWire.pooledId(hostId, sandbox.id),
    provider: host.provider,
    baseUrl: host.baseUrl,
    currentBaseUrl: host.currentBaseUrl,
    headers: host.headers,
    transformClient: host.transformClient,
    token,
    hosted: { hostId, localId: sandbox.id },
    died: host.died,
    // A request that fails because the host ended says so, naming the host (ConnectionLostError.host).
    exitReason: Effect.map(host.exitReason ?? Effect.succeedNone, (reason) =>
      Option.map(reason, (why) => `its pool host ${hostId} ended: ${why}`)
    ),
    readRangeSize: host.readRangeSize,
    directReads: host.directReads,
    hardware: host.hardware,
    lifetime: host.lifetime,
    onThisMachine: host.onThisMachine,
    hub: host.hub,
    kill,
    // Its log is the host's lines about it; the host's metrics, ports and SSH are the host's, not this
    // sandbox's: its metrics and ports go through its own routes on the host (`/v1/sandboxes/{id}/metrics`,
    // `…/proxy/{port}`).
    logs: hostLogs === undefined ? undefined : (options) => HostLog.of(hostLogs, sandbox.id, options),
    details: {
      host: hostId,
      localId: sandbox.id,
      ...(sandbox.home !== undefined ? { home: sandbox.home } : {}),
      ...(typeof sandbox.uid === "number" ? { uid: sandbox.uid } : {}),
      ...(host.details.transport !== undefined ? { transport: host.details.transport } : {})
    }
  }
}

/** The `Sandbox` of a pooled sandbox, living as long as `scope`. */
export const sandbox = (
  pooled: Pooled,
  opened: {
    readonly scope: Scope.CloseableScope
    readonly timeouts: Wire.Timeouts
    readonly schedules: Schedules.Service
    readonly cwd: string | undefined
  }
): Effect.Effect<Sandbox.Sandbox, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const made = endpoint(pooled)
    const wire = yield* Wire.make(made, opened.timeouts)
    return yield* assemble({ endpoint: made, wire, ...opened })
  })

/** {@link sandbox} over a given HttpClient. */
export const sandboxWith = (http: HttpClient.HttpClient) => (pooled: Pooled, opened: Parameters<typeof sandbox>[1]) =>
  Effect.provideService(sandbox(pooled, opened), HttpClient.HttpClient, http)
