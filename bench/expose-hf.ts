/**
 * `sb.expose(port)` on each way, as a program uses it: a real HTTP + WebSocket server
 * (test/support/portServer.py) started in a sandbox, reached through the URL and headers `expose` gives,
 * against a direct request to the same server in the same run (interleaved, so both see the same
 * machine). Local provider: `loopback` and `via: "server"`; emulated HF Jobs (the Hub emulator on this
 * machine, so no real network is in it: what is measured is the path's own cost): the Jobs proxy host of
 * a declared port, the port's quick tunnel through the stand-in cloudflared and edge, and `via: "server"`.
 * Prints medians of a fresh-connection `GET /hello` and of a WebSocket round trip, and their ratios.
 *
 *   npx tsx bench/expose-hf.ts            (BENCH_RUNS=200 by default)
 */
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Testing from "hf-sandbox/testing"
import { emulatorLayer } from "../test/support/hub.js"
import { openWebSocket, PORT_SERVER } from "../test/support/ports.js"
import { Live, ms, now, percentile } from "./support.js"

const RUNS = Number(process.env.BENCH_RUNS ?? 200)
const LISTENING = /"event": "listening", "port": (\d+)/

/** Where a request really goes: an emulated host is reached through the emulator with its routing header. */
interface Route {
  readonly host: string
  readonly port: number
  readonly path: string
  readonly headers: Record<string, string>
}

const routeOf = (exposed: SandboxProvider.Exposure, emulator: Testing.HubEmulator | undefined): Route => {
  const url = new URL(exposed.url)
  const path = url.pathname.replace(/\/$/, "")
  if (url.protocol === "https:" && emulator !== undefined) {
    return {
      host: "127.0.0.1",
      port: Number(new URL(emulator.url).port),
      path,
      headers: { ...exposed.headers, "x-emulator-host": url.hostname }
    }
  }
  return { host: url.hostname, port: Number(url.port), path, headers: { ...exposed.headers } }
}

const hello = (route: Route) =>
  fetch(`http://${route.host}:${route.port}${route.path}/hello`, {
    headers: { ...route.headers, connection: "close" }
  }).then((r) => r.text())

const measure = async (label: string, way: Route, direct: Route) => {
  const wsWay = await openWebSocket(way.host, way.port, `${way.path}/ws`, way.headers)
  const wsDirect = await openWebSocket(direct.host, direct.port, `${direct.path}/ws`, direct.headers)
  const [ww, wd]: [Array<number>, Array<number>] = [[], []]
  const payload = Buffer.alloc(32, 7)
  for (let i = 0; i < RUNS; i++) {
    for (const [ws, into] of [
      [wsWay, ww],
      [wsDirect, wd]
    ] as const) {
      const t0 = now()
      await ws.echo(payload)
      into.push(now() - t0)
    }
  }
  wsWay.close()
  wsDirect.close()
  const [w, d]: [Array<number>, Array<number>] = [[], []]
  for (let i = 0; i < RUNS; i++) {
    for (const [route, into] of [
      [way, w],
      [direct, d]
    ] as const) {
      const t0 = now()
      await hello(route)
      into.push(now() - t0)
    }
  }
  const ratio = (a: Array<number>, b: Array<number>) => (percentile(a, 50) / percentile(b, 50)).toFixed(2)
  console.log(
    `${label.padEnd(28)} GET p50 ${ms(percentile(w, 50))} vs direct ${ms(percentile(d, 50))} = ${ratio(w, d)}x | ` +
      `WebSocket p50 ${ms(percentile(ww, 50))} vs ${ms(percentile(wd, 50))} = ${ratio(ww, wd)}x`
  )
}

/** Starts the port server in `sb` (on `port`, else on $PORT, else on a free port) and reads its port. */
const serve = (sb: Sandbox.Sandbox, port?: number) =>
  Effect.flatMap(sb.spawn(["python3", "-u", PORT_SERVER, ...(port === undefined ? [] : [String(port)])]), (server) =>
    Effect.map(server.waitForOutput(LISTENING), (m) => Number(m.groups[0]))
  )

const onLocal = Effect.gen(function* () {
  const sb = yield* Sandbox.make({})
  const port = yield* serve(sb)
  const direct = routeOf({ url: `http://127.0.0.1:${port}`, headers: {}, via: "loopback" }, undefined)
  for (const via of ["direct", "server"] as const) {
    const exposed = yield* sb.expose(port, { via })
    yield* Effect.promise(() => measure(`local, ${exposed.via}`, routeOf(exposed, undefined), direct))
  }
}).pipe(Effect.scoped, Effect.provide(Live))

const onHf = Effect.gen(function* () {
  const emulator = yield* Testing.make({})
  // The suites' wiring: the provider on the emulator, and an HttpClient routed to it.
  const routed = emulatorLayer(emulator, false)
  yield* Effect.gen(function* () {
    // Proxy transport, port 8000 declared: the emulated job maps it to a free port here through PORT.
    const proxied = yield* Sandbox.make({ transport: "proxy", ports: [8000], env: { PORT: "8000" } })
    yield* serve(proxied)
    const mapped = (yield* emulator.job(proxied.id))!.ports["8000"]!
    const directProxied = routeOf({ url: `http://127.0.0.1:${mapped}`, headers: {}, via: "loopback" }, undefined)
    const exposed = yield* proxied.expose(8000)
    yield* Effect.promise(() =>
      measure(`HF proxy transport, ${exposed.via}`, routeOf(exposed, emulator), directProxied)
    )
    // Inside the emulated job, port 8000 is the mapped one: the server's port proxy is measured on a port
    // the job did not declare, as it is used.
    const free = yield* serve(proxied, 0)
    const viaServer = yield* proxied.expose(free, { via: "server" })
    const directFree = routeOf({ url: `http://127.0.0.1:${free}`, headers: {}, via: "loopback" }, undefined)
    yield* Effect.promise(() =>
      measure(`HF proxy transport, ${viaServer.via}`, routeOf(viaServer, emulator), directFree)
    )
    const tunnelled = yield* Sandbox.make({})
    const port = yield* serve(tunnelled)
    const directTunnelled = routeOf({ url: `http://127.0.0.1:${port}`, headers: {}, via: "loopback" }, undefined)
    for (const via of ["direct", "server"] as const) {
      const exposed = yield* tunnelled.expose(port, { via })
      yield* Effect.promise(() =>
        measure(`HF tunnel transport, ${exposed.via}`, routeOf(exposed, emulator), directTunnelled)
      )
    }
  }).pipe(Effect.scoped, Effect.provide(routed))
}).pipe(Effect.scoped)

Effect.runPromise(Effect.zipRight(onLocal, onHf)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
