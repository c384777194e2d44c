/**
 * Raw HTTP/1.1 over one loopback TCP connection, for the suites that check the server's framing with
 * bytes `fetch` would never send: what came back, split into responses, and whether the server closed.
 */
import * as net from "node:net"

export interface Exchange {
  /** Every byte the server sent. */
  readonly data: Buffer
  /** The server ended the connection (FIN or RST) before the bound. */
  readonly closed: boolean
  /** The responses parsed from `data`, in order; a cut or unparsable tail is left out. */
  readonly responses: ReadonlyArray<RawResponse>
}

export interface RawResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Buffer
}

/**
 * Parses as many complete responses as `data` holds (Content-Length or chunked bodies); stops at the
 * first incomplete or malformed one.
 */
export const parseResponses = (data: Buffer): Array<RawResponse> => {
  const out: Array<RawResponse> = []
  let at = 0
  for (;;) {
    const end = data.indexOf("\r\n\r\n", at)
    if (end < 0) return out
    const lines = data.subarray(at, end).toString("latin1").split("\r\n")
    const status = /^HTTP\/1\.[01] (\d{3}) /.exec(lines[0] ?? "")
    if (status === null) return out
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":")
      if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    let pos = end + 4
    let body: Buffer
    if (headers["transfer-encoding"] === "chunked") {
      const parts: Array<Buffer> = []
      for (;;) {
        const nl = data.indexOf("\r\n", pos)
        if (nl < 0) return out
        const size = Number.parseInt(data.subarray(pos, nl).toString("latin1"), 16)
        if (Number.isNaN(size) || nl + 2 + size + 2 > data.length) return out
        parts.push(data.subarray(nl + 2, nl + 2 + size))
        pos = nl + 2 + size + 2
        if (size === 0) break
      }
      body = Buffer.concat(parts)
    } else {
      const length = Number(headers["content-length"] ?? "0")
      if (pos + length > data.length) return out
      body = data.subarray(pos, pos + length)
      pos += length
    }
    out.push({ status: Number(status[1]), headers, body })
    at = pos
  }
}

/**
 * Sends `payload` on a fresh connection and collects the answer until the server closes, `until`
 * holds, or `boundMs` passes (then `closed` is false: the server held the connection open).
 */
export const exchange = (
  port: number,
  payload: string | Buffer,
  options: {
    readonly boundMs?: number
    readonly until?: (responses: ReadonlyArray<RawResponse>) => boolean
    /** Half-close after the payload (FIN): the server has all there is and must answer or close. */
    readonly halfClose?: boolean
  } = {}
) =>
  new Promise<Exchange>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    let settled = false
    const finish = (closed: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const data = Buffer.concat(chunks)
      resolve({ data, closed, responses: parseResponses(data) })
    }
    const timer = setTimeout(() => finish(false), options.boundMs ?? 10_000)
    socket.on("data", (d) => {
      chunks.push(d)
      if (options.until?.(parseResponses(Buffer.concat(chunks)))) finish(false)
    })
    socket.on("end", () => finish(true))
    socket.on("close", () => finish(true))
    socket.on("error", (e: NodeJS.ErrnoException) => {
      // A reset after the server answered and closed is still "closed"; a refused connection is not.
      if (e.code === "ECONNRESET" || e.code === "EPIPE") finish(true)
      else if (!settled) {
        settled = true
        clearTimeout(timer)
        reject(e)
      }
    })
    if (options.halfClose === true) socket.end(payload)
    else socket.write(payload)
  })
