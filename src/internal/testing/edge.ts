/**
 * The Hub emulator's edge: the Jobs proxy (`https://<jobId>--<port>.hf.jobs`, HF token as bearer) and the
 * quick-tunnel edge (`https://<name>.trycloudflare.com`), each forwarding to the job's server on loopback
 * as the real one does: the tunnel edge holds request bodies, refuses large ones, and holds GET response
 * bodies until they end. Both carry upgrades (WebSockets) too, spliced both ways (./upgrade.ts). Requests
 * reach it through ./router.ts.
 */
import * as http from "node:http"
import type * as net from "node:net"
import { Readable } from "node:stream"
import type * as Testing from "../../Testing.js"
import * as ProcessTree from "../processTree.js"
import type { TunnelDns } from "./dns.js"
import { sendError, sendText } from "./http.js"
import type { Job } from "./job.js"
import type { OAuthState } from "./oauth.js"
import { HOST_HEADER } from "./router.js"
import type { Tunnel, Tunnels } from "./tunnels.js"
import { type Refusal, refuseUpgrade, spliceUpgrade } from "./upgrade.js"
import { hex } from "./util.js"

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  HOST_HEADER
])

const filterHeaders = (headers: http.IncomingHttpHeaders | http.OutgoingHttpHeaders) => {
  const out: http.OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name.toLowerCase())) out[name] = value
  }
  return out
}

/**
 * A quick tunnel's edge holds the body of a GET response until the response ends, then sends it all
 * (cloudflared#1449: SSE over GET arrives in one piece at close, the same stream over POST arrives
 * live; Unsloth measured the same in 2026 and moved its streams to POST). The edge does this whatever
 * the content type (#1449 used `text/event-stream`), so the emulator does too. Whether the edge also
 * holds the status line and headers is not known; they go out at once here. Bodies of other methods
 * stream.
 */
const holdUntilEnd = (answer: http.IncomingMessage, res: http.ServerResponse) => {
  const held: Array<Buffer> = []
  answer.on("data", (chunk: Buffer) => held.push(chunk))
  answer.on("end", () => res.end(Buffer.concat(held)))
}

/**
 * The largest request body a quick tunnel's edge passes on: the Free plan's 100 MB (decimal) upload limit
 * (picoshare#599, Erugo#29, PicPeak#208: uploads over 100 MB through a tunnel get 413).
 */
export const EDGE_MAX_BODY_BYTES = 100_000_000

/** The edge's 413 page, as users of quick tunnels saw it (picoshare#599): nginx-style HTML signed "cloudflare". */
const EDGE_413_PAGE =
  "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n" +
  "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

/**
 * A quick tunnel's edge does not stream a request body to the origin: it takes the whole body first and
 * delivers it as one frame (cloudflared#1385; cloudflared#128 saw a streamed upload stop on the way), and
 * refuses one over {@link EDGE_MAX_BODY_BYTES} with 413. `deliver` gets the complete body; `refuse` is
 * called instead (once) when the body is too large, as soon as that is known (a `Content-Length` over the
 * limit is refused before any byte is read). The rest of a refused body is read and dropped.
 */
const holdRequestBody = (req: http.IncomingMessage, deliver: (body: Buffer) => void, refuse: () => void) => {
  const declared = Number(req.headers["content-length"])
  if (Number.isFinite(declared) && declared > EDGE_MAX_BODY_BYTES) {
    req.resume()
    return refuse()
  }
  const held: Array<Buffer> = []
  let size = 0
  let refused = false
  req.on("data", (chunk: Buffer) => {
    if (refused) return
    size += chunk.length
    if (size > EDGE_MAX_BODY_BYTES) {
      refused = true
      held.length = 0
      return refuse()
    }
    held.push(chunk)
  })
  req.on("end", () => {
    if (!refused) deliver(Buffer.concat(held))
  })
}

/** What a quick tunnel's edge adds to every answer. */
const cfHeaders = () => ({ server: "cloudflare", "cf-ray": `${hex(8)}-EMU` })

/** What a quick tunnel's edge adds to every request it passes to the origin. */
const TUNNEL_REQUEST_HEADERS = {
  "cf-worker": "trycloudflare.com",
  "cf-connecting-ip": "127.0.0.1",
  "x-forwarded-proto": "https"
}

/** A refusal answered on a plain request. */
const refuseHttp = (req: http.IncomingMessage, res: http.ServerResponse, refusal: Refusal) => {
  if (refusal._tag === "drop") {
    req.socket.destroy()
    return
  }
  req.resume()
  if (refusal._tag === "json") return sendError(res, refusal.status, refusal.error)
  return sendText(res, refusal.status, refusal.text, refusal.headers)
}

/** How {@link Edge.forward} passes one request on. */
interface Forwarding {
  readonly port: number
  readonly host: string
  readonly extraRequestHeaders: http.OutgoingHttpHeaders
  readonly onRefused: () => void
  readonly extraResponseHeaders?: http.OutgoingHttpHeaders | undefined
  readonly holdBody?: boolean | undefined
  readonly refuseLarge?: (() => void) | undefined
}

export interface EdgeContext {
  readonly faults: Testing.Faults
  readonly oauth: OAuthState
  readonly dns: TunnelDns
  readonly jobs: ReadonlyMap<string, Job>
  readonly tunnels: Tunnels
}

/** Where a request for the Jobs proxy's `host` goes (the job's loopback port), or why it is refused. */
const proxyRoute = (ctx: EdgeContext, req: http.IncomingMessage, host: string): { readonly port: number } | Refusal => {
  if (ctx.oauth.verify(req.headers.authorization)._tag !== "Valid") {
    return { _tag: "json", status: 401, error: "Invalid credentials in Authorization header" }
  }
  const match = /^([0-9a-f]{24})--(\d+)\.hf\.jobs$/.exec(host)
  const job = match === null ? undefined : ctx.jobs.get(match[1]!)
  const port = match === null ? undefined : Number(match[2])
  if (job === undefined || port === undefined || job.expose?.includes(port) !== true) {
    return { _tag: "json", status: 404, error: "Not Found" }
  }
  if (job.stage !== "RUNNING") {
    return { _tag: "json", status: 503, error: `Job is not running (stage: ${job.stage})` }
  }
  return { port: job.ports.get(port) ?? port }
}

/** Where a request for the quick tunnel `host` goes (its origin's port), or why the edge refuses it. */
const tunnelRoute = (ctx: EdgeContext, host: string): { readonly port: number; readonly tunnel: Tunnel } | Refusal => {
  const error1033: Refusal = { _tag: "text", status: 530, text: "error code: 1033", headers: cfHeaders() }
  const tunnel = ctx.tunnels.byHost.get(host)
  if (tunnel === undefined) {
    // A client that could not ask the emulator in-process still gets a transport error.
    return ctx.faults.unknownTunnelHostsDnsFail ? { _tag: "drop" } : error1033
  }
  if (tunnel.pid !== undefined && !tunnel.closed && !ProcessTree.isAlive(tunnel.pid)) tunnel.closed = true
  if (tunnel.closed || tunnel.registeredAt === undefined) return error1033
  if (Date.now() < tunnel.registeredAt + tunnel.warmupMs) return error1033
  let origin: URL
  try {
    origin = new URL(tunnel.origin)
  } catch {
    return { _tag: "text", status: 502, text: "error code: 502", headers: cfHeaders() }
  }
  return { port: Number(origin.port || (origin.protocol === "https:" ? 443 : 80)), tunnel }
}

export class Edge {
  readonly agent = new http.Agent({ keepAlive: true })
  /** Upgraded (WebSocket) connections in flight, both sides. */
  readonly upgraded = new Set<net.Socket>()

  constructor(readonly ctx: EdgeContext) {}

  proxy(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    const route = proxyRoute(this.ctx, req, host)
    if ("_tag" in route) return refuseHttp(req, res, route)
    this.forward(req, res, {
      port: route.port,
      host,
      extraRequestHeaders: {},
      onRefused: () => sendError(res, 502, "Bad Gateway: the job refused the connection")
    })
  }

  /** A WebSocket (or any) upgrade through the Jobs proxy: checked as a request, then spliced both ways. */
  proxyUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, host: string) {
    const route = proxyRoute(this.ctx, req, host)
    if ("_tag" in route) return refuseUpgrade(socket, route)
    spliceUpgrade(req, socket, head, {
      port: route.port,
      host,
      extraRequestHeaders: {},
      refused: { _tag: "json", status: 502, error: "Bad Gateway: the job refused the connection" },
      track: this.upgraded
    })
  }

  /** Whether the system resolver finds a `*.trycloudflare.com` name now (see `faults.freshTunnelDns`). */
  resolves(host: string) {
    return this.ctx.dns.lookup("system", host.toLowerCase())
  }

  quickTunnel(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    const route = tunnelRoute(this.ctx, host)
    if ("_tag" in route) return refuseHttp(req, res, route)
    const { port, tunnel } = route
    const headers = cfHeaders()
    tunnel.inflight.add(res)
    res.on("close", () => tunnel.inflight.delete(res))
    this.forward(req, res, {
      port,
      host,
      extraRequestHeaders: TUNNEL_REQUEST_HEADERS,
      onRefused: () => sendText(res, 502, "error code: 502", headers),
      extraResponseHeaders: headers,
      holdBody: req.method === "GET",
      refuseLarge: () =>
        sendText(res, 413, EDGE_413_PAGE, { "content-type": "text/html", connection: "close", ...headers })
    })
  }

  /**
   * A WebSocket through a quick tunnel: the edge and cloudflared carry upgrades (cloudflared proxies
   * `Upgrade: websocket` to the origin and streams both ways), and neither holds its frames the way the
   * edge holds a GET response's body. Cut like any request when the tunnel's cloudflared dies.
   */
  quickTunnelUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, host: string) {
    const route = tunnelRoute(this.ctx, host)
    if ("_tag" in route) return refuseUpgrade(socket, route)
    const { port, tunnel } = route
    tunnel.inflight.add(socket)
    socket.on("close", () => tunnel.inflight.delete(socket))
    spliceUpgrade(req, socket, head, {
      port,
      host,
      extraRequestHeaders: TUNNEL_REQUEST_HEADERS,
      refused: { _tag: "text", status: 502, text: "error code: 502", headers: cfHeaders() },
      track: this.upgraded
    })
  }

  /** At close: the upgraded connections are the server's no more, and would hold its close. */
  destroyUpgraded() {
    for (const socket of this.upgraded) socket.destroy()
    this.upgraded.clear()
  }

  /**
   * Streams the request to 127.0.0.1:port and the response back, chunk by chunk; with `holdBody`, the
   * response's head goes out at once but its body only when it has ended (see {@link holdUntilEnd}). With
   * `refuseLarge` (the quick-tunnel edge), the request body is held until complete and a body over the
   * edge's limit is answered by `refuseLarge` instead of reaching the origin (see {@link holdRequestBody}).
   */
  private forward(req: http.IncomingMessage, res: http.ServerResponse, route: Forwarding, held?: Buffer) {
    const { port, host, extraRequestHeaders, onRefused, extraResponseHeaders = {}, holdBody = false } = route
    if (route.refuseLarge !== undefined && held === undefined) {
      return holdRequestBody(
        req,
        (whole) => this.forward(req, res, { ...route, refuseLarge: undefined }, whole),
        route.refuseLarge
      )
    }
    const body: Readable = held === undefined ? req : Readable.from(held.length === 0 ? [] : [held])
    const bodyHeaders = held === undefined ? {} : { "content-length": String(held.length) }
    const headers = { ...filterHeaders(req.headers), host, ...extraRequestHeaders, ...bodyHeaders }
    const upstream = http.request({
      host: "127.0.0.1",
      port,
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers,
      agent: this.agent
    })
    upstream.on("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, { ...filterHeaders(answer.headers), ...extraResponseHeaders })
      res.flushHeaders()
      // pipe writes every chunk as it arrives (no buffering) and respects back-pressure.
      if (holdBody) holdUntilEnd(answer, res)
      else answer.pipe(res)
      answer.on("error", () => res.destroy())
      answer.on("close", () => {
        if (!answer.complete) res.destroy()
      })
    })
    upstream.on("error", () => {
      if (!res.headersSent) {
        req.resume()
        onRefused()
      } else {
        res.destroy()
      }
    })
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy()
    })
    body.pipe(upstream)
  }
}
