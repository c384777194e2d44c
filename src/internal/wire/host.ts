/**
 * The host routes of a server in host mode (`SandboxPool`'s hosts), with the host token: `POST
 * /v1/sandboxes` (make sandboxes), `GET /v1/sandboxes` (the live ones) and `DELETE /v1/sandboxes/{id}`
 * (one deleted: its processes killed, its home removed, its slot free). A sandbox's own routes are the
 * ordinary wire client's, under its prefix (see `route` in transport.ts).
 */
import { createHmac } from "node:crypto"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Protocol from "../../Protocol.js"
import type { OperationError } from "../../SandboxError.js"
import * as Transport from "./transport.js"

/** The host routes of one host. */
export interface HostClient {
  /** Makes up to `request.count` sandboxes; the answer says how many did not fit. */
  readonly create: (
    request: Protocol.CreateSandboxesRequest
  ) => Effect.Effect<Protocol.CreateSandboxesResponse, OperationError>
  /** The host's live sandboxes. */
  readonly list: Effect.Effect<ReadonlyArray<Protocol.HostedSandbox>, OperationError>
  /** Deletes sandbox `id` of the host; false when the host had no such sandbox (already gone). */
  readonly remove: (id: string) => Effect.Effect<boolean, OperationError>
}

/** The host client of `target` (the host's endpoint, whose token is the host token). */
export const make = (
  target: Transport.Target,
  timeouts: Transport.Timeouts = Transport.defaultTimeouts
): Effect.Effect<HostClient, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (http) => compose(Transport.make(target, timeouts, http)))

const compose = (transport: Transport.Transport): HostClient => ({
  create: (request) =>
    Transport.call(
      transport,
      "create pooled sandboxes",
      undefined,
      HttpClientRequest.post("/v1/sandboxes").pipe(HttpClientRequest.bodyUnsafeJson(request)),
      Transport.json(Protocol.CreateSandboxesResponse)
    ),
  list: Transport.call(
    transport,
    "list pooled sandboxes",
    undefined,
    HttpClientRequest.get("/v1/sandboxes"),
    Transport.json(Protocol.ListSandboxesResponse)
  ),
  remove: (id) =>
    Transport.call(
      transport,
      "delete pooled sandbox",
      undefined,
      HttpClientRequest.del(`/v1/sandboxes/${encodeURIComponent(id)}`),
      () => Effect.succeed(true)
    ).pipe(
      Effect.catchIf(
        (error) => error._tag === "BadRequestError" && error.status === 404,
        () => Effect.succeed(false)
      )
    )
})

/**
 * A pooled sandbox's own token: lowercase hex HMAC-SHA256 of its id under the host token (the wire
 * contract), so that whoever holds the host token reaches it with nothing stored, and the host token
 * itself never travels on a sandbox's routes.
 */
export const sandboxToken = (hostToken: Redacted.Redacted<string>, localId: string): Redacted.Redacted<string> =>
  Redacted.make(createHmac("sha256", Redacted.value(hostToken)).update(localId).digest("hex"))

/** A pooled id, `<host id>.<local id>`, split; `undefined` for any other id. */
export const splitPooledId = (id: string): { readonly hostId: string; readonly localId: string } | undefined => {
  const at = id.lastIndexOf(Protocol.POOLED_ID_SEPARATOR)
  if (at <= 0 || at === id.length - 1) return undefined
  const localId = id.slice(at + 1)
  return /^[0-9a-f]{1,64}$/.test(localId) ? { hostId: id.slice(0, at), localId } : undefined
}

/** The pooled id of sandbox `localId` on host `hostId`. */
export const pooledId = (hostId: string, localId: string): string =>
  `${hostId}${Protocol.POOLED_ID_SEPARATOR}${localId}`
