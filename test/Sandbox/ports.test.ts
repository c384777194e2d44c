/**
 * Served ports on the local provider, with the real HTTP + SSE + WebSocket server of
 * test/support/portServer.py started in the sandbox: `waitForOutput` finds the port it bound,
 * `waitForPort` sees it listen, `expose` reaches it directly (loopback) and through the sandbox
 * server's port proxy; the failures say what the serving process printed.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import { localLayer } from "../support/local.js"
import { closedPort, PORT_SERVER, readSse, wsEcho } from "../support/ports.js"
import { PYTHON } from "../support/server.js"

const LISTENING = /"event": "listening", "port": (\d+)/

/** HTTP, SSE and a WebSocket echo through one exposure of the port server. */
const exercise = (exposed: SandboxProvider.Exposure, port: number) =>
  Effect.promise(async () => {
    const get = (path: string) => fetch(`${exposed.url}${path}`, { headers: exposed.headers })
    assert.strictEqual(await (await get("/hello")).text(), `hello from ${port}\n`)
    const sse = await readSse(await get("/sse"), () => get("/release"))
    assert.include(sse.first, "event: one")
    assert.include(sse.all, "event: two\ndata: second")
    const url = new URL(exposed.url)
    const ws = await wsEcho(url.hostname, Number(url.port), `${url.pathname.replace(/\/$/, "")}/ws`, exposed.headers, [
      "hi",
      Buffer.from([0, 1, 2, 255])
    ])
    assert.strictEqual(ws.status, 101)
    assert.isTrue(ws.acceptOk)
    assert.deepStrictEqual(
      ws.echoes.map((b) => [...b]),
      [[...Buffer.from("hi")], [0, 1, 2, 255]]
    )
    assert.isTrue(ws.closedCleanly)
  })

layer(localLayer(), { excludeTestServices: true, timeout: "60 seconds" })("served ports (local provider)", (it) => {
  it.scoped("waitForOutput finds the port, waitForPort sees it listen, expose reaches it both ways", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({})
      const server = yield* sb.spawn([PYTHON, "-u", PORT_SERVER])
      const listening = yield* server.waitForOutput(LISTENING)
      assert.strictEqual(listening.stream, "stdout")
      const port = Number(listening.groups[0])
      yield* sb.waitForPort(port, { process: server })

      const direct = yield* sb.expose(port)
      assert.deepStrictEqual(direct, { url: `http://127.0.0.1:${port}`, headers: {}, via: "loopback" })
      yield* exercise(direct, port)

      const viaServer = yield* sb.expose(port, { via: "server" })
      assert.strictEqual(viaServer.via, "server")
      assert.match(viaServer.url, new RegExp(`^http://127\\.0\\.0\\.1:\\d+/v1/proxy/${port}$`))
      assert.containsAllKeys(viaServer.headers, ["x-sandbox-token"])
      yield* exercise(viaServer, port)
    })
  )

  it.scoped("a server that ends before it listens: waitForPort fails at once, with what it printed", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({})
      const port = yield* Effect.promise(closedPort)
      const proc = yield* sb.spawn("echo 'bind: address already in use' >&2; exit 3")
      const error = yield* Effect.flip(sb.waitForPort(port, { process: proc, timeout: "5 minutes" }))
      assert.strictEqual(error._tag, "PortError")
      if (error._tag !== "PortError") return
      assert.strictEqual(error.reason, "NotListening")
      assert.include(error.message, `process ${proc.id} ended (exit code 3) first`)
      assert.include(error.tail ?? "", "bind: address already in use")
    })
  )

  it.scoped("waitForOutput: the process ends without the pattern, or the bound passes; either says what it saw", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({})
      const ended = yield* sb.spawn("echo starting; echo oops >&2; exit 1")
      const exited = yield* Effect.flip(ended.waitForOutput("ready on"))
      assert.strictEqual(exited._tag, "OutputWaitError")
      if (exited._tag !== "OutputWaitError") return
      assert.deepInclude(exited, { reason: "Exited", detail: "exit code 1", pattern: '"ready on"' })
      assert.include(exited.tail, "starting")
      assert.include(exited.tail, "oops")

      const quiet = yield* sb.spawn("echo waiting; exec sleep 30")
      const timedOut = yield* Effect.flip(quiet.waitForOutput(/ready/, { timeout: "200 millis" }))
      assert.deepInclude(timedOut, { _tag: "OutputWaitError", reason: "Timeout", tail: "waiting" })
      // Output printed before the wait counts; a global RegExp is tested from the start every time.
      const pattern = /wait(ing)/g
      assert.deepStrictEqual(yield* quiet.waitForOutput(pattern), {
        stream: "stdout",
        text: "waiting",
        groups: ["ing"]
      })
      assert.deepStrictEqual((yield* quiet.waitForOutput(pattern)).text, "waiting")
      yield* quiet.kill()
    })
  )

  it.scoped("bad ports and ways are refused, naming them", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({})
      for (const port of [0, 65536, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(sb.expose(port))
        assert.deepInclude(error, { _tag: "InvalidArgumentError", operation: "expose", argument: "port" })
        const waited = yield* Effect.flip(sb.waitForPort(port))
        assert.deepInclude(waited, { _tag: "InvalidArgumentError", operation: "waitForPort", argument: "port" })
      }
      const via = yield* Effect.flip(sb.expose(8000, { via: "sideways" as "server" }))
      assert.deepInclude(via, { _tag: "InvalidArgumentError", argument: "via" })
      const timeout = yield* Effect.flip(sb.waitForPort(8000, { timeout: "soon" as "1 second" }))
      assert.deepInclude(timeout, { _tag: "InvalidArgumentError", argument: "timeout" })
    })
  )
})
