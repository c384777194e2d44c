/**
 * The DNS fallback for fresh tunnel names: when the system resolver misses, public resolvers are asked
 * and that host's requests go to the address they give, through a client of its own. The "public"
 * resolver here is a fake on loopback; nothing leaves this machine.
 */
import * as http from "node:http"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { isDnsMiss, resolvePublic, withFallback } from "../../../src/internal/hfJobs/publicDns.js"
import { fakeDns } from "../../support/fakeDns.js"

const HOST = "amber-falcon-river-lamp.trycloudflare.com"

/** An HttpClient whose resolver cannot find anything, like a machine that cached NXDOMAIN. */
const blindClient = HttpClient.make((request) =>
  Effect.fail(
    new HttpClientError.RequestError({
      request,
      reason: "Transport",
      cause: Object.assign(new Error(`getaddrinfo ENOTFOUND ${HOST}`), { code: "ENOTFOUND" })
    })
  )
)

const origin = Effect.acquireRelease(
  Effect.async<http.Server>((resume) => {
    const server = http.createServer((req, res) => res.end(JSON.stringify({ host: req.headers.host, path: req.url })))
    server.listen(0, "127.0.0.1", () => {
      resume(Effect.succeed(server))
    })
  }),
  (server) =>
    Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
)

describe("public DNS fallback", () => {
  it.scopedLive("resolvePublic asks the given servers directly", () =>
    Effect.gen(function* () {
      const dns = yield* fakeDns({ [HOST]: "127.0.0.1" })
      assert.deepStrictEqual(yield* resolvePublic(HOST, [dns.server]), Option.some("127.0.0.1"))
      assert.deepStrictEqual(yield* resolvePublic("never-registered.trycloudflare.com", [dns.server]), Option.none())
      assert.deepStrictEqual(dns.queries, [HOST, "never-registered.trycloudflare.com"])
    })
  )

  it.scopedLive("a DNS miss for the tunnel host is retried through a client pinned to the public answer", () =>
    Effect.gen(function* () {
      const dns = yield* fakeDns({ [HOST]: "127.0.0.1" })
      const server = yield* origin
      const port = (server.address() as { port: number }).port
      const fallback = withFallback(HOST, [dns.server])
      yield* Effect.addFinalizer(() => fallback.release)
      const client = fallback.transform(blindClient)
      const first = yield* client.execute(HttpClientRequest.get(`http://${HOST}:${port}/health`))
      // The name is kept for the Host header (and TLS SNI); only the connection goes to the pinned address.
      assert.deepStrictEqual(yield* first.json, { host: `${HOST}:${port}`, path: "/health" })
      const second = yield* client.execute(HttpClientRequest.get(`http://${HOST}:${port}/again`))
      assert.strictEqual(((yield* second.json) as { path: string }).path, "/again")
      assert.strictEqual(dns.queries.length, 1, "pinned once, then reused")
    })
  )

  it.scopedLive("other hosts and unknown names keep their original error", () =>
    Effect.gen(function* () {
      const dns = yield* fakeDns({})
      const fallback = withFallback(HOST, [dns.server])
      yield* Effect.addFinalizer(() => fallback.release)
      const client = fallback.transform(blindClient)
      const error = yield* Effect.flip(client.execute(HttpClientRequest.get(`http://${HOST}/health`)))
      assert.isTrue(isDnsMiss(error.cause))
      const other = yield* Effect.flip(client.execute(HttpClientRequest.get("http://other.example/health")))
      assert.strictEqual(other._tag, "RequestError")
      assert.deepStrictEqual(dns.queries, [HOST])
    })
  )

  it.scopedLive("retarget moves the fallback to a new host name and drops the old name's pin", () =>
    Effect.gen(function* () {
      const NEXT = "cedar-walnut-bridge-sierra.trycloudflare.com"
      const dns = yield* fakeDns({ [HOST]: "127.0.0.1", [NEXT]: "127.0.0.1" })
      const server = yield* origin
      const port = (server.address() as { port: number }).port
      const fallback = withFallback(undefined, [dns.server])
      yield* Effect.addFinalizer(() => fallback.release)
      const blind = HttpClient.make((request) =>
        Effect.fail(
          new HttpClientError.RequestError({
            request,
            reason: "Transport",
            cause: Object.assign(new Error(`getaddrinfo ENOTFOUND ${new URL(request.url).hostname}`), {
              code: "ENOTFOUND"
            })
          })
        )
      )
      const client = fallback.transform(blind)
      // No host yet: nothing is rescued.
      yield* Effect.flip(client.execute(HttpClientRequest.get(`http://${HOST}:${port}/none`)))
      assert.deepStrictEqual(dns.queries, [])

      yield* fallback.retarget(HOST)
      const first = yield* client.execute(HttpClientRequest.get(`http://${HOST}:${port}/first`))
      assert.deepStrictEqual(yield* first.json, { host: `${HOST}:${port}`, path: "/first" })

      yield* fallback.retarget(NEXT)
      const next = yield* client.execute(HttpClientRequest.get(`http://${NEXT}:${port}/next`))
      assert.deepStrictEqual(yield* next.json, { host: `${NEXT}:${port}`, path: "/next" })
      // The old name is not rescued any more: its pinned client is gone.
      const old = yield* Effect.flip(client.execute(HttpClientRequest.get(`http://${HOST}:${port}/old`)))
      assert.isTrue(isDnsMiss(old.cause))
      assert.deepStrictEqual(dns.queries, [HOST, NEXT])
      // Retargeting to the current name keeps its pin.
      yield* fallback.retarget(NEXT)
      yield* client.execute(HttpClientRequest.get(`http://${NEXT}:${port}/kept`))
      assert.deepStrictEqual(dns.queries, [HOST, NEXT])
    })
  )
})
