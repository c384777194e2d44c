/**
 * Self-check of the latency relay (bench/relay.ts), against plain local servers; a script, not a test.
 * It shows, with a 50 ms one-way latency and the default 256 KiB window:
 * - a request/response round trip on an open connection takes ≈ 100 ms (raw TCP and HTTP keep-alive),
 *   and the first one on a new connection ≈ 200 ms (the handshake's RTT first);
 * - one stream carries ≈ window / RTT (2.5 MiB/s) each way, and 8 parallel streams ≈ 8× that;
 * - half-close, a reset and a refused target reach the other side; nothing is left open afterwards.
 *
 *   npx tsx bench/relay-check.ts
 */
import * as http from "node:http"
import * as net from "node:net"
import * as Effect from "effect/Effect"
import { DEFAULT_LATENCY_MS, DEFAULT_WINDOW_BYTES, makeRelay, type Relay, startRelay } from "./relay.js"
import { ms, now, percentile } from "./support.js"

const LATENCY = DEFAULT_LATENCY_MS
const WINDOW = DEFAULT_WINDOW_BYTES
const RTT = 2 * LATENCY
const MiB = 1024 * 1024
const STREAM_BYTES = 6 * MiB
const PARALLEL = 8

/** A local server for the life of the scope; closing destroys its connections. */
const listen = (server: net.Server) => {
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  return Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<number>((resolve) =>
          server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port))
        )
    ),
    () =>
      Effect.promise(() => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        for (const socket of sockets) socket.destroy()
        return closed
      })
  )
}

const connect = (relay: Relay) =>
  new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host: relay.host, port: relay.port, allowHalfOpen: true }, () => resolve(socket))
    socket.once("error", reject)
  })

/** Sends one byte and waits for the echo. */
const ping = (socket: net.Socket) =>
  new Promise<number>((resolve) => {
    const t0 = now()
    socket.once("data", () => resolve(now() - t0))
    socket.write("x")
  })

/** Reads until the end; the rate is measured from the first byte to the last. */
const drain = (socket: net.Socket) =>
  new Promise<{ bytes: number; first: number; last: number }>((resolve, reject) => {
    let bytes = 0
    let first = 0
    socket.on("data", (chunk: Buffer) => {
      if (bytes === 0) first = now()
      bytes += chunk.length
    })
    socket.on("end", () => resolve({ bytes, first, last: now() }))
    socket.on("error", reject)
  })

const rate = (runs: ReadonlyArray<{ bytes: number; first: number; last: number }>) => {
  const bytes = runs.reduce((n, r) => n + r.bytes, 0)
  const span = Math.max(...runs.map((r) => r.last)) - Math.min(...runs.map((r) => r.first))
  return bytes / MiB / (span / 1000)
}

const program = Effect.gen(function* () {
  // Echo server, with one twist: a "!" makes it reset the connection.
  const echo = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("data", (chunk: Buffer) => (chunk.includes(33) ? socket.resetAndDestroy() : socket.write(chunk)))
    socket.on("end", () => socket.end("bye")) // half-close: answers after the client's FIN
    socket.on("error", () => {})
  })
  const echoPort = yield* listen(echo)
  // Source: sends STREAM_BYTES to each connection, then ends. Sink: counts what it gets, then answers.
  const uploads: Array<{ bytes: number; first: number; last: number }> = []
  const source = net.createServer((socket) => {
    socket.on("error", () => {})
    socket.end(Buffer.alloc(STREAM_BYTES, 1))
  })
  const sourcePort = yield* listen(source)
  const sink = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", () => {})
    drain(socket).then((r) => {
      uploads.push(r)
      socket.end()
    })
  })
  const sinkPort = yield* listen(sink)
  const web = http.createServer((_, res) => res.end("ok"))
  const webPort = yield* listen(web)

  const relayTo = (port: number) => makeRelay({ target: { host: "127.0.0.1", port }, latencyMs: LATENCY })

  console.log(`latency relay self-check: ${LATENCY} ms each way (RTT ${RTT} ms), window ${WINDOW / 1024} KiB`)

  // 1. Round trips.
  const echoRelay = yield* relayTo(echoPort)
  const firstOnNew: Array<number> = []
  const warm: Array<number> = []
  for (let c = 0; c < 3; c++) {
    const socket = yield* Effect.promise(() => connect(echoRelay))
    const t0 = now()
    yield* Effect.promise(() => ping(socket))
    firstOnNew.push(now() - t0)
    for (let i = 0; i < 5; i++) warm.push(yield* Effect.promise(() => ping(socket)))
    socket.destroy()
  }
  const webRelay = yield* relayTo(webPort)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const t0 = now()
      http
        .get({ host: webRelay.host, port: webRelay.port, path: "/", agent }, (res) => {
          res.resume()
          res.on("end", () => resolve(now() - t0))
        })
        .on("error", reject)
    })
  const httpFirst = yield* Effect.promise(get)
  const httpWarm: Array<number> = []
  for (let i = 0; i < 10; i++) httpWarm.push(yield* Effect.promise(get))
  agent.destroy()
  const row = (name: string, samples: ReadonlyArray<number>, expected: number) =>
    console.log(
      `${name.padEnd(44)} p50 ${ms(percentile(samples, 50)).padStart(10)}  ${(
        percentile(samples, 50) / expected
      ).toFixed(2)}x the expected ${expected} ms`
    )
  row("TCP echo, open connection (RTT)", warm, RTT)
  row("TCP echo, first on a new connection (2 RTT)", firstOnNew, 2 * RTT)
  row("HTTP GET, keep-alive connection (RTT)", httpWarm, RTT)
  row("HTTP GET, first on a new connection (2 RTT)", [httpFirst], 2 * RTT)

  // 2. Throughput: one stream, then PARALLEL at once, each way.
  const expected = WINDOW / MiB / (RTT / 1000)
  const download = (relay: Relay, n: number) =>
    Effect.promise(() =>
      Promise.all(
        Array.from({ length: n }, () => connect(relay).then((socket) => drain(socket).finally(() => socket.destroy())))
      )
    )
  const upload = (relay: Relay, n: number) =>
    Effect.promise(async () => {
      uploads.length = 0
      const sockets = await Promise.all(Array.from({ length: n }, () => connect(relay)))
      await Promise.all(
        sockets.map(
          (socket) =>
            new Promise<void>((resolve) => {
              socket.on("end", resolve)
              socket.resume()
              socket.end(Buffer.alloc(STREAM_BYTES, 2))
            })
        )
      )
      for (const socket of sockets) socket.destroy()
      return [...uploads]
    })
  const sourceRelay = yield* relayTo(sourcePort)
  const sinkRelay = yield* relayTo(sinkPort)
  const downOne = rate(yield* download(sourceRelay, 1))
  const downMany = rate(yield* download(sourceRelay, PARALLEL))
  const upOne = rate(yield* upload(sinkRelay, 1))
  const upMany = rate(yield* upload(sinkRelay, PARALLEL))
  const tput = (name: string, mibps: number, base: number, times: number) =>
    console.log(
      `${name.padEnd(44)} ${mibps.toFixed(2).padStart(6)} MiB/s  ${(mibps / base).toFixed(2)}x ${
        times === 1 ? "window/RTT" : "one stream"
      } (expected ${times}x)`
    )
  console.log(`throughput, ${STREAM_BYTES / MiB} MiB per stream, first byte to last (window/RTT = ${expected} MiB/s)`)
  tput("target -> client, 1 stream", downOne, expected, 1)
  tput(`target -> client, ${PARALLEL} streams (sum)`, downMany, downOne, PARALLEL)
  tput("client -> target, 1 stream", upOne, expected, 1)
  tput(`client -> target, ${PARALLEL} streams (sum)`, upMany, upOne, PARALLEL)

  // 3. Half-close, reset, refused target.
  const half = yield* Effect.promise(async () => {
    const socket = await connect(echoRelay)
    const reply = drain(socket)
    socket.end()
    const r = await reply
    socket.destroy()
    return r.bytes === 3
  })
  const resetSeen = yield* Effect.promise(async () => {
    const socket = await connect(echoRelay)
    return new Promise<string>((resolve) => {
      socket.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
      socket.on("close", () => resolve("closed without error"))
      socket.write("!")
    })
  })
  const refused = yield* Effect.promise(async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as net.AddressInfo).port
        s.close(() => resolve(port))
      })
    })
    const relay = await startRelay({ target: { host: "127.0.0.1", port: closedPort }, latencyMs: LATENCY })
    const socket = await connect(relay)
    const seen = await new Promise<string>((resolve) => {
      socket.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
      socket.on("close", () => resolve("closed without error"))
    })
    await relay.close()
    return seen
  })
  console.log(`half-close: the server's answer to the client's FIN arrives -> ${half ? "ok" : "FAILED"}`)
  console.log(`server resets -> client sees ${resetSeen}`)
  console.log(`target refuses -> client sees ${refused}`)
  const stats = [echoRelay, webRelay, sourceRelay, sinkRelay].map((r) => r.stats())
  console.log(`connections accepted: ${stats.map((s) => s.connections).join(", ")}`)
})

Effect.runPromise(program.pipe(Effect.scoped)).then(() => {
  // Every relay and server is closed: once libuv has run its close callbacks (the next turn of the
  // loop), only the process's own stdio handles may remain.
  setTimeout(() => {
    // (This very timer still counts as one "Timeout" while it runs.)
    const left = process.getActiveResourcesInfo().filter((r) => r !== "TTYWrap" && r !== "PipeWrap")
    left.splice(left.indexOf("Timeout"), 1)
    console.log(`after close, active handles: ${left.length === 0 ? "none" : left.join(", ")}`)
  }, 10)
})
