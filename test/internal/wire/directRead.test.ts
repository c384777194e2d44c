/**
 * Reads into memory over a bare socket (`Endpoint.directReads`, the local provider's default).
 *
 * The exchange itself is driven by a raw TCP peer on loopback that answers with each fault a socket
 * can carry (short bodies, resets, heads that are not HTTP, too many bytes), since our server never
 * misbehaves on purpose. The files API is then run against a real server through both read paths,
 * the socket and the HttpClient, with the same expectations.
 */

import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as DirectRead from "../../../src/internal/wire/directRead.js"
import { eventually, localLayer } from "../../support/local.js"

const MiB = 1024 * 1024

/** A TCP peer on loopback: `answer` gets each connection once the request's head has arrived. */
const peer = (answer: (socket: net.Socket, request: string) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: URL; readonly server: net.Server; readonly open: Set<net.Socket> }>((resume) => {
      const open = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        open.add(socket)
        socket.on("close", () => open.delete(socket))
        let request = ""
        socket.on("error", () => {})
        let answered = false
        socket.on("data", (data) => {
          request += data.toString("latin1")
          if (answered || !request.includes("\r\n\r\n")) return
          answered = true
          answer(socket, request)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        resume(Effect.succeed({ url: new URL(`http://127.0.0.1:${port}`), server, open }))
      })
    }),
    ({ server, open }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of open) socket.destroy()
      })
  )

const head = (exchange: DirectRead.Exchange) =>
  Effect.async<DirectRead.Head, DirectRead.ExchangeError>((resume) => {
    exchange.head((result) =>
      resume(result instanceof DirectRead.ExchangeError ? Effect.fail(result) : Effect.succeed(result))
    )
  })

const receive = (exchange: DirectRead.Exchange, destination: Uint8Array) =>
  Effect.async<number, DirectRead.ExchangeError>((resume) => {
    let reported = 0
    exchange.receive(
      destination,
      (n) => {
        reported += n
      },
      (error) => resume(error === undefined ? Effect.succeed(reported) : Effect.fail(error))
    )
  })

/** Opens an exchange for the test's scope. */
const open = (url: URL, target = "/v1/files/read?path=%2Fx", headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => DirectRead.open(url, target, headers)),
    (exchange) => Effect.sync(exchange.close)
  )

const answerHead = (length: number | undefined, extra = "") =>
  `HTTP/1.1 200 OK\r\n${length === undefined ? "" : `Content-Length: ${length}\r\n`}X-File-Size: ${length}\r\n${extra}\r\n`

describe("direct reads: the exchange against a raw peer", () => {
  it.scopedLive("sends one GET with the caller's headers, asking to close after the answer", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<string>()
      const { url } = yield* peer((socket, request) => {
        Deferred.unsafeDone(seen, Effect.succeed(request))
        socket.end(`${answerHead(2)}ok`)
      })
      const exchange = yield* open(url, "/v1/files/read?path=%2Fdata%2Fa+b", { "X-Sandbox-Token": "secret" })
      const answer = yield* head(exchange)
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.length, 2)
      assert.strictEqual(answer.headers["x-file-size"], "2")
      const body = new Uint8Array(2)
      assert.strictEqual(yield* receive(exchange, body), 2)
      assert.strictEqual(Buffer.from(body).toString(), "ok")
      const request = yield* Deferred.await(seen)
      assert.strictEqual(
        request,
        `GET /v1/files/read?path=%2Fdata%2Fa+b HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\nX-Sandbox-Token: secret\r\n\r\n`
      )
    })
  )

  it.scopedLive("an answer that trickles in, a few bytes at a time, lands whole", () =>
    Effect.gen(function* () {
      const body = randomBytes(300 * 1024)
      const answer = Buffer.concat([Buffer.from(answerHead(body.length)), body])
      const { url } = yield* peer((socket) => {
        // Pieces of odd sizes, each in its own tick: the head is split, and so is the body.
        let at = 0
        const next = () => {
          if (at >= answer.length) return socket.end()
          const size = at < 200 ? 7 : 40_000 + (at % 997)
          socket.write(answer.subarray(at, at + size))
          at += size
          setTimeout(next, 1)
        }
        next()
      })
      const exchange = yield* open(url)
      const got = yield* head(exchange)
      const destination = new Uint8Array(got.length)
      assert.strictEqual(yield* receive(exchange, destination), body.length)
      assert.isTrue(Buffer.from(destination).equals(body))
    })
  )

  it.scopedLive("the body can be taken in parts, pausing the socket between them", () =>
    Effect.gen(function* () {
      const body = randomBytes(2 * MiB + 17)
      const { url } = yield* peer((socket) => socket.end(Buffer.concat([Buffer.from(answerHead(body.length)), body])))
      const exchange = yield* open(url)
      const got = yield* head(exchange)
      const parts: Array<Buffer> = []
      // Tiny parts (served from what already came), then large ones (read in place), with pauses between.
      for (const size of [1, 2, 3, 1000, 300_000, MiB, MiB]) {
        const left = got.length - parts.reduce((n, p) => n + p.length, 0)
        const part = new Uint8Array(Math.min(size, left))
        assert.strictEqual(yield* receive(exchange, part), part.length)
        parts.push(Buffer.from(part))
        yield* Effect.sleep("5 millis")
      }
      assert.isTrue(Buffer.concat(parts).equals(body))
    })
  )

  it.scopedLive("body bytes that came before `receive`, even after the peer closed, are kept", () =>
    Effect.gen(function* () {
      const { url } = yield* peer((socket) => socket.end(`${answerHead(5)}hello`))
      const exchange = yield* open(url)
      const got = yield* head(exchange)
      yield* Effect.sleep("50 millis")
      const destination = new Uint8Array(got.length)
      yield* receive(exchange, destination)
      assert.strictEqual(Buffer.from(destination).toString(), "hello")
    })
  )

  it.scopedLive("a body cut short by the peer's close is an error that says it ended early", () =>
    Effect.gen(function* () {
      const { url } = yield* peer((socket) => {
        socket.write(`${answerHead(1000)}${"x".repeat(10)}`)
        setTimeout(() => socket.end("y".repeat(5)), 20)
      })
      const exchange = yield* open(url)
      const got = yield* head(exchange)
      const error = yield* Effect.flip(receive(exchange, new Uint8Array(got.length)))
      assert.isTrue(error.endedEarly)
      assert.include(error.detail, "after 15 of 1000 bytes")
    })
  )

  it.scopedLive("a reset in the middle of the body is an error, not an early end", () =>
    Effect.gen(function* () {
      const { url } = yield* peer((socket) => {
        socket.write(`${answerHead(1 * MiB)}${"x".repeat(100)}`)
        setTimeout(() => socket.resetAndDestroy(), 20)
      })
      const exchange = yield* open(url)
      const got = yield* head(exchange)
      const error = yield* Effect.flip(receive(exchange, new Uint8Array(got.length)))
      assert.isFalse(error.endedEarly)
      assert.strictEqual(error.detail, "ECONNRESET")
    })
  )

  it.scopedLive("answers a direct read cannot take fail at the head, saying why", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string | Buffer]> = [
        ["did not announce its length", "HTTP/1.1 200 OK\r\nX-File-Size: 3\r\n\r\nabc"],
        ["did not announce its length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"],
        ["not an HTTP/1.1 answer", "SSH-2.0-OpenSSH_9.6\r\n\r\n"],
        ["head is too large", `HTTP/1.1 200 OK\r\nX-Padding: ${"p".repeat(80 * 1024)}`],
        ["closed before an answer", ""]
      ]
      for (const [expected, answer] of cases) {
        const { url } = yield* peer((socket) => socket.end(answer))
        const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(open(url), head)))
        assert.include(error.detail, expected)
      }
    })
  )

  it.scopedLive("more bytes than the head announced fail the read instead of spilling over", () =>
    Effect.gen(function* () {
      for (const [first, later] of [
        ["abcdef", ""], // with the head: found before the head is handed over
        ["ab", "cdef"] // after it: found while the body lands
      ] as const) {
        const { url } = yield* peer((socket) => {
          socket.write(`${answerHead(3)}${first}`)
          setTimeout(() => socket.end(later), 20)
        })
        const exchange = yield* open(url)
        const error = yield* Effect.flip(
          Effect.flatMap(head(exchange), (got) => receive(exchange, new Uint8Array(got.length)))
        )
        assert.include(error.detail, "more than its 3 announced bytes")
      }
    })
  )

  it.scopedLive("a refused connection fails at the head", () =>
    Effect.gen(function* () {
      const { url, server } = yield* peer(() => {})
      yield* Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
      const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(open(url), head)))
      assert.strictEqual(error.detail, "ECONNREFUSED")
    })
  )

  it.scopedLive("close() ends the connection at once, and the peer sees it", () =>
    Effect.gen(function* () {
      const closed = yield* Deferred.make<void>()
      const { url } = yield* peer((socket) => {
        socket.on("close", () => Deferred.unsafeDone(closed, Effect.void))
        socket.write(`${answerHead(10 * MiB)}${"x".repeat(10)}`)
      })
      const exchange = DirectRead.open(url, "/", {})
      yield* head(exchange)
      exchange.close()
      exchange.close()
      yield* Deferred.await(closed).pipe(Effect.timeout("5 seconds"))
    })
  )
})

/** The local provider with reads through the HttpClient, to hold both paths to the same expectations. */
const viaHttpClient = Layer.effect(
  SandboxProvider.SandboxProvider,
  Effect.map(SandboxProvider.SandboxProvider, (local) => ({
    ...local,
    provision: (spec: SandboxProvider.Spec) =>
      Effect.map(local.provision(spec), (endpoint) => ({ ...endpoint, directReads: false }))
  }))
).pipe(Layer.provideMerge(localLayer()))

const sockets = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPSocketWrap").length

for (const [name, provider] of [
  ["over the socket (local default)", localLayer()],
  ["through the HttpClient", viaHttpClient]
] as const) {
  layer(Sandbox.layer().pipe(Layer.provideMerge(provider)), { timeout: "60 seconds" })(`files.read ${name}`, (it) => {
    it.effect("ranged reads in parallel land byte-exact, with progress to the last byte", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const data = new Uint8Array(randomBytes(20 * MiB + 123))
        yield* sb.files.write("ranged.bin", data)
        let last: { bytes: number; total: number | undefined } | undefined
        const back = yield* sb.files.read("ranged.bin", {
          rangeSize: MiB,
          parallelism: 4,
          onProgress: (progress) => {
            last = progress
          }
        })
        assert.isTrue(Buffer.from(back).equals(data))
        assert.deepStrictEqual(last, { bytes: data.length, total: data.length })
        assert.strictEqual((yield* sb.files.read("ranged.bin")).length, data.length)
        yield* sb.files.write("empty.bin", new Uint8Array(0))
        assert.strictEqual((yield* sb.files.read("empty.bin")).length, 0)
      })
    )

    it.scoped("download and readStream give the same bytes, in order", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const data = new Uint8Array(randomBytes(5 * MiB + 7))
        yield* sb.files.write("streamed.bin", data)
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-direct-"))),
          (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
        )
        yield* sb.files.download("streamed.bin", path.join(dir, "down.bin"), { rangeSize: MiB, parallelism: 3 })
        assert.isTrue(fs.readFileSync(path.join(dir, "down.bin")).equals(data))
        const chunks = yield* Stream.runCollect(sb.files.readStream("streamed.bin"))
        assert.isTrue(Buffer.concat(Array.from(chunks)).equals(data))
      })
    )

    it.effect("a file that shrinks during the read fails it with a ConnectionLostError", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("shrinking.bin", new Uint8Array(128 * MiB))
        const local = path.join(sb.details.workdir as string, "shrinking.bin")
        let truncated = false
        const error = yield* Effect.flip(
          sb.files.read("shrinking.bin", {
            onProgress: () => {
              if (truncated) return
              truncated = true
              fs.truncateSync(local, 1000)
            }
          })
        )
        assert.isTrue(truncated)
        assert.strictEqual(error._tag, "ConnectionLostError")
        if (name.startsWith("over the socket")) assert.include(error.message, "the file changed during the read")
        assert.strictEqual(yield* sb.files.readText("shrinking.bin"), "\0".repeat(1000))
      })
    )

    it.effect("an interrupted read closes its connection, and the next read works", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("large.bin", new Uint8Array(128 * MiB))
        yield* sb.files.write("small.txt", "still fine")
        const before = sockets()
        const started = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(
          sb.files.read("large.bin", { onProgress: () => Deferred.unsafeDone(started, Effect.void) })
        )
        yield* Deferred.await(started)
        yield* Fiber.interrupt(fiber)
        yield* eventually(
          Effect.suspend(() => (sockets() <= before ? Effect.void : Effect.fail(`${sockets()} sockets open`)))
        )
        assert.strictEqual(yield* sb.files.readText("small.txt"), "still fine")
      })
    )
  })
}

describe("the local provider", () => {
  it.scopedLive("asks for direct reads", () =>
    Effect.gen(function* () {
      const seen: Array<SandboxProvider.Endpoint> = []
      const recording = Layer.effect(
        SandboxProvider.SandboxProvider,
        Effect.map(SandboxProvider.SandboxProvider, (local) => ({
          ...local,
          provision: (spec: SandboxProvider.Spec) =>
            Effect.tap(local.provision(spec), (endpoint) => Effect.sync(() => seen.push(endpoint)))
        }))
      ).pipe(Layer.provideMerge(localLayer()))
      yield* Effect.scoped(Sandbox.make()).pipe(Effect.provide(recording))
      assert.strictEqual(seen.length, 1)
      assert.isTrue(seen[0]?.directReads)
    })
  )
})
