/**
 * Conformance of the server's port routes (`rpc-server/sbx_server/proxy.py`, `ports.py`), against the
 * real process over loopback, with a real HTTP + SSE + WebSocket server (test/support/portServer.py)
 * started inside the sandbox as one of its background processes: `ANY /v1/proxy/{port}/{path...}`
 * (HF's sandbox-server route: head replayed without the prefix, query verbatim, bytes spliced both ways)
 * and the readiness probe `GET /v1/ports/{port}`.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Protocol from "hf-sandbox/Protocol"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openFds, PORT_SERVER, PORT_SERVER_LISTENING, readSse, wsEcho } from "../support/ports.js"
import { until } from "../support/processes.js"
import { exchange } from "../support/rawHttp.js"
import { type Event, PYTHON, type Running, readEventsUntil, startServer, stopServer } from "../support/server.js"

const isLinux = process.platform === "linux"

let server: Running
let port: number
let processId: string

const call = (pathAndQuery: string, init: RequestInit = {}) =>
  fetch(server.base + pathAndQuery, {
    ...init,
    headers: { "X-Sandbox-Token": server.token, ...(init.headers as Record<string, string> | undefined) }
  })

const json = async (pathAndQuery: string, init: RequestInit = {}) => {
  const res = await call(pathAndQuery, init)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** Starts portServer.py inside the sandbox (a background process) and reads the port it listens on. */
const startInside = async (): Promise<{ readonly id: string; readonly port: number }> => {
  const started = await json("/v1/processes", {
    method: "POST",
    body: JSON.stringify({ cmd: [PYTHON, "-u", PORT_SERVER, "0"], tag: "port-server" })
  })
  expect(started.status).toBe(200)
  const id = started.body.id as string
  const res = await call(`/v1/processes/${id}/output?follow=1`, { method: "POST" })
  const reader = res.body!.getReader()
  const events = await readEventsUntil<Event>(reader, (es) =>
    es.some((e) => e.event === "stdout" && PORT_SERVER_LISTENING.test(String(e.data)))
  )
  await reader.cancel()
  const line = events.map((e) => (e.event === "stdout" ? String(e.data) : "")).join("")
  const match = PORT_SERVER_LISTENING.exec(line)
  if (match === null) throw new Error(`portServer.py did not start: ${JSON.stringify(events)}`)
  return { id, port: Number(match[1]) }
}

const connections = async (p: number) => (await json(`/v1/ports/${p}`)).body.connections

/** A loopback port nothing listens on (bound, then closed). */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port: p } = s.address() as net.AddressInfo
      s.close(() => resolve(p))
    })
  })

beforeAll(async () => {
  server = await startServer({ prefix: "sbx-proxy-" })
  ;({ id: processId, port } = await startInside())
}, 60_000)

afterAll(async () => {
  if (server !== undefined) await stopServer(server)
})

describe("ANY /v1/proxy/{port}/{path...}", () => {
  it("replays a GET without the prefix and answers the backend's bytes, closing the connection after", async () => {
    const res = await call(`/v1/proxy/${port}/hello`)
    expect(res.status).toBe(200)
    expect(res.headers.get("connection")).toBe("close")
    expect(Buffer.from(await res.arrayBuffer()).toString("latin1")).toBe(`hello from ${port}\n`)
  })

  it("forwards the query verbatim and every header but the sandbox token and the hop-by-hop ones", async () => {
    const res = await call(`/v1/proxy/${port}/headers?a=1&b=%20x&a=2`, {
      headers: { "X-Custom": "kept", Authorization: `Bearer ${server.token}` }
    })
    const head = (await res.json()) as { method: string; target: string; headers: Array<[string, string]> }
    expect(head.method).toBe("GET")
    expect(head.target).toBe("/headers?a=1&b=%20x&a=2")
    const names = head.headers.map(([k]) => k.toLowerCase())
    expect(names).not.toContain("x-sandbox-token")
    expect(names).not.toContain("authorization")
    expect(head.headers).toContainEqual(["X-Custom", "kept"])
    expect(head.headers.filter(([k]) => k.toLowerCase() === "connection")).toEqual([["Connection", "close"]])
    expect(JSON.stringify(head)).not.toContain(server.token)
  })

  it("forwards one framing (chunked wins over a Content-Length beside it), answers Expect itself, and never lets a pipelined request through", async () => {
    const request =
      `POST /v1/proxy/${port}/headers HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${server.token}\r\n` +
      "Content-Length: 3\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    const { responses, closed } = await exchange(server.port, request)
    expect(closed).toBe(true)
    expect(responses.map((r) => r.status)).toEqual([100, 200])
    const head = JSON.parse(responses[1]!.body.toString("latin1")) as { headers: Array<[string, string]>; body: string }
    expect(head.body).toBe("hello")
    const names = head.headers.map(([k]) => k.toLowerCase())
    expect(names).toContain("transfer-encoding")
    expect(names).not.toContain("content-length")
    expect(names).not.toContain("expect")
  })

  it("passes on an Authorization header that is not the sandbox token (HF's server forwards it too)", async () => {
    const res = await call(`/v1/proxy/${port}/headers`, { headers: { Authorization: "Bearer hf_caller" } })
    const head = (await res.json()) as { headers: Array<[string, string]> }
    expect(head.headers).toContainEqual(["Authorization", "Bearer hf_caller"])
  })

  it("a bare /v1/proxy/{port} is the backend's /", async () => {
    const res = await call(`/v1/proxy/${port}`)
    expect(res.status).toBe(404) // portServer.py has no `/`: its own 404, not ours
    expect(await res.text()).toBe("not found\n")
  })

  it("streams request bodies, Content-Length and chunked, and relays the chunked answer byte for byte", async () => {
    const payload = randomBytes(3 * 1024 * 1024 + 17)
    const sized = await call(`/v1/proxy/${port}/echo`, { method: "POST", body: payload })
    expect(Buffer.from(await sized.arrayBuffer()).equals(payload)).toBe(true)
    const pieces = [payload.subarray(0, 1000), payload.subarray(1000, 700_000), payload.subarray(700_000)]
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const piece of pieces) controller.enqueue(piece)
        controller.close()
      }
    })
    const chunked = await call(`/v1/proxy/${port}/echo`, {
      method: "POST",
      body: stream,
      duplex: "half"
    } as RequestInit)
    expect(chunked.status).toBe(200)
    expect(Buffer.from(await chunked.arrayBuffer()).equals(payload)).toBe(true)
  })

  for (const method of ["GET", "POST"] as const) {
    it(`relays an SSE stream over ${method} as it is produced (an event before the stream ends)`, async () => {
      const res = await call(`/v1/proxy/${port}/sse`, { method })
      expect(res.headers.get("content-type")).toBe("text/event-stream")
      const { first, all } = await readSse(res, () => call(`/v1/proxy/${port}/release`).then((r) => r.arrayBuffer()))
      expect(first).toBe("event: one\ndata: first\n\n")
      expect(all).toBe("event: one\ndata: first\n\nevent: two\ndata: second\n\n")
    })
  }

  it("splices a WebSocket upgrade both ways until the close handshake", async () => {
    const big = randomBytes(200_000)
    const ws = await wsEcho("127.0.0.1", server.port, `/v1/proxy/${port}/ws`, { "X-Sandbox-Token": server.token }, [
      "hello",
      big,
      "ünïcode ✓"
    ])
    expect(ws.status).toBe(101)
    expect(ws.acceptOk).toBe(true)
    expect(ws.echoes.map((b) => b.toString("utf8"))[0]).toBe("hello")
    expect(ws.echoes[1]!.equals(big)).toBe(true)
    expect(ws.echoes[2]!.toString("utf8")).toBe("ünïcode ✓")
    expect(ws.closedCleanly).toBe(true)
  })

  it("authenticates like every route: no token, 403 and nothing reaches the backend", async () => {
    const res = await fetch(`${server.base}/v1/proxy/${port}/hello`)
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ error: "invalid or missing sandbox token", code: "auth" })
    const ws = await wsEcho("127.0.0.1", server.port, `/v1/proxy/${port}/ws`, {}, ["x"])
    expect(ws.status).toBe(403)
  })

  it("a port that is not 1..65535 is a 400 naming it", async () => {
    for (const bad of ["abc", "0", "65536", "-1", "８０"]) {
      const { status, body } = await json(`/v1/proxy/${encodeURIComponent(bad)}/x`)
      expect(status).toBe(400)
      expect(body.code).toBe("bad_request")
      expect(String(body.error)).toContain("must be an integer from 1 to 65535")
    }
  })

  it("nothing listening is a 502 naming the port", async () => {
    const p = await closedPort()
    const { status, body } = await json(`/v1/proxy/${p}/hello`)
    expect(status).toBe(502)
    expect(body.code).toBe("port_closed")
    expect(String(body.error)).toContain(`nothing is listening on port ${p}`)
  })
})

describe("GET /v1/ports/{port}", () => {
  it("says whether something listens on 127.0.0.1:{port}", async () => {
    expect(await json(`/v1/ports/${port}`)).toEqual({
      status: 200,
      body: { port, listening: true, connections: 0, tunnel: null }
    })
    expect(
      Either.isRight(Schema.decodeUnknownEither(Protocol.PortStatus)((await json(`/v1/ports/${port}`)).body))
    ).toBe(true)
    const p = await closedPort()
    expect((await json(`/v1/ports/${p}`)).body.listening).toBe(false)
    expect((await json("/v1/ports/nope")).status).toBe(400)
    expect((await json(`/v1/ports/${port}`, { method: "POST" })).status).toBe(405)
  })
})

describe("POST /v1/ports/{port}/tunnel", () => {
  it("a port's tunnel that cannot start is reported (502 tunnel_failed), never fatal to the server", async () => {
    const other = await startServer({
      prefix: "sbx-proxy-tunnel-",
      env: { SBX_CLOUDFLARED: "/nonexistent/cloudflared" }
    })
    try {
      const ask = (p: string, init: RequestInit = {}) =>
        fetch(other.base + p, { ...init, headers: { "X-Sandbox-Token": other.token } })
      expect((await ask(`/v1/ports/${port}/tunnel?wait=soon`, { method: "POST" })).status).toBe(400)
      expect(await (await ask(`/v1/ports/${port}/tunnel`)).json()).toEqual({ port, state: "none", url: null })
      const res = await ask(`/v1/ports/${port}/tunnel?wait=10`, { method: "POST" })
      const body = (await res.json()) as Record<string, unknown>
      expect(res.status).toBe(502)
      expect(body.code).toBe("tunnel_failed")
      expect(String(body.error)).toContain(`tunnel for port ${port} failed: SBX_CLOUDFLARED=/nonexistent/cloudflared`)
      const state = (await (await ask(`/v1/ports/${port}/tunnel`)).json()) as Record<string, unknown>
      expect(state.state).toBe("failed")
      expect(Either.isRight(Schema.decodeUnknownEither(Protocol.PortTunnel)(state))).toBe(true)
      expect((await ask("/health")).status).toBe(200)
      expect(other.proc.exitCode).toBeNull()
    } finally {
      await stopServer(other)
    }
  })
})

describe("POST /v1/ports/{port}/tunnel: bounds", () => {
  it("a tunnel still starting is a 503 tunnel_starting (the same tunnel on the next call); SBX_MAX_PORT_TUNNELS bounds them", async () => {
    // A cloudflared that passes the version check and then never becomes ready.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-slow-cloudflared-"))
    const fake = path.join(dir, "cloudflared")
    fs.writeFileSync(
      fake,
      '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "cloudflared version 2026.9.1 (built 2026-09-01)"; exit 0; fi\nexec sleep 120\n',
      { mode: 0o755 }
    )
    const other = await startServer({
      prefix: "sbx-proxy-bound-",
      env: { SBX_CLOUDFLARED: fake, SBX_MAX_PORT_TUNNELS: "1" }
    })
    try {
      const ask = (p: string, init: RequestInit = {}) =>
        fetch(other.base + p, { ...init, headers: { "X-Sandbox-Token": other.token } })
      const first = await ask(`/v1/ports/${port}/tunnel?wait=0.2`, { method: "POST" })
      expect(first.status).toBe(503)
      expect(first.headers.get("retry-after")).toBe("2")
      expect(((await first.json()) as Record<string, unknown>).code).toBe("tunnel_starting")
      expect(await (await ask(`/v1/ports/${port}/tunnel`)).json()).toEqual({ port, state: "starting", url: null })
      expect((await ask(`/v1/ports/${port}/tunnel?wait=0`, { method: "POST" })).status).toBe(503)
      const second = await ask(`/v1/ports/${port + 1}/tunnel?wait=0`, { method: "POST" })
      const body = (await second.json()) as Record<string, unknown>
      expect(second.status).toBe(503)
      expect(body.code).toBe("too_many_tunnels")
      expect(String(body.error)).toContain("at most 1 at once (SBX_MAX_PORT_TUNNELS)")
    } finally {
      await stopServer(other)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("no leaks", () => {
  const fds = () => openFds(server.pid)
  const threads = async () => (await import("node:fs")).readdirSync(`/proc/${server.pid}/task`).length

  it.runIf(isLinux)("a client that vanishes mid-WebSocket or mid-stream leaves no socket or thread", async () => {
    await call(`/v1/proxy/${port}/hello`).then((r) => r.arrayBuffer())
    await until("warm-up connection gone", async () => (await connections(port)) === 0)
    const [fd0, t0] = [await fds(), await threads()]
    for (let i = 0; i < 5; i++) {
      const socket = net.connect(server.port, "127.0.0.1")
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()))
      const key = randomBytes(16).toString("base64")
      socket.write(
        `GET /v1/proxy/${port}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nX-Sandbox-Token: ${server.token}\r\n\r\n`
      )
      await new Promise<void>((resolve) => socket.once("data", () => resolve()))
      socket.destroy() // no close frame, no FIN first: gone
      const sse = await call(`/v1/proxy/${port}/sse`, { method: "POST" })
      const reader = sse.body!.getReader()
      await reader.read()
      await reader.cancel()
    }
    await until("proxied connections back to 0", async () => (await connections(port)) === 0)
    await call(`/v1/proxy/${port}/release`).then((r) => r.arrayBuffer()) // the held SSE handlers may end
    await until(`descriptors back to ${fd0}`, async () => (await fds()) <= fd0)
    await until(`threads back to ${t0}`, async () => (await threads()) <= t0)
  })

  it.runIf(isLinux)("a backend that dies mid-stream ends the client's stream and its sockets", async () => {
    const other = await startInside()
    const res = await call(`/v1/proxy/${other.port}/sse`)
    const reader = res.body!.getReader()
    const first = await reader.read()
    expect(Buffer.from(first.value!).toString()).toContain("event: one")
    const killed = await json(`/v1/processes/${other.id}?signal=KILL`, { method: "DELETE" })
    expect(killed.status).toBe(200)
    const ended = await reader.read().then(
      (r) => r.done,
      () => true
    )
    expect(ended).toBe(true)
    await until("connection to the dead port gone", async () => (await connections(other.port)) === 0)
    expect(processId).toBeDefined()
  })
})
