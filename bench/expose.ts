/**
 * The cost of the server's port proxy (`ANY /v1/proxy/{port}/…`) on this machine, as the local provider
 * runs it: a real HTTP + WebSocket server (test/support/portServer.py) started inside the sandbox (a
 * background process of the sandbox server), reached directly and through the proxy, interleaved in the
 * same run so that both see the same machine. Prints medians and the ratio proxied / direct:
 *
 * - HTTP `GET /hello` on a fresh connection each time (the proxy closes a plain request's connection
 *   after its response, so every proxied request pays a connect), and direct with keep-alive for scale;
 * - WebSocket round trip (a 32-byte binary message echoed) on one open connection each.
 *
 * The sandbox server is started the way the conformance suites start it (test/support/server.ts): the
 * local provider's server, with the token and address in hand.
 *
 *   npx tsx bench/expose.ts            (BENCH_RUNS=500 by default)
 */
import * as http from "node:http"
import { openWebSocket, PORT_SERVER, PORT_SERVER_LISTENING } from "../test/support/ports.js"
import { type Event, PYTHON, readEventsUntil, startServer, stopServer } from "../test/support/server.js"
import { ms, now, percentile } from "./support.js"

const RUNS = Number(process.env.BENCH_RUNS ?? 500)

const get = (port: number, path: string, headers: Record<string, string>, agent: http.Agent | false) =>
  new Promise<void>((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers, agent }, (res) => {
      res.resume()
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
    })
    req.on("error", reject)
  })

const time = async (into: Array<number>, run: () => Promise<unknown>) => {
  const t0 = now()
  await run()
  into.push(now() - t0)
}

const line = (label: string, proxied: Array<number>, direct: Array<number>) => {
  const p = percentile(proxied, 50)
  const d = percentile(direct, 50)
  console.log(`${label}: proxied p50 ${ms(p)} | direct p50 ${ms(d)} | ratio ${(p / d).toFixed(2)}x (${RUNS} runs each)`)
}

const main = async () => {
  const server = await startServer({ prefix: "bench-expose-" })
  const auth = { "X-Sandbox-Token": server.token }
  try {
    const started = await fetch(`${server.base}/v1/processes`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ cmd: [PYTHON, "-u", PORT_SERVER, "0"] })
    }).then((r) => r.json() as Promise<{ id: string }>)
    const output = await fetch(`${server.base}/v1/processes/${started.id}/output?follow=1`, {
      method: "POST",
      headers: auth
    })
    const reader = output.body!.getReader()
    const events = await readEventsUntil<Event>(reader, (es) =>
      es.some((e) => e.event === "stdout" && PORT_SERVER_LISTENING.test(String(e.data)))
    )
    await reader.cancel()
    const port = Number(PORT_SERVER_LISTENING.exec(events.map((e) => String(e.data ?? "")).join(""))![1])

    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const proxied: Array<number> = []
    const fresh: Array<number> = []
    const reused: Array<number> = []
    for (let i = 0; i < 20; i++) await get(server.port, `/v1/proxy/${port}/hello`, auth, false)
    for (let i = 0; i < RUNS; i++) {
      await time(proxied, () => get(server.port, `/v1/proxy/${port}/hello`, auth, false))
      await time(fresh, () => get(port, "/hello", {}, false))
      await time(reused, () => get(port, "/hello", {}, keepAlive))
    }
    line("HTTP GET, fresh connections", proxied, fresh)
    line("HTTP GET, proxied (fresh) vs direct keep-alive", proxied, reused)
    keepAlive.destroy()

    const viaProxy = await openWebSocket("127.0.0.1", server.port, `/v1/proxy/${port}/ws`, auth)
    const direct = await openWebSocket("127.0.0.1", port, "/ws", {})
    const message = Buffer.alloc(32, 7)
    const wsProxied: Array<number> = []
    const wsDirect: Array<number> = []
    for (let i = 0; i < 20; i++) await viaProxy.echo(message)
    for (let i = 0; i < RUNS; i++) {
      await time(wsProxied, () => viaProxy.echo(message))
      await time(wsDirect, () => direct.echo(message))
    }
    line("WebSocket round trip (32 B)", wsProxied, wsDirect)
    viaProxy.close()
    direct.close()
  } finally {
    await stopServer(server)
  }
}

void main()
