/**
 * The Hub emulator's edge: the Jobs proxy (`https://<jobId>--<port>.hf.jobs`, HF token as bearer) and the
 * quick-tunnel edge (`https://<name>.trycloudflare.com`), each forwarding to the job's server on loopback
 * as the real one does: the tunnel edge holds request bodies, refuses large ones, and holds GET response
 * bodies until they end. Requests reach it through ./router.ts.
 */
import * as http from "node:http"
import { Readable } from "node:stream"
import type * as Testing from "../../Testing.js"
import * as ProcessTree from "../processTree.js"
import type { TunnelDns } from "./dns.js"
import { sendError, sendText } from "./http.js"
import type { Job } from "./job.js"
import type { OAuthState } from "./oauth.js"
import { HOST_HEADER } from "./router.js"
import type { Tunnels } from "./tunnels.js"
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

export class Edge {
  readonly agent = new http.Agent({ keepAlive: true })

  constructor(readonly ctx: EdgeContext) {}

  proxy(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    if (this.ctx.oauth.verify(req.headers.authorization)._tag !== "Valid") {
      req.resume()
      return sendError(res, 401, "Invalid credentials in Authorization header")
    }
    const match = /^([0-9a-f]{24})--(\d+)\.hf\.jobs$/.exec(host)
    const job = match === null ? undefined : this.ctx.jobs.get(match[1]!)
    const port = match === null ? undefined : Number(match[2])
    if (job === undefined || port === undefined || job.expose?.includes(port) !== true) {
      req.resume()
      return sendError(res, 404, "Not Found")
    }
    if (job.stage !== "RUNNING") {
      req.resume()
      return sendError(res, 503, `Job is not running (stage: ${job.stage})`)
    }
    this.forward(req, res, {
      port: job.ports.get(port) ?? port,
      host,
      extraRequestHeaders: {},
      onRefused: () => sendError(res, 502, "Bad Gateway: the job refused the connection")
    })
  }

  /** Whether the system resolver finds a `*.trycloudflare.com` name now (see `faults.freshTunnelDns`). */
  resolves(host: string) {
    return this.ctx.dns.lookup("system", host.toLowerCase())
  }

  quickTunnel(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    const cfHeaders = { server: "cloudflare", "cf-ray": `${hex(8)}-EMU` }
    const error1033 = () => {
      req.resume()
      sendText(res, 530, "error code: 1033", cfHeaders)
    }
    const tunnel = this.ctx.tunnels.byHost.get(host)
    if (tunnel === undefined) {
      if (this.ctx.faults.unknownTunnelHostsDnsFail) {
        // A client that could not ask the emulator in-process still gets a transport error.
        req.socket.destroy()
        return
      }
      return error1033()
    }
    if (tunnel.pid !== undefined && !tunnel.closed && !ProcessTree.isAlive(tunnel.pid)) tunnel.closed = true
    if (tunnel.closed || tunnel.registeredAt === undefined) return error1033()
    if (Date.now() < tunnel.registeredAt + tunnel.warmupMs) return error1033()
    let origin: URL
    try {
      origin = new URL(tunnel.origin)
    } catch {
      req.resume()
      return sendText(res, 502, "error code: 502", cfHeaders)
    }
    const port = Number(origin.port || (origin.protocol === "https:" ? 443 : 80))
    tunnel.inflight.add(res)
    res.on("close", () => tunnel.inflight.delete(res))
    this.forward(req, res, {
      port,
      host,
      extraRequestHeaders: {
        "cf-worker": "trycloudflare.com",
        "cf-connecting-ip": "127.0.0.1",
        "x-forwarded-proto": "https"
      },
      onRefused: () => sendText(res, 502, "error code: 502", cfHeaders),
      extraResponseHeaders: cfHeaders,
      holdBody: req.method === "GET",
      refuseLarge: () =>
        sendText(res, 413, EDGE_413_PAGE, { "content-type": "text/html", connection: "close", ...cfHeaders })
    })
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
