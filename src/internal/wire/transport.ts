/**
 * The HTTP side of one sandbox's wire client, configured once: its base URL (read per request when it
 * moves), its token and extra headers, no redirects, the token redacted in spans; and the two shapes of
 * exchange every route is, a bounded request/response ({@link call}) and a streamed NDJSON answer
 * ({@link ndjson}).
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import { ConnectionLostError, type OperationError, RequestTimeoutError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { failFromResponse, fromTransport } from "./errors.js"
import { boundSilence, drainBounded } from "./silence.js"

/**
 * Where the server is and how to authenticate: the fields of a provider's endpoint the wire uses, taken
 * from `Endpoint` itself so that the two cannot drift apart.
 */
export type Target = Pick<
  SandboxProvider.Endpoint,
  "baseUrl" | "currentBaseUrl" | "token" | "headers" | "transformClient" | "directReads" | "exitReason" | "hosted"
>

/** Client-side bounds. A command's own timeout is the server's business; these bound the transport. */
export interface Timeouts {
  /** A plain request/response exchange. */
  readonly request: Duration.Duration
  /** How long a stream may stay silent; the server pings every 15 s, so this sits well above that. */
  readonly streamIdle: Duration.Duration
}

export const defaultTimeouts: Timeouts = {
  request: Duration.seconds(60),
  streamIdle: Duration.seconds(70)
}

/** One sandbox's configured transport: what every route of the wire client is sent through. */
export interface Transport {
  readonly target: Target
  readonly timeouts: Timeouts
  /** The base URL (without a trailing slash) as given. */
  readonly base: string
  /** The base URL as of now. */
  readonly currentBase: Effect.Effect<string>
  /**
   * The path a route (`/v1/…`) has for this sandbox: itself, or for a sandbox on a pool host the host's
   * `/v1/sandboxes/{id}/…`. Every request goes through it (see {@link route}).
   */
  readonly route: (path: string) => string
  /** Every header a request carries: the target's extra ones and the token. */
  readonly headers: Effect.Effect<Record<string, string>>
  /** The HttpClient with base URL, headers, redirects and redaction set: requests name a route only. */
  readonly client: HttpClient.HttpClient
  /** A lost connection, explained by why the server ended when the provider knows. */
  readonly explainLost: (lost: ConnectionLostError) => Effect.Effect<never, ConnectionLostError>
}

const trim = (url: string) => url.replace(/\/+$/, "")

export const make = (target: Target, timeouts: Timeouts, http: HttpClient.HttpClient): Transport => {
  const base = trim(target.baseUrl)
  // A moving target (a restarted tunnel) is read per request; a fixed one costs nothing more.
  const currentBase = target.currentBaseUrl === undefined ? undefined : Effect.map(target.currentBaseUrl, trim)
  const tokenHeader = { [Protocol.TOKEN_HEADER]: Redacted.value(target.token) }
  const extraHeaders = target.headers ?? Effect.succeed({})
  const headers = Effect.map(extraHeaders, (extra) => ({ ...extra, ...tokenHeader }))
  const routeOf = route(target.hosted)
  const prepare = (url: string, request: HttpClientRequest.HttpClientRequest) =>
    Effect.map(headers, (all) =>
      HttpClientRequest.setUrl(request, `${url}${routeOf(request.url)}`).pipe(HttpClientRequest.setHeaders(all))
    )
  const client = (target.transformClient ? target.transformClient(http) : http).pipe(
    // Redirects are never followed: a redirect must not carry the sandbox token (or a bearer) elsewhere.
    HttpClient.followRedirects(0),
    // Before the given client's own request steps (a user's `tapRequest` sees the whole request).
    HttpClient.mapRequestInputEffect((request) =>
      currentBase === undefined ? prepare(base, request) : Effect.flatMap(currentBase, (url) => prepare(url, request))
    ),
    // The HttpClient records request headers in its spans: the sandbox token is redacted there, as the
    // bearer (`authorization`) already is.
    HttpClient.transform((effect) =>
      Effect.locallyWith(effect, Headers.currentRedactedNames, (names) => [...names, Protocol.TOKEN_HEADER])
    )
  )
  // A dead server shows up as a refused or reset socket; when the provider knows why it died, that is
  // what the caller is told instead.
  const explainLost = (lost: ConnectionLostError): Effect.Effect<never, ConnectionLostError> =>
    target.exitReason === undefined
      ? Effect.fail(lost)
      : Effect.flatMap(target.exitReason, (reason) =>
          Effect.fail(
            Option.isSome(reason)
              ? serverEnded(target, { operation: lost.operation, detail: reason.value, cause: lost })
              : lost
          )
        )
  return {
    target,
    timeouts,
    base,
    currentBase: currentBase ?? Effect.succeed(base),
    route: routeOf,
    headers,
    client,
    explainLost
  }
}

/**
 * The error of a connection lost because the server ended (`detail`: why, as the endpoint's `exitReason`
 * says). For a pooled sandbox that is its host ending, so the error names the host
 * (`ConnectionLostError.host`): made here, wherever the loss is noticed, rather than rebuilt later.
 */
export const serverEnded = (
  target: Pick<Target, "hosted">,
  fields: {
    readonly operation: string
    readonly detail: string
    readonly cause?: unknown
    readonly commandId?: string | undefined
    readonly running?: boolean | undefined
  }
): ConnectionLostError =>
  new ConnectionLostError({
    operation: fields.operation,
    detail: fields.detail,
    ...(fields.cause !== undefined ? { cause: fields.cause } : {}),
    ...(fields.commandId !== undefined ? { commandId: fields.commandId } : {}),
    ...(fields.running !== undefined ? { running: fields.running } : {}),
    ...(target.hosted !== undefined ? { host: target.hosted.hostId } : {})
  })

/**
 * The one place a sandbox's routes get their prefix: a pooled sandbox's `/v1/<rest>` is its host's
 * `/v1/sandboxes/{id}/<rest>` (the wire contract of host mode); `/health` and every route of a dedicated
 * sandbox stay as they are.
 */
export const route =
  (hosted: SandboxProvider.Hosted | undefined) =>
  (path: string): string =>
    hosted === undefined || !path.startsWith("/v1/")
      ? path
      : `/v1/sandboxes/${encodeURIComponent(hosted.localId)}/${path.slice(4)}`

/** A transport failure as a lost connection, explained when the provider knows why. */
export const lostTransport =
  (transport: Transport, operation: string) =>
  (error: HttpClientError.HttpClientError): Effect.Effect<never, ConnectionLostError> =>
    transport.explainLost(fromTransport(operation)(error))

/** Bounds the wait for an answer's head by `bound` (the request timeout by default). */
export const boundAnswer =
  (transport: Transport, operation: string, bound: Duration.Duration = transport.timeouts.request) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | RequestTimeoutError, R> =>
    Effect.timeoutFail(effect, {
      duration: bound,
      onTimeout: () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(bound) })
    })

/** Sends `request`, a transport failure as a (maybe explained) lost connection. */
export const send = (transport: Transport, operation: string, request: HttpClientRequest.HttpClientRequest) =>
  Effect.catchAll(transport.client.execute(request), lostTransport(transport, operation))

/** A 2xx answer's JSON body, decoded by `schema`. */
export const json =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (response: HttpClientResponse.HttpClientResponse) =>
    Effect.flatMap(response.json, Schema.decodeUnknown(schema))

/**
 * One bounded request/response exchange: `onOk` reads a 2xx answer; any other becomes the user's error
 * (about `path`, when the route is about one).
 */
export const call = <A>(
  transport: Transport,
  operation: string,
  path: string | undefined,
  request: HttpClientRequest.HttpClientRequest,
  onOk: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, unknown>,
  bound: Duration.Duration = transport.timeouts.request
): Effect.Effect<A, OperationError> =>
  send(transport, operation, request).pipe(
    Effect.flatMap((response) =>
      response.status >= 200 && response.status < 300
        ? onOk(response).pipe(
            Effect.mapError(
              (cause) => new ConnectionLostError({ operation, detail: "the answer was cut short or malformed", cause })
            )
          )
        : failFromResponse(operation, path, response)
    ),
    boundAnswer(transport, operation, bound)
  )

/** The error of a stream silent for longer than `streamIdle`. */
const silentStream = (operation: string, streamIdle: Duration.Duration) => () =>
  new ConnectionLostError({ operation, detail: `the output stream was silent for ${Duration.format(streamIdle)}` })

/**
 * The bytes of a streamed answer, once its head came (bounded by the request timeout); an answer other
 * than 200 goes to `onError`, a transport failure in the body is a lost connection.
 */
const streamedAnswer = (
  transport: Transport,
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  onError: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<never, OperationError>
): Effect.Effect<Stream.Stream<Uint8Array, ConnectionLostError>, OperationError, Scope.Scope> =>
  send(transport, operation, request).pipe(
    Effect.flatMap((response) => (response.status === 200 ? Effect.succeed(response.stream) : onError(response))),
    boundAnswer(transport, operation),
    Effect.map(Stream.catchAll((e) => Stream.fromEffect(lostTransport(transport, operation)(e))))
  )

/**
 * A streamed NDJSON answer, decoded by `unpack` (see ndjson.ts); the stream fails when one read waits
 * `streamIdle` for bytes (see `boundSilence`).
 */
export const ndjson = <A>(
  transport: Transport,
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  unpack: Channel.Channel<Chunk.Chunk<A>, Chunk.Chunk<Uint8Array>, OperationError, OperationError>,
  onError: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<never, OperationError>
): Stream.Stream<A, OperationError> => {
  const { streamIdle } = transport.timeouts
  return Stream.unwrapScoped(
    Effect.map(streamedAnswer(transport, operation, request, onError), (bytes) =>
      bytes.pipe(boundSilence(streamIdle, silentStream(operation, streamIdle)), Stream.pipeThroughChannel(unpack))
    )
  )
}

/**
 * {@link ndjson}'s answer read to its end in the calling fiber, for a caller that folds it rather than
 * streams it (`exec`, where a stream's machinery costs more than the exchange): `split` (a fresh one per
 * answer, see ndjson.ts) turns each read into lines, handed to `onLines`. The bounds are {@link ndjson}'s.
 */
export const ndjsonEach = <A, E>(
  transport: Transport,
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  split: (chunks: Chunk.Chunk<Uint8Array>) => Chunk.Chunk<A>,
  onError: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<never, OperationError>,
  onLines: (lines: Chunk.Chunk<A>) => Effect.Effect<void, E>
): Effect.Effect<void, OperationError | E> => {
  const { streamIdle } = transport.timeouts
  return streamedAnswer(transport, operation, request, onError).pipe(
    Effect.flatMap(Stream.toPull),
    Effect.flatMap((pull) =>
      drainBounded(pull, streamIdle, silentStream(operation, streamIdle), (chunks) => {
        const lines = split(chunks)
        return Chunk.isEmpty(lines) ? Effect.void : onLines(lines)
      })
    ),
    Effect.scoped
  )
}

/** Sets a file route's query: `path` and the given `extra` parameters (the undefined ones left out). */
export const pathParams = (path: string, extra: Record<string, string | undefined> = {}) =>
  HttpClientRequest.setUrlParams(
    Object.fromEntries(Object.entries({ path, ...extra }).filter(([, v]) => v !== undefined)) as Record<string, string>
  )

/** Where requests go now and every header they carry: for URLs handed to the caller (a port's proxy). */
export const origin = (transport: Transport) =>
  Effect.zipWith(transport.currentBase, transport.headers, (baseUrl, headers) => ({
    baseUrl,
    headers,
    route: transport.route
  }))
