/**
 * Clients for the port tests (Node built-ins and `fetch` only): the real HTTP + SSE + WebSocket server of
 * ./portServer.py, a raw RFC 6455 client that checks the handshake and the echoed bytes, and an SSE reader
 * that proves events arrive before their stream ends without racing any clock.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as net from "node:net"
import { fileURLToPath } from "node:url"
import { withTimeout } from "./processes.js"
import { PYTHON } from "./server.js"

/** A loopback port nothing listens on now (bound, then released): a refused connection, not a fetch's bad port. */
export const closedPort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** The server script, to copy into (or run from) a sandbox: `python3 portServer.py [PORT]`. */
export const PORT_SERVER = fileURLToPath(new URL("./portServer.py", import.meta.url))

/** Its readiness line on stdout. */
export const PORT_SERVER_LISTENING = /\{"event": "listening", "port": (\d+)\}/

export interface PortServer {
  readonly port: number
  readonly proc: ChildProcessWithoutNullStreams
  readonly stop: () => Promise<void>
}

/** Runs ./portServer.py on this machine (port 0: a free one), resolved once it listens. */
export const startPortServer = (port = 0): Promise<PortServer> =>
  new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, ["-u", PORT_SERVER, String(port)], { stdio: "pipe" })
    let out = ""
    proc.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const match = PORT_SERVER_LISTENING.exec(out)
      if (match !== null) {
        const stop = async () => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL")
          await withTimeout(new Promise((done) => proc.once("exit", done)), 5_000)
        }
        resolve({ port: Number(match[1]), proc, stop })
      }
    })
    proc.once("exit", (code) => reject(new Error(`portServer.py exited (${code}) before listening`)))
  })

export interface WsResult {
  /** The handshake's status (101 when it switched). */
  readonly status: number
  /** Its head, lower-cased names. */
  readonly headers: Record<string, string>
  /** Whether Sec-WebSocket-Accept matched the key sent. */
  readonly acceptOk: boolean
  /** Each message echoed, in order. */
  readonly echoes: ReadonlyArray<Buffer>
  /** The close frame came back and then the connection ended. */
  readonly closedCleanly: boolean
}

const frame = (opcode: number, payload: Buffer): Buffer => {
  const mask = randomBytes(4)
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))
  const n = payload.length
  const head =
    n < 126
      ? Buffer.from([0x80 | opcode, 0x80 | n])
      : n < 65536
        ? Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 126]), Buffer.from([n >> 8, n & 0xff])])
        : (() => {
            const b = Buffer.alloc(10)
            b[0] = 0x80 | opcode
            b[1] = 0x80 | 127
            b.writeBigUInt64BE(BigInt(n), 2)
            return b
          })()
  return Buffer.concat([head, mask, masked])
}

/** A WebSocket opening handshake (RFC 6455 §4.1) for `path`, with `headers` added. */
const handshake = (host: string, port: number, path: string, key: string, headers: Record<string, string>) => {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)
  ]
  return `${lines.join("\r\n")}\r\n\r\n`
}

/** One unmasked frame at the start of `data`: [opcode, payload, bytes used], or undefined if incomplete. */
const parseFrame = (data: Buffer): [number, Buffer, number] | undefined => {
  if (data.length < 2) return undefined
  let length = data[1]! & 0x7f
  let at = 2
  if (length === 126) {
    if (data.length < 4) return undefined
    length = data.readUInt16BE(2)
    at = 4
  } else if (length === 127) {
    if (data.length < 10) return undefined
    length = Number(data.readBigUInt64BE(2))
    at = 10
  }
  if (data.length < at + length) return undefined
  return [data[0]! & 0x0f, data.subarray(at, at + length), at + length]
}

/**
 * Connects to `host:port`, asks for a WebSocket at `path` with `headers` (e.g. the sandbox token, or the
 * emulator's routing header), sends each message (text for strings, binary for Buffers), reads each echo,
 * then closes (1000) and waits for the close frame and the end of the connection. Bounded: `ms` in all.
 */
export const wsEcho = (
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  messages: ReadonlyArray<string | Buffer>,
  ms = 20_000
): Promise<WsResult> =>
  new Promise((resolve, reject) => {
    const key = randomBytes(16).toString("base64")
    const socket = net.connect(port, host)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`WebSocket exchange with ${host}:${port}${path} not done within ${ms} ms`))
    }, ms)
    let data = Buffer.alloc(0)
    let status = 0
    let head: Record<string, string> | undefined
    const echoes: Array<Buffer> = []
    let closeSeen = false
    const finish = (closedCleanly: boolean) => {
      clearTimeout(timer)
      const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64")
      resolve({
        status,
        headers: head ?? {},
        acceptOk: head?.["sec-websocket-accept"] === accept,
        echoes,
        closedCleanly
      })
    }
    socket.on("connect", () => socket.write(handshake(host, port, path, key, headers)))
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      if (head === undefined) {
        const end = data.indexOf("\r\n\r\n")
        if (end < 0) return
        const lines = data.subarray(0, end).toString("latin1").split("\r\n")
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0)
        head = {}
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":")
          if (colon > 0) head[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
        }
        data = data.subarray(end + 4)
        if (status !== 101) return socket.end()
        for (const m of messages) socket.write(typeof m === "string" ? frame(1, Buffer.from(m)) : frame(2, m))
        if (messages.length === 0) socket.write(frame(8, Buffer.from([0x03, 0xe8])))
      }
      for (let parsed = parseFrame(data); parsed !== undefined; parsed = parseFrame(data)) {
        const [opcode, payload, used] = parsed
        data = data.subarray(used)
        if (opcode === 8) closeSeen = true
        else if (opcode === 1 || opcode === 2) {
          echoes.push(Buffer.from(payload))
          if (echoes.length === messages.length) socket.write(frame(8, Buffer.from([0x03, 0xe8])))
        }
      }
    })
    socket.on("close", () => finish(closeSeen))
    socket.on("error", () => {})
  })

/**
 * Reads an SSE response: waits for the first event, then calls `release` (which lets the server send the
 * second and end), then reads to the end. The first event is read within `ms` or this fails: a stream held
 * until it ends never gets there, since the server ends it only after `release`.
 */
export const readSse = async (
  response: Response,
  release: () => Promise<unknown>,
  ms = 20_000
): Promise<{ readonly first: string; readonly all: string }> => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  const firstEvent = async () => {
    while (!text.includes("\n\n")) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`SSE stream ended before its first event: ${JSON.stringify(text)}`)
      text += decoder.decode(value, { stream: true })
    }
    return text
  }
  const first = await withTimeout(firstEvent(), ms)
  if (first === "timeout") {
    await reader.cancel()
    throw new Error(`the first SSE event did not arrive within ${ms} ms (the stream is held until it ends?)`)
  }
  await release()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
  }
  return { first, all: text }
}

/** The number of open descriptors of a process (Linux), for leak checks. */
export const openFds = async (pid: number): Promise<number> => {
  const fs = await import("node:fs")
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

/** An open WebSocket for sequential request/echo round trips (benchmarks): `echo` sends one message and
 * resolves with the next message that comes back. */
export interface OpenWebSocket {
  readonly echo: (message: Buffer) => Promise<Buffer>
  readonly close: () => void
}

export const openWebSocket = (
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>
): Promise<OpenWebSocket> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    socket.setNoDelay(true)
    let data = Buffer.alloc(0)
    let open = false
    let waiting: ((b: Buffer) => void) | undefined
    socket.on("connect", () => socket.write(handshake(host, port, path, randomBytes(16).toString("base64"), headers)))
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      if (!open) {
        const end = data.indexOf("\r\n\r\n")
        if (end < 0) return
        if (!data.subarray(0, end).toString("latin1").startsWith("HTTP/1.1 101")) {
          socket.destroy()
          return reject(new Error(`no WebSocket: ${data.toString("latin1")}`))
        }
        open = true
        data = data.subarray(end + 4)
        resolve({
          echo: (message) =>
            new Promise((done) => {
              waiting = done
              socket.write(frame(2, message))
            }),
          close: () => socket.destroy()
        })
      }
      for (let parsed = parseFrame(data); parsed !== undefined; parsed = parseFrame(data)) {
        data = data.subarray(parsed[2])
        const done = waiting
        waiting = undefined
        done?.(Buffer.from(parsed[1]))
      }
    })
    socket.on("error", reject)
  })
