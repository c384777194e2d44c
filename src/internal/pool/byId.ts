/**
 * The provider seam's `kill` of a pooled id (`<host>.<local>`), whose provider knows only the host: only
 * that sandbox is deleted on its host, with the host token (`DELETE /v1/sandboxes/{id}`: its processes
 * killed, its home removed, its slot free); the host keeps running. (Its log is its host's filtered to
 * it, ./hostLog; its metrics are read through its own routes on the host, as `sb.metrics` reads them.)
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as StartErrors from "../startError.js"
import { withHost } from "./connect.js"

/** A pooled id's parts (`HostWire.splitPooledId`). */
export interface Parts {
  readonly hostId: string
  readonly localId: string
}

/**
 * Runs `effect` with the application's HttpClient, or, where none is provided (the seam's by-id accessors
 * never required one), the platform's `fetch`.
 */
export const withHttp = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, HttpClient.HttpClient>> =>
  Effect.flatMap(
    Effect.serviceOption(HttpClient.HttpClient),
    Option.match({
      onNone: () => Effect.provide(effect, FetchHttpClient.layer),
      onSome: (http) => Effect.provideService(effect, HttpClient.HttpClient, http)
    })
  )

/**
 * Deletes pooled sandbox `id` on its host. Fails with `StartError("NotFound")` when the host has no such
 * sandbox (any more), and with the host's attach error when the host cannot be reached.
 */
export const kill = (id: string, parts: Parts): Effect.Effect<void, StartError, SandboxProvider.SandboxProvider> =>
  withHost(parts.hostId, {}, ({ client, provider }) =>
    client.remove(parts.localId).pipe(
      Effect.mapError(
        (error) =>
          new StartError({
            provider: provider.name,
            reason: "NotReady",
            detail: `host ${parts.hostId} did not delete it: ${error.message}`,
            cause: error
          })
      ),
      Effect.filterOrFail(
        (deleted) => deleted,
        () =>
          new StartError({
            provider: provider.name,
            reason: "NotFound",
            detail: `sandbox ${id} no longer exists on host ${parts.hostId}`
          })
      )
    )
  ).pipe(
    Effect.scoped,
    withHttp,
    Effect.asVoid,
    Effect.mapError((error) => StartErrors.during(`kill sandbox ${id}`, error)),
    Effect.withSpan("SandboxProvider.kill", { attributes: { "sandbox.id": id, "sandbox.host": parts.hostId } })
  )
