/**
 * Upgraded connections through the Hub emulator's edge (./edge.ts): a request with `Upgrade` (a WebSocket)
 * reaches the Jobs proxy or a quick tunnel's edge on the `upgrade` event of the emulator's server, not as
 * a request. As the real edges do, the request head goes to the job's loopback port (routing header
 * dropped, `Host` the public one, the edge's own headers added) and from then on bytes are spliced both
 * ways until either side closes; the origin does the handshake. A refusal before that is a whole HTTP
 * response written on the raw socket.
 */
import type * as http from "node:http"
import * as net from "node:net"
import { HOST_HEADER } from "./router.js"
import { hex } from "./util.js"

/** Why the edge will not pass a request on, answered as the room answers it. */
export type Refusal =
  | { readonly _tag: "json"; readonly status: number; readonly error: string }
  | {
      readonly _tag: "text"
      readonly status: number
      readonly text: string
      readonly headers: Readonly<Record<string, string>>
    }
  | { readonly _tag: "drop" }

const REASONS: Record<number, string> = {
  401: "Unauthorized",
  404: "Not Found",
  502: "Bad Gateway",
  503: "Service Unavailable",
  530: "Origin Error"
}

/** The refusal as raw HTTP/1.1 on an upgrade's socket, which is then ended. */
export const refuseUpgrade = (socket: net.Socket, refusal: Refusal) => {
  if (refusal._tag === "drop") {
    socket.destroy()
    return
  }
  const [body, headers] =
    refusal._tag === "json"
      ? [
          JSON.stringify({ error: refusal.error }),
          { "content-type": "application/json; charset=utf-8", "x-request-id": `Root=1-${hex(4)}-${hex(12)}` }
        ]
      : [refusal.text, { "content-type": "text/plain; charset=UTF-8", ...refusal.headers }]
  const lines = [
    `HTTP/1.1 ${refusal.status} ${REASONS[refusal.status] ?? "Error"}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    `content-length: ${Buffer.byteLength(body)}`,
    "connection: close"
  ]
  socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`)
}

/** Where {@link spliceUpgrade} takes an upgrade. */
export interface UpgradeRoute {
  readonly port: number
  readonly host: string
  readonly extraRequestHeaders: Readonly<Record<string, string>>
  /** The answer when the origin's port refuses the connection. */
  readonly refused: Refusal
  /** Both sockets while they are open (the emulator destroys what is left at close). */
  readonly track: Set<net.Socket>
}

/** The request head for the origin: the client's raw fields in order, minus the routing header and `Host`. */
const originHead = (req: http.IncomingMessage, route: UpgradeRoute) => {
  const lines = [`${req.method ?? "GET"} ${req.url ?? "/"} HTTP/1.1`, `Host: ${route.host}`]
  const raw = req.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (name === HOST_HEADER || name === "host" || name in route.extraRequestHeaders) continue
    lines.push(`${raw[i]}: ${raw[i + 1]}`)
  }
  for (const [name, value] of Object.entries(route.extraRequestHeaders)) lines.push(`${name}: ${value}`)
  return `${lines.join("\r\n")}\r\n\r\n`
}

/** Connects to the origin, replays the head (and what the client sent past it), then splices both ways. */
export const spliceUpgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer, route: UpgradeRoute) => {
  const upstream = net.connect(route.port, "127.0.0.1")
  upstream.setNoDelay(true)
  socket.setNoDelay(true)
  route.track.add(socket)
  route.track.add(upstream)
  let connected = false
  const end = () => {
    route.track.delete(socket)
    route.track.delete(upstream)
    socket.destroy()
    upstream.destroy()
  }
  upstream.on("connect", () => {
    connected = true
    upstream.write(originHead(req, route))
    if (head.length > 0) upstream.write(head)
    socket.pipe(upstream)
    upstream.pipe(socket)
  })
  upstream.on("error", () => {
    if (connected) return end()
    route.track.delete(upstream)
    route.track.delete(socket)
    refuseUpgrade(socket, route.refused)
  })
  socket.on("error", end)
  upstream.on("close", () => {
    if (connected) end()
  })
  socket.on("close", end)
}
