/**
 * Streamed stdin, end to end: the quick-tunnel edge as the real one treats request bodies (held until
 * complete, refused over 100 MB), and commands fed through it by the library (`exec`, `execStream`,
 * `spawn` with `stdin` as bytes or a Stream, `process.stdin`).
 */
import { createHash, randomBytes } from "node:crypto"
import * as http from "node:http"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"
import { fakeDns } from "./support/fakeDns.js"
import { emulatorLayer, fastSchedules } from "./support/hub.js"

const Env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const dns = yield* fakeDns({})
    const emulator = yield* Testing.make({ schedulingDelay: "100 millis" })
    return emulatorLayer(emulator, [dns.server])
  })
)

const emulator = Testing.HubEmulatorService

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

/**
 * A `POST /v1/exec` straight to the emulated edge of `tunnelUrl`, its body written part by part as given;
 * resolves with the answer as soon as it has come (the rest of the body may be unsent).
 */
const rawEdgeRequest = (
  emu: Testing.HubEmulator,
  tunnelUrl: string,
  headers: Record<string, string>,
  parts: ReadonlyArray<Buffer>
) =>
  Effect.async<{ status: number; headers: http.IncomingHttpHeaders; body: string }, Error>((resume) => {
    const url = new URL(emu.url)
    const req = http.request({
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: "/v1/exec",
      headers: { ...headers, "x-emulator-host": new URL(tunnelUrl).hostname, "content-type": "application/json" }
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resume(
          Effect.succeed({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() })
        )
      )
    })
    req.on("error", (error) => resume(Effect.fail(error)))
    req.flushHeaders()
    const write = (i: number): void => {
      if (req.destroyed) return
      if (i === parts.length) {
        if (headers["content-length"] === undefined) req.end()
        return
      }
      if (req.write(parts[i]!)) write(i + 1)
      else req.once("drain", () => write(i + 1))
    }
    write(0)
    return Effect.sync(() => req.destroy())
  })

/** The URL the newest job announced (its marker line), as the client found it. */
const currentTunnelUrl = (emu: Testing.HubEmulator) =>
  Effect.map(emu.jobs, (jobs) => {
    const marker = jobs[jobs.length - 1]!.logs.findLast((line) => line.startsWith("HF_SANDBOX_TUNNEL "))!
    return (JSON.parse(marker.slice("HF_SANDBOX_TUNNEL ".length)) as { url: string }).url
  })

layer(Env, { excludeTestServices: true, timeout: "120 seconds" })("stdin through a quick tunnel", (it) => {
  it.effect("the edge refuses a request body over 100 MB with Cloudflare's 413 page; the origin never sees it", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      yield* Sandbox.make({ schedules: fastSchedules })
      const tunnelUrl = yield* currentTunnelUrl(emu)
      // Announced too large: refused before a byte of the body is read.
      const announced = yield* rawEdgeRequest(emu, tunnelUrl, { "content-length": "100000001" }, [])
      assert.strictEqual(announced.status, 413)
      assert.strictEqual(announced.headers.server, "cloudflare")
      assert.include(announced.body, "<title>413 Request Entity Too Large</title>")
      assert.include(announced.body, "<center>cloudflare</center>")
      // Streamed (chunked) with no length: refused once it passes 100 MB.
      const chunk = Buffer.alloc(1_000_000)
      const parts = Array.from({ length: 101 }, () => chunk)
      const streamed = yield* rawEdgeRequest(emu, tunnelUrl, { "transfer-encoding": "chunked" }, parts)
      assert.strictEqual(streamed.status, 413)
      // A body within the limit reaches the server, whole, with its length (the token is missing: 403).
      const within = yield* rawEdgeRequest(emu, tunnelUrl, { "transfer-encoding": "chunked" }, [chunk, chunk])
      assert.strictEqual(within.status, 403)
      assert.include(within.body, '"code":"auth"')
    }).pipe(Effect.scoped)
  )

  it.effect("exec with 120 MB of stdin through a tunnel sandbox: every byte reaches the command", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ schedules: fastSchedules })
      const input = randomBytes(120 * 1024 * 1024)
      const result = yield* sb.exec(["sha256sum"], { stdin: input })
      assert.strictEqual(result.exitCode, 0, result.stderr)
      assert.strictEqual(result.stdout.split(" ")[0], sha256(input))
    }).pipe(Effect.scoped)
  )
})
