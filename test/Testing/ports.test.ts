/**
 * Served ports on emulated HF Jobs, with the real HTTP + SSE + WebSocket server of
 * test/support/portServer.py running in the job: the Jobs proxy's per-port host
 * (`https://<jobId>--<port>.hf.jobs`, HF token as bearer, `status.exposeUrls`), and a per-port quick
 * tunnel the in-sandbox server starts on demand (`POST /v1/ports/{port}/tunnel`) through the stand-in
 * cloudflared and the emulated edge, re-announced after cloudflared restarts. Jobs are created on the
 * Hub API directly: what is under test is the emulator and the server, not the client's `expose`.
 */
import { randomBytes } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Protocol from "hf-sandbox/Protocol"
import * as Testing from "hf-sandbox/testing"
import { parseMarker } from "../../src/internal/hfJobs/tunnel.js"
import { PORT_SERVER, PORT_SERVER_LISTENING, readSse, wsEcho } from "../support/ports.js"
import { pidsWithArg, until, waitNoneWithArg } from "../support/processes.js"
import { PYTHON, SERVER } from "../support/server.js"

type Emulator = Testing.HubEmulator

const PORT_MARKER = new RegExp(`^${Protocol.PORT_TUNNEL_MARKER} (\\{.*\\})$`)

const emuPort = (emu: Emulator) => Number(new URL(emu.url).port)

/** A request to an emulated host (proxy or edge), sent to the emulator with the routing header. */
const routed = (emu: Emulator, host: string, path: string, init: RequestInit = {}) =>
  fetch(`${emu.url}${path}`, {
    ...init,
    headers: { "x-emulator-host": host, ...(init.headers as Record<string, string> | undefined) }
  })

const createJob = async (emu: Emulator, spec: Record<string, unknown>) => {
  const res = await fetch(`${emu.url}/api/jobs/${emu.user}`, {
    method: "POST",
    headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
    body: JSON.stringify({ dockerImage: "python:3.12", flavor: "cpu-basic", ...spec })
  })
  const body = (await res.json()) as Record<string, unknown>
  if (res.status !== 200) throw new Error(`create: ${res.status} ${JSON.stringify(body)}`)
  return body as { id: string; status: { stage: string; exposeUrls?: Array<string> } }
}

/** Waits (bounded) until the job's log has a line matching `pattern`; returns its match. */
const logMatch = (emu: Emulator, id: string, pattern: RegExp, after = 0, ms = 30_000) => {
  let logs: ReadonlyArray<string> = []
  return until(
    () => `a log line ${pattern} in ${JSON.stringify(logs)}`,
    async () => {
      logs = (await Effect.runPromise(emu.job(id)))?.logs ?? []
      for (const line of logs.slice(after)) {
        const match = pattern.exec(line)
        if (match !== null) return match
      }
      return undefined
    },
    ms,
    50
  )
}

const logLength = async (emu: Emulator, id: string) => (await Effect.runPromise(emu.job(id)))?.logs.length ?? 0

describe("exposed ports through the emulated Jobs proxy", () => {
  it.scoped(
    "a job's exposed port serves HTTP, SSE and WebSocket at <jobId>--<port>.hf.jobs with the HF token",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.make()
        const token = Redacted.value(emu.token)
        yield* Effect.promise(async () => {
          const job = await createJob(emu, {
            command: [PYTHON, "-u", PORT_SERVER],
            // 8001 is exposed but nothing listens on it (mapped to a free loopback port, like 8000).
            environment: { PORT: "8000", UNUSED: "8001" },
            expose: { ports: [8000, 8001] }
          })
          const host = `${job.id}--8000.hf.jobs`
          await logMatch(emu, job.id, PORT_SERVER_LISTENING)
          const info = (await (
            await fetch(`${emu.url}/api/jobs/${emu.user}/${job.id}`, { headers: { authorization: `Bearer ${token}` } })
          ).json()) as { status: { exposeUrls: Array<string> } }
          assert.deepStrictEqual(info.status.exposeUrls, [`https://${host}`, `https://${job.id}--8001.hf.jobs`])
          const local = (await Effect.runPromise(emu.job(job.id)))!.ports["8000"]
          const auth = { authorization: `Bearer ${token}` }

          const hello = await routed(emu, host, "/hello", { headers: auth })
          assert.strictEqual(hello.status, 200)
          assert.strictEqual(await hello.text(), `hello from ${local}\n`)

          const sse = await routed(emu, host, "/sse", { headers: auth })
          const events = await readSse(sse, () =>
            routed(emu, host, "/release", { headers: auth }).then((r) => r.text())
          )
          assert.strictEqual(events.first, "event: one\ndata: first\n\n")
          assert.strictEqual(events.all, "event: one\ndata: first\n\nevent: two\ndata: second\n\n")

          const big = randomBytes(100_000)
          const ws = await wsEcho("127.0.0.1", emuPort(emu), "/ws", { "x-emulator-host": host, ...auth }, ["hi", big])
          assert.strictEqual(ws.status, 101)
          assert.isTrue(ws.acceptOk)
          assert.strictEqual(ws.echoes[0]!.toString(), "hi")
          assert.isTrue(ws.echoes[1]!.equals(big))
          assert.isTrue(ws.closedCleanly)

          // The proxy's refusals, for upgrades as for requests.
          assert.strictEqual((await routed(emu, host, "/hello")).status, 401)
          assert.strictEqual(
            (await wsEcho("127.0.0.1", emuPort(emu), "/ws", { "x-emulator-host": host }, [])).status,
            401
          )
          const other = `${job.id}--8002.hf.jobs`
          assert.strictEqual((await routed(emu, other, "/hello", { headers: auth })).status, 404)
          const refused = await wsEcho("127.0.0.1", emuPort(emu), "/ws", { "x-emulator-host": other, ...auth }, [])
          assert.strictEqual(refused.status, 404)
          const closed = `${job.id}--8001.hf.jobs`
          assert.strictEqual((await routed(emu, closed, "/hello", { headers: auth })).status, 502)
          const nobody = await wsEcho("127.0.0.1", emuPort(emu), "/ws", { "x-emulator-host": closed, ...auth }, [])
          assert.strictEqual(nobody.status, 502)
        })
      }),
    60_000
  )
})

describe("HF's client path: the server's /v1/proxy/{port} behind the Jobs proxy", () => {
  it.scoped(
    "proxy_url_for's URL (<jobId>--49983.hf.jobs/v1/proxy/{port}/…) with proxy_headers carries HTTP, SSE and WebSocket",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.make()
        const sandboxToken = randomBytes(32).toString("hex")
        yield* Effect.promise(async () => {
          const job = await createJob(emu, {
            command: ["sh", "-c", `"$0" -u "$1" 0 & exec "$0" -u -S "$2"`, PYTHON, PORT_SERVER, SERVER],
            environment: { SBX_PORT: "49983" },
            secrets: { SBX_TOKEN: sandboxToken },
            expose: { ports: [49983] }
          })
          const port = Number((await logMatch(emu, job.id, PORT_SERVER_LISTENING))[1])
          await logMatch(emu, job.id, /"event":"listening"/)
          const host = `${job.id}--49983.hf.jobs`
          // huggingface_hub's Sandbox.proxy_headers: the HF token for the Jobs proxy, the sandbox token for the server.
          const headers = { authorization: `Bearer ${Redacted.value(emu.token)}`, "x-sandbox-token": sandboxToken }
          const hello = await routed(emu, host, `/v1/proxy/${port}/hello`, { headers })
          assert.strictEqual(await hello.text(), `hello from ${port}\n`)
          const sse = await routed(emu, host, `/v1/proxy/${port}/sse`, { headers })
          const events = await readSse(sse, () =>
            routed(emu, host, `/v1/proxy/${port}/release`, { headers }).then((r) => r.text())
          )
          assert.strictEqual(events.all, "event: one\ndata: first\n\nevent: two\ndata: second\n\n")
          const ws = await wsEcho(
            "127.0.0.1",
            emuPort(emu),
            `/v1/proxy/${port}/ws`,
            { "x-emulator-host": host, ...headers },
            ["nested", randomBytes(70_000)]
          )
          assert.strictEqual(ws.status, 101)
          assert.strictEqual(ws.echoes[0]!.toString(), "nested")
          assert.strictEqual(ws.echoes[1]!.length, 70_000)
          assert.isTrue(ws.closedCleanly)
          // Without the sandbox token the server refuses, behind the proxy as in front of it.
          const bare = await routed(emu, host, `/v1/proxy/${port}/hello`, {
            headers: { authorization: headers.authorization }
          })
          assert.strictEqual(bare.status, 403)
        })
      }),
    60_000
  )
})

describe("per-port quick tunnels (POST /v1/ports/{port}/tunnel)", () => {
  it.scoped(
    "the server starts one tunnel per port on demand, idempotent, announced, followed after a restart",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.make()
        const sandboxToken = randomBytes(32).toString("hex")
        yield* Effect.promise(async () => {
          const job = await createJob(emu, {
            command: [
              "sh",
              "-c",
              `"$0" -u "$1" 0 & exec "$0" -u -S "$2" --port 0 --tunnel`,
              PYTHON,
              PORT_SERVER,
              SERVER
            ],
            secrets: { SBX_TOKEN: sandboxToken },
            environment: { SBX_TUNNEL_BACKOFF: "0.05" }
          })
          const port = Number((await logMatch(emu, job.id, PORT_SERVER_LISTENING))[1])
          const main = new URL((await logMatch(emu, job.id, /^HF_SANDBOX_TUNNEL \{"url":"([^"]+)"\}$/))[1]!).host
          const sbx = { "x-sandbox-token": sandboxToken }
          let last = ""
          const askTunnel = () =>
            until(
              () => `port ${port}'s tunnel from POST /v1/ports/${port}/tunnel; last answer: ${last}`,
              async () => {
                const res = await routed(emu, main, `/v1/ports/${port}/tunnel`, { method: "POST", headers: sbx })
                const body = (await res.json()) as { url?: string; state?: string; code?: string }
                if (res.status === 200) return body as { port: number; state: string; url: string }
                last = `${res.status} ${JSON.stringify(body)}`
                // 530 while the edge warms up to the main tunnel; 503 while the port's tunnel starts.
                if (res.status !== 530 && res.status !== 503) throw new Error(`tunnel: ${last}`)
                return undefined
              },
              30_000,
              100
            )

          const first = await askTunnel()
          assert.strictEqual(first.port, port)
          assert.strictEqual(first.state, "ready")
          assert.match(first.url, /^https:\/\/[a-z]+-[a-z]+-[a-z]+-[a-z]+\.trycloudflare\.com$/)
          assert.deepStrictEqual(await askTunnel(), first) // idempotent: the same tunnel
          assert.deepStrictEqual(Schema.decodeUnknownSync(Protocol.PortTunnel)(first), { ...first, state: "ready" })
          const marker = await logMatch(emu, job.id, PORT_MARKER)
          assert.deepStrictEqual(JSON.parse(marker[1]!), { port, url: first.url })
          // The client following the server's own URL never takes a port's marker for it.
          assert.isTrue(Option.isNone(parseMarker(marker[0])))
          const probe = (await (await routed(emu, main, `/v1/ports/${port}`, { headers: sbx })).json()) as Record<
            string,
            unknown
          >
          assert.deepStrictEqual(probe, { port, listening: true, connections: 0, tunnel: first.url })

          const host = new URL(first.url).host
          assert.strictEqual(await (await routed(emu, host, "/hello")).text(), `hello from ${port}\n`)
          // Over POST: the edge holds a GET response's body until it ends (cloudflared#1449).
          const sse = await routed(emu, host, "/sse", { method: "POST" })
          const events = await readSse(sse, () => routed(emu, host, "/release").then((r) => r.text()))
          assert.strictEqual(events.first, "event: one\ndata: first\n\n")
          assert.strictEqual(events.all, "event: one\ndata: first\n\nevent: two\ndata: second\n\n")
          const ws = await wsEcho("127.0.0.1", emuPort(emu), "/ws", { "x-emulator-host": host }, ["through", "edge"])
          assert.strictEqual(ws.status, 101)
          assert.deepStrictEqual(
            ws.echoes.map((b) => b.toString()),
            ["through", "edge"]
          )

          // cloudflared dies (both of the job's): the port's tunnel is restarted with a new URL, re-announced.
          const before = await logLength(emu, job.id)
          await Effect.runPromise(emu.killTunnel(job.id))
          const again = await logMatch(emu, job.id, PORT_MARKER, before)
          const next = JSON.parse(again[1]!) as { port: number; url: string }
          assert.strictEqual(next.port, port)
          assert.notStrictEqual(next.url, first.url)
          const mainAgain = new URL(
            (await logMatch(emu, job.id, /^HF_SANDBOX_TUNNEL \{"url":"([^"]+)"\}$/, before))[1]!
          )
          const current = await until(
            () => `GET /v1/ports/${port}/tunnel through the new main tunnel to answer 200; last: ${last}`,
            async () => {
              const res = await routed(emu, mainAgain.host, `/v1/ports/${port}/tunnel`, { headers: sbx })
              if (res.status === 200) return (await res.json()) as { url: string }
              last = `${res.status} ${await res.text()}`
              return undefined
            },
            30_000,
            100
          )
          assert.strictEqual(current.url, next.url)
          const res = await routed(emu, new URL(next.url).host, "/hello")
          assert.strictEqual(await res.text(), `hello from ${port}\n`)

          // The tunnels stop with the server: its shutdown ends the port's cloudflared (`--url <origin>`).
          const origin = `http://127.0.0.1:${port}`
          if (process.platform === "linux") assert.isAbove(pidsWithArg(origin).length, 0)
          const bye = await routed(emu, mainAgain.host, "/v1/shutdown", { method: "POST", headers: sbx })
          assert.strictEqual(bye.status, 202)
          assert.deepStrictEqual(await waitNoneWithArg(origin, 10_000), [])
          await logMatch(emu, job.id, /stopped: exit status 0/)
        })
      }),
    90_000
  )
})
