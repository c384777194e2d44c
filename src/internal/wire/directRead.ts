/**
 * One HTTP/1.1 GET over a bare socket whose body is received straight into the caller's memory.
 *
 * Why: on loopback the client, not the link, limits a read. Through an HttpClient every 64 KiB read of
 * the socket becomes a fresh Buffer, a stream pull and a copy; here the kernel writes the body into the
 * destination itself (Node's `onread` buffers), in reads as large as the socket holds, and the socket
 * pauses while no part waits for bytes. A 64 MiB read takes under half the time. It is only used for
 * plain `http:` endpoints whose provider asks for it (the local provider: our own server, on loopback),
 * and only for bodies of known length.
 */

import * as Net from "node:net"

const SCRATCH_SIZE = 64 * 1024
/** A head larger than this is not our server's answer. */
const MAX_HEAD = 64 * 1024
/** Error answers are small JSON documents; anything larger is cut off here. */
const MAX_ERROR_BODY = 64 * 1024
const HEAD_END = Buffer.from("\r\n\r\n")

/** The status line and headers of the answer (header names in lower case). */
export interface Head {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  /** The body's length, from `Content-Length`. */
  readonly length: number
}

/** Why an exchange failed, in words for a `ConnectionLostError`. */
export class ExchangeError {
  readonly _tag = "ExchangeError"
  constructor(
    readonly detail: string,
    /** The server ended the answer early (our server does so when the file shrinks under a read). */
    readonly endedEarly = false
  ) {}
}

/** One request on its own connection. Callers wait for `head`, then take the body in parts, then `close`. */
export interface Exchange {
  /** Resolves with the head, or fails when the connection breaks or the answer is not HTTP/1.1 with a length. */
  readonly head: (callback: (result: Head | ExchangeError) => void) => void
  /**
   * Fills `destination` with the next `destination.length` bytes of the body (never ask past its end),
   * calling `onBytes` as bytes land; call again for the next part. The socket is paused while no part
   * waits for bytes. The callback gets an error when the connection ends first.
   */
  readonly receive: (
    destination: Uint8Array,
    onBytes: (n: number) => void,
    callback: (result: undefined | ExchangeError) => void
  ) => void
  /** Ends the connection at once (idempotent); a pending callback is not called. */
  readonly close: () => void
}

const parseHead = (bytes: Buffer): Head | ExchangeError => {
  const lines = bytes.toString("latin1").split("\r\n")
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? "")
  if (status === null) return new ExchangeError(`not an HTTP/1.1 answer: ${JSON.stringify(lines[0]?.slice(0, 80))}`)
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers["content-length"])
  if (headers["transfer-encoding"] !== undefined || !/^\d+$/.test(headers["content-length"] ?? "")) {
    return new ExchangeError("the answer did not announce its length")
  }
  return { status: Number(status[1]), headers, length }
}

/**
 * Sends `GET target` to `url`'s host and port. `headers` go out as given (the caller adds its token);
 * the request asks the server to close the connection after the answer.
 */
export const open = (url: URL, target: string, headers: Readonly<Record<string, string>>): Exchange => {
  const scratch = Buffer.allocUnsafe(SCRATCH_SIZE)
  let head: Head | undefined
  const headParts: Array<Buffer> = []
  /** Body bytes that came with no part to hold them (with the head, or past a part's end), in order. */
  const early: Array<Buffer> = []
  /** Body bytes seen so far, landed or early. */
  let arrived = 0
  let destination: Uint8Array | undefined
  let region: Uint8Array | undefined
  let filled = 0
  let onBytes: (n: number) => void = () => {}
  let failure: ExchangeError | undefined
  let closed = false
  let waitingHead: ((result: Head | ExchangeError) => void) | undefined
  let waitingBody: ((result: undefined | ExchangeError) => void) | undefined

  const room = () => (destination === undefined ? 0 : destination.length - filled)

  const settle = () => {
    if (waitingHead !== undefined && (head !== undefined || failure !== undefined)) {
      const callback = waitingHead
      waitingHead = undefined
      callback(failure ?? (head as Head))
    }
    if (waitingBody !== undefined && (room() === 0 || failure !== undefined)) {
      const callback = waitingBody
      const result = room() === 0 ? undefined : failure
      waitingBody = undefined
      destination = undefined
      callback(result)
    }
  }
  const fail = (detail: string, endedEarly = false) => {
    failure ??= new ExchangeError(detail, endedEarly)
    socket.destroy()
    settle()
  }
  const cutShort = () => fail(`the connection closed after ${arrived} of ${(head as Head).length} bytes`, true)

  /** Counts body bytes; an answer longer than it announced is out of step, and fails. */
  const arrive = (n: number) => {
    arrived += n
    if (arrived <= (head as Head).length) return true
    fail(`the answer carried more than its ${(head as Head).length} announced bytes`)
    return false
  }

  /** Lands `n` bytes in the current part: copied from `bytes`, or already there (read in place). */
  const land = (n: number, bytes?: Uint8Array) => {
    if (bytes !== undefined) (destination as Uint8Array).set(bytes.subarray(0, n), filled)
    filled += n
    onBytes(n)
  }

  /** Lands what fits of `bytes` and keeps the rest for the next part. */
  const spread = (bytes: Uint8Array) => {
    const fits = Math.min(bytes.length, room())
    if (fits > 0) land(fits, bytes)
    if (fits < bytes.length) early.push(Buffer.from(bytes.subarray(fits)))
  }

  const onRead = (n: number, buffer: Uint8Array): boolean => {
    if (head === undefined) {
      headParts.push(Buffer.from(buffer.subarray(0, n)))
      const all = headParts.length === 1 ? (headParts[0] as Buffer) : Buffer.concat(headParts)
      const end = all.indexOf(HEAD_END)
      if (end === -1) {
        if (all.length > MAX_HEAD) fail("the answer's head is too large")
        return true
      }
      const parsed = parseHead(all.subarray(0, end))
      if (parsed instanceof ExchangeError) {
        fail(parsed.detail)
        return false
      }
      head = parsed
      const rest = all.subarray(end + 4)
      if (rest.length > 0 && arrive(rest.length)) spread(rest)
    } else if (arrive(n)) {
      if (buffer === region) land(n)
      else spread(buffer.subarray(0, n))
    }
    settle()
    // Read on only while a part waits for bytes (a `receive` called from a callback above counts).
    return failure === undefined && room() > 0
  }

  const socket = Net.connect({
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || 80),
    noDelay: true,
    onread: {
      // The next read lands in the rest of the current part when there is one, else in the scratch buffer.
      buffer: () => {
        if (room() > 0) {
          region = (destination as Uint8Array).subarray(filled)
          return region
        }
        region = undefined
        return scratch
      },
      callback: onRead
    }
  })
  socket.on("error", (error: NodeJS.ErrnoException) => fail(error.code ?? error.message))
  socket.on("close", () => {
    closed = true
    if (head === undefined) return fail("the connection closed before an answer")
    // With no part waiting, what came may still cover the next parts: `receive` judges that.
    if (waitingBody !== undefined) cutShort()
  })
  const lines = [`GET ${target} HTTP/1.1`, `Host: ${url.host}`, "Connection: close"]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  socket.write(`${lines.join("\r\n")}\r\n\r\n`, "latin1")

  return {
    head: (callback) => {
      waitingHead = callback
      settle()
    },
    receive: (into, report, callback) => {
      destination = into
      filled = 0
      onBytes = report
      waitingBody = callback
      for (const piece of early.splice(0)) spread(piece)
      if (room() > 0 && failure === undefined) {
        if (closed) return cutShort()
        socket.resume()
      }
      settle()
    },
    close: () => {
      waitingHead = undefined
      waitingBody = undefined
      socket.destroy()
    }
  }
}

/** The JSON body of an error answer (at most {@link MAX_ERROR_BODY} bytes), for the caller's error mapping. */
export const errorBody = (exchange: Exchange, head: Head, callback: (body: unknown) => void) => {
  if (head.length === 0 || head.length > MAX_ERROR_BODY) return callback(undefined)
  const body = new Uint8Array(head.length)
  exchange.receive(
    body,
    () => {},
    (result) => {
      if (result !== undefined) return callback(undefined)
      try {
        callback(JSON.parse(new TextDecoder().decode(body)))
      } catch {
        callback(undefined)
      }
    }
  )
}
