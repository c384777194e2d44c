/**
 * Asks a sandbox's own server to shut down (`POST /v1/shutdown`): it ends every process it started and
 * exits, so an HF job's command exits and its billing stops without any Hub request. The first step of
 * a release, before the job is cancelled: the Hub may be rate limiting or down, the sandbox is not.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Protocol from "../Protocol.js"
import type * as SandboxProvider from "../SandboxProvider.js"

/**
 * How long a release waits for the server's answer. Short: the answer comes at once from a live
 * server, and a dead or unreachable one must not hold the release (the job's cancel comes next).
 */
export const BOUND = Duration.seconds(5)

/**
 * Whether the server accepted the shutdown (202). Never fails: every failure (no HttpClient in the
 * context, an unreachable server, a timeout) is `false`, and the caller falls back on the Hub.
 */
export const request = (
  http: Option.Option<HttpClient.HttpClient>,
  endpoint: SandboxProvider.Endpoint,
  bound: Duration.Duration = BOUND
): Effect.Effect<boolean> =>
  Option.match(http, {
    onNone: () => Effect.succeed(false),
    onSome: (platform) =>
      Effect.gen(function* () {
        const base = endpoint.currentBaseUrl === undefined ? endpoint.baseUrl : yield* endpoint.currentBaseUrl
        const extra = endpoint.headers === undefined ? {} : yield* endpoint.headers
        // Never redirected: a redirect must not carry the sandbox token (or a bearer) elsewhere.
        const client = (endpoint.transformClient ? endpoint.transformClient(platform) : platform).pipe(
          HttpClient.followRedirects(0)
        )
        const response = yield* client.execute(
          HttpClientRequest.post(`${base.replace(/\/+$/, "")}/v1/shutdown`).pipe(
            HttpClientRequest.setHeaders({ ...extra, [Protocol.TOKEN_HEADER]: Redacted.value(endpoint.token) })
          )
        )
        return response.status === 202
      }).pipe(
        Effect.scoped,
        Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, Protocol.TOKEN_HEADER]),
        Effect.interruptible,
        Effect.timeout(bound),
        Effect.orElseSucceed(() => false)
      )
  })
