/**
 * How a request for an emulated host reaches the Hub emulator, in one place for every client: the
 * library's tests (`Testing.routeHttpClient`, `Testing.layerDnsFallback`) and the CLI's test hook
 * (`HF_SANDBOX_EMULATOR_URL`). A request for `https://<jobId>--<port>.hf.jobs/…` (the Jobs proxy) or
 * `https://<name>.trycloudflare.com/…` (the quick-tunnel edge) goes to the emulator's loopback origin
 * instead, with the same method, path, query, headers and body, and its original host in
 * {@link HOST_HEADER}; the emulator picks the room from that header ({@link virtualHost}, {@link roomOf}).
 */
import type * as http from "node:http"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as PublicDns from "../hfJobs/publicDns.js"

/** The emulated network's address of the quick-tunnel edge: the emulator itself, on loopback. */
export const EDGE_ADDRESS = "127.0.0.1"

/** The header that carries a routed request's original host; the emulator never forwards it. */
export const HOST_HEADER = "x-emulator-host"

/** The room of the emulator a host belongs to: the Jobs proxy, the quick-tunnel edge, or none. */
export const roomOf = (host: string): "proxy" | "edge" | undefined =>
  host.endsWith(".hf.jobs") ? "proxy" : host.endsWith(".trycloudflare.com") ? "edge" : undefined

/** The original host of a request the emulator received (lower-cased, without port), if it was routed. */
export const virtualHost = (headers: http.IncomingHttpHeaders): string | undefined => {
  const value = headers[HOST_HEADER]
  return (Array.isArray(value) ? value[0] : value)?.toLowerCase().replace(/:\d+$/, "")
}

/** `request` (for `url`) sent to the emulator at `origin` instead. */
const toEmulator = (origin: string, request: HttpClientRequest.HttpClientRequest, url: URL) =>
  request.pipe(
    HttpClientRequest.setUrl(`${origin}${url.pathname}${url.search}`),
    HttpClientRequest.setHeader(HOST_HEADER, url.hostname.toLowerCase())
  )

/** The request's host and the request routed to the emulator, or undefined when its host is not emulated. */
const route = (
  origin: string,
  request: HttpClientRequest.HttpClientRequest
): { readonly host: string; readonly routed: HttpClientRequest.HttpClientRequest } | undefined => {
  let url: URL
  try {
    url = new URL(request.url)
  } catch {
    return undefined
  }
  const host = url.hostname.toLowerCase()
  return roomOf(host) === undefined ? undefined : { host, routed: toEmulator(origin, request, url) }
}

/**
 * The CLI's test hook: for tests against the Hub emulator (`hf-sandbox/testing`), requests to Jobs-proxy
 * and quick-tunnel hosts go to this loopback URL instead. Anything but a loopback `http://` URL is refused.
 */
const EMULATOR_ROUTE = "HF_SANDBOX_EMULATOR_URL"

/** The emulator's origin the CLI's test hook names in `env`, or undefined when it names none. */
export const fromEnv = (env: Readonly<Record<string, string | undefined>>): string | undefined => {
  const raw = env[EMULATOR_ROUTE]
  if (raw === undefined || raw === "") return undefined
  const url = new URL(raw)
  if (url.protocol !== "http:" || !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    throw new Error(`${EMULATOR_ROUTE} must be a loopback http:// URL`)
  }
  return url.origin
}

/**
 * A client whose requests for emulated hosts go to the emulator at `origin`: the CLI's hook, which runs
 * in a process of its own and so has no view of the emulated DNS (an unknown tunnel host reaches the edge,
 * which drops the connection).
 */
export const mapClient =
  (origin: string) =>
  (client: HttpClient.HttpClient): HttpClient.HttpClient =>
    HttpClient.mapRequest(client, (request) => route(origin, request)?.routed ?? request)

/**
 * A client whose requests for emulated hosts go to the emulator at `origin`, in the test's own process:
 * a `*.trycloudflare.com` host the system resolver does not know now (`resolves`) fails at once like a DNS
 * miss.
 */
export const routeHttpClient =
  (origin: string, resolves: (host: string) => boolean) =>
  <E, R>(self: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E | HttpClientError.RequestError, R> =>
    HttpClient.transform(
      self,
      (effect, request): Effect.Effect<HttpClientResponse.HttpClientResponse, E | HttpClientError.RequestError, R> => {
        const target = route(origin, request)
        if (target === undefined) return effect
        const { host } = target
        if (roomOf(host) === "edge" && !resolves(host)) {
          const cause = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
            code: "ENOTFOUND",
            errno: -3008,
            syscall: "getaddrinfo",
            hostname: host
          })
          return Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause }))
        }
        return self.execute(target.routed)
      }
    )

/**
 * The public-DNS fallback's connection to `address` for `host`, on the emulated network: the edge's address
 * reaches the emulator's edge at `origin` (through the caller's client, as {@link routeHttpClient} would,
 * minus the system resolver); any other address is not an edge, and the fallback keeps its original error.
 */
export const pinnedConnect =
  (origin: string): PublicDns.Connect =>
  (host, address, client) =>
    Effect.sync(() => {
      if (address !== EDGE_ADDRESS || roomOf(host) !== "edge") return Option.none()
      const pinned = HttpClient.mapRequest(client, (request) => toEmulator(origin, request, new URL(request.url)))
      return Option.some({ client: pinned, close: () => Promise.resolve() })
    })
