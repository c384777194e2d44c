/**
 * A provider whose sandboxes are in-process fake hosts: Node HTTP servers that answer the host routes of
 * the wire contract (`/health`, `POST|GET /v1/sandboxes`, `DELETE /v1/sandboxes/{id}`) and one scoped
 * route (`GET /v1/sandboxes/{id}/processes`), with its capacity, tokens derived as the contract says,
 * and knobs a test drives: hold boots until released, kill a host, accept only the host token on
 * scoped routes (HF's sandbox-server). For the pool's own logic (slots, boots, back-pressure, failover),
 * fast and deterministic; the real server is under test in test/SandboxPool.test.ts.
 */
import { createHmac, randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as SandboxError from "hf-sandbox/SandboxError"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"

export interface FakeHost {
  readonly id: string
  readonly token: string
  readonly capacity: number
  readonly sandboxes: Map<string, { readonly env: Record<string, string>; readonly idle: number | undefined }>
  readonly spec: SandboxProvider.Spec
  /** Every request it got, as `METHOD path`. */
  readonly requests: Array<string>
  /** Ends the host as a crash would: its server closes and its endpoint's `died` fails. */
  readonly kill: () => Promise<void>
  closed: boolean
  baseUrl: string
}

export interface Knobs {
  /** Hosts started, in order (running or not). */
  readonly hosts: Array<FakeHost>
  /** While set, a boot waits for it before it answers. */
  gate: Deferred.Deferred<void> | undefined
  /** Boots begun (counted before the gate), so that a test can act while one is in progress. */
  boots: number
  /** Scoped routes take only the host token (HF's server), not the derived one. */
  hostTokenOnly: boolean
  /** A host's `/v1/sandboxes` rejects creates beyond this many (default: its capacity). */
  reportedCapacity: number | undefined
  /** Every boot fails. */
  failBoots: boolean
}

export const knobs = (): Knobs => ({
  hosts: [],
  gate: undefined,
  boots: 0,
  hostTokenOnly: false,
  reportedCapacity: undefined,
  failBoots: false
})

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

const derive = (hostToken: string, id: string) => createHmac("sha256", hostToken).update(id).digest("hex")

const handler = (host: FakeHost, knobs: Knobs) => (req: http.IncomingMessage, res: http.ServerResponse) => {
  const token = req.headers["x-sandbox-token"]
  const url = new URL(req.url ?? "/", "http://x")
  host.requests.push(`${req.method} ${url.pathname}`)
  const body: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => body.push(chunk))
  req.on("end", () => {
    if (url.pathname === "/health") {
      // HF's server says no `mode` (its health is status, version, uptime and its sandboxes' count).
      const ours = knobs.hostTokenOnly ? { sandboxes: host.sandboxes.size } : { mode: "host" }
      return json(res, 200, token === host.token ? { status: "ok", version: "fake", ...ours } : { status: "ok" })
    }
    const scoped = /^\/v1\/sandboxes\/([0-9a-f]+)\/(.*)$/.exec(url.pathname)
    if (scoped !== null) {
      const [, id, rest] = scoped
      const accepted = knobs.hostTokenOnly ? token === host.token : token === derive(host.token, id!)
      // HF's server answers 403 to a token it does not take; ours 401.
      if (!accepted) return json(res, knobs.hostTokenOnly ? 403 : 401, { error: "unauthorized" })
      if (!host.sandboxes.has(id!)) return json(res, 404, { error: "no such sandbox", code: "not_found" })
      if (req.method === "GET" && rest === "processes") return json(res, 200, [])
      return json(res, 404, { error: "no route" })
    }
    if (token !== host.token) return json(res, 401, { error: "unauthorized" })
    const one = /^\/v1\/sandboxes\/([0-9a-f]+)$/.exec(url.pathname)
    if (one !== null && req.method === "DELETE") {
      return host.sandboxes.delete(one[1]!)
        ? json(res, 200, { id: one[1], deleted: true })
        : json(res, 404, { error: "no such sandbox", code: "not_found" })
    }
    if (url.pathname === "/v1/sandboxes" && req.method === "GET") {
      return json(
        res,
        200,
        [...host.sandboxes.keys()].map((id) => ({ id, uid: null, home: `/homes/${id}`, created_at_ms: 0 }))
      )
    }
    if (url.pathname === "/v1/sandboxes" && req.method === "POST") {
      const request = JSON.parse(Buffer.concat(body).toString("utf8") || "{}")
      const count = request.count ?? 1
      const room = (knobs.reportedCapacity ?? host.capacity) - host.sandboxes.size
      const made = Array.from({ length: Math.max(0, Math.min(count, room)) }, () => {
        const id = randomBytes(8).toString("hex")
        host.sandboxes.set(id, { env: request.env ?? {}, idle: request.idle_timeout_secs })
        return { id, uid: null, home: `/homes/${id}`, created_at_ms: Date.now(), token: derive(host.token, id) }
      })
      return json(res, 200, { sandboxes: made, rejected: count - made.length })
    }
    return json(res, 404, { error: "no route" })
  })
}

/** The provider of fake hosts; every host it started is in `knobs.hosts`. */
export const provider = (knobs: Knobs): SandboxProvider.Service => ({
  name: "fake",
  provision: (spec) =>
    Effect.gen(function* () {
      if (spec.host === undefined) {
        return yield* new SandboxError.StartError({ provider: "fake", reason: "InvalidOptions", detail: "hosts only" })
      }
      knobs.boots += 1
      if (knobs.gate !== undefined) yield* Deferred.await(knobs.gate)
      if (knobs.failBoots) {
        return yield* new SandboxError.StartError({ provider: "fake", reason: "SpawnFailed", detail: "no host today" })
      }
      const died = yield* Deferred.make<never, SandboxError.StartError>()
      const server = http.createServer()
      const host: FakeHost = {
        id: `fake-${randomBytes(4).toString("hex")}`,
        token: randomBytes(16).toString("hex"),
        capacity: spec.host.capacity,
        sandboxes: new Map(),
        spec,
        requests: [],
        closed: false,
        baseUrl: "",
        kill: () =>
          new Promise((resolve) => {
            host.closed = true
            server.closeAllConnections()
            server.close(() => resolve())
            Deferred.unsafeDone(
              died,
              Effect.fail(new SandboxError.StartError({ provider: "fake", reason: "ServerExited", detail: "killed" }))
            )
          })
      }
      server.on("request", handler(host, knobs))
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.promise(() => (host.closed ? Promise.resolve() : host.kill()))
      )
      host.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      knobs.hosts.push(host)
      return {
        id: host.id,
        provider: "fake",
        baseUrl: host.baseUrl,
        token: Redacted.make(host.token),
        died: Deferred.await(died),
        exitReason: Effect.sync(() => (host.closed ? Option.some("the fake host was killed") : Option.none())),
        details: { fake: true }
      } satisfies SandboxProvider.Endpoint
    }),
  connect: (id) =>
    Effect.suspend(() => {
      const host = knobs.hosts.find((h) => h.id === id && !h.closed)
      return host === undefined
        ? Effect.fail(new SandboxError.StartError({ provider: "fake", reason: "NotFound", detail: `no host ${id}` }))
        : Effect.succeed({
            id: host.id,
            provider: "fake",
            baseUrl: host.baseUrl,
            token: Redacted.make(host.token),
            died: Effect.never,
            details: {}
          } satisfies SandboxProvider.Endpoint)
    })
})

export const layer = (k: Knobs) => Layer.succeed(SandboxProvider.SandboxProvider, provider(k))
