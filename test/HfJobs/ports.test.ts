/**
 * Served ports on emulated HF Jobs, with the real HTTP + SSE + WebSocket port server started in the job:
 * `sb.expose(port)` gives the Jobs proxy host of a declared port (HF token), the port's own quick tunnel
 * with the tunnel transport (public), the sandbox server's port proxy with `via: "server"`, and a typed
 * refusal for an undeclared port behind the proxy transport.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Sandbox from "hf-sandbox/Sandbox"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Schedules from "hf-sandbox/Schedules"
import { emulator, jobOf } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { PORT_SERVER, wsEcho } from "../support/ports.js"
import { PYTHON } from "../support/server.js"

const LISTENING = /"event": "listening", "port": (\d+)/

const Env = Layer.merge(emulatedHub(), Schedules.layer(fastSchedules))

/** GET `path` of an exposure through the test's HttpClient (which routes emulated hosts to the emulator). */
const get = (exposed: SandboxProvider.Exposure, path: string) =>
  Effect.flatMap(HttpClient.HttpClient, (http) =>
    http.execute(HttpClientRequest.get(`${exposed.url}${path}`).pipe(HttpClientRequest.setHeaders(exposed.headers)))
  ).pipe(Effect.flatMap((response) => Effect.map(response.text, (text) => ({ status: response.status, text }))))

/** A WebSocket echo through an emulated host: to the emulator, with the host in its routing header. */
const wsThroughEmulator = (exposed: SandboxProvider.Exposure) =>
  Effect.flatMap(emulator, (emu) => {
    const url = new URL(exposed.url)
    return Effect.promise(() =>
      wsEcho(
        "127.0.0.1",
        Number(new URL(emu.url).port),
        `${url.pathname.replace(/\/$/, "")}/ws`,
        { ...exposed.headers, "x-emulator-host": url.hostname },
        ["ping over the edge"]
      )
    )
  })

const startPortServer = (sb: Sandbox.Sandbox, env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const server = yield* sb.spawn([PYTHON, "-u", PORT_SERVER], { env })
    const listening = yield* server.waitForOutput(LISTENING)
    return { server, port: Number(listening.groups[0]) }
  })

layer(Env, { excludeTestServices: true, timeout: "90 seconds" })("served ports (emulated HF Jobs)", (it) => {
  it.scoped("proxy transport: a declared port at its Jobs proxy host with the HF token; another is refused", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      // The emulated job maps its exposed port 8000 to a free one here, through the variable that names it.
      const sb = yield* Sandbox.make({ transport: "proxy", ports: [8000], env: { PORT: "8000" } })
      yield* startPortServer(sb, {})
      const exposed = yield* sb.expose(8000)
      assert.strictEqual(exposed.via, "proxy")
      assert.strictEqual(exposed.url, `https://${sb.id}--8000.hf.jobs`)
      assert.deepStrictEqual(exposed.headers, { authorization: `Bearer ${Redacted.value(emu.token)}` })
      const hello = yield* get(exposed, "/hello")
      assert.strictEqual(hello.status, 200)
      assert.match(hello.text, /^hello from \d+\n$/)
      const ws = yield* wsThroughEmulator(exposed)
      assert.strictEqual(ws.status, 101)
      assert.deepStrictEqual(ws.echoes.map(String), ["ping over the edge"])

      // The server counts traffic to the declared port as activity (the proxy's clients never reach it).
      const spec = (yield* jobOf(sb.id)).spec as { environment: Record<string, string> }
      assert.strictEqual(spec.environment.SBX_EXPOSED_PORTS, "8000")

      const refused = yield* Effect.flip(sb.expose(7860))
      assert.deepInclude(refused, { _tag: "PortError", reason: "NotDeclared", port: 7860 })
      assert.include(refused.message, "ports: [7860]")
      assert.include(refused.message, "ports [8000]")
    })
  )

  it.scoped("tunnel transport: any port gets its own quick tunnel; via the server works on every transport", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({})
      const { port, server } = yield* startPortServer(sb)
      yield* sb.waitForPort(port, { process: server })
      const exposed = yield* sb.expose(port)
      assert.strictEqual(exposed.via, "tunnel")
      assert.match(exposed.url, /^https:\/\/[a-z0-9-]+\.trycloudflare\.com$/)
      assert.deepStrictEqual(exposed.headers, {})
      assert.strictEqual((yield* get(exposed, "/hello")).text, `hello from ${port}\n`)
      assert.strictEqual((yield* sb.expose(port)).url, exposed.url, "one tunnel per port")
      const ws = yield* wsThroughEmulator(exposed)
      assert.deepStrictEqual(ws.echoes.map(String), ["ping over the edge"])

      const viaServer = yield* sb.expose(port, { via: "server" })
      assert.strictEqual(viaServer.via, "server")
      assert.match(viaServer.url, new RegExp(`/v1/proxy/${port}$`))
      assert.strictEqual((yield* get(viaServer, "/hello")).text, `hello from ${port}\n`)
    })
  )
})
