/**
 * The server's `/v1/metrics`: one sample in the field names of the HF Jobs metrics stream, or (follow)
 * NDJSON until the client goes; CPU of the server's process family, memory, and GPUs read from
 * `nvidia-smi` (a stand-in on PATH prints what the real one prints for the query).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { withTimeout } from "../support/processes.js"
import { type Running, startServer, stopServer } from "../support/server.js"

const servers: Array<Running> = []
const dirs: Array<string> = []

afterAll(async () => {
  await Promise.all(servers.map(stopServer))
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
})

const start = async (env: Record<string, string> = {}) => {
  const server = await startServer({ env, prefix: "sbx-metrics-" })
  servers.push(server)
  return server
}

const get = (server: Running, query: string, init: RequestInit = {}) =>
  fetch(`${server.base}/v1/metrics${query}`, { ...init, headers: { "X-Sandbox-Token": server.token } })

const FIELDS = ["cpu_usage_pct", "cpu_millicores", "memory_used_bytes", "memory_total_bytes", "rx_bps", "tx_bps"]

const expectSample = (sample: Record<string, unknown>) => {
  for (const field of FIELDS) {
    expect(Number.isInteger(sample[field]), field).toBe(true)
    expect(sample[field] as number, field).toBeGreaterThanOrEqual(0)
  }
  expect(sample.cpu_usage_pct as number).toBeLessThanOrEqual(100)
  expect(sample.cpu_millicores as number).toBeGreaterThan(0)
  expect(sample.memory_total_bytes as number).toBeGreaterThan(0)
  expect(sample.memory_used_bytes as number).toBeGreaterThan(0)
  expect(typeof sample.gpus).toBe("object")
}

describe("/v1/metrics", () => {
  it("answers one sample in the Jobs metrics' field names, and refuses a bad interval or a missing token", async () => {
    const server = await start()
    const res = await get(server, "?interval=0.2")
    expect(res.status).toBe(200)
    const sample = (await res.json()) as Record<string, unknown>
    expectSample(sample)
    const bad = await get(server, "?interval=0")
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: string }).error).toMatch(
      /`interval` must be a non-negative decimal number of seconds such as 30 or 0.5 from 0.1 to 3600/
    )
    const anonymous = await fetch(`${server.base}/v1/metrics`)
    expect(anonymous.status).toBe(403)
  })

  it("counts the CPU of the server's processes: a busy loop it started shows", async () => {
    const server = await start()
    const spawned = await fetch(`${server.base}/v1/processes`, {
      method: "POST",
      headers: { "X-Sandbox-Token": server.token, "content-type": "application/json" },
      body: JSON.stringify({ cmd: ["python3", "-c", "while True: pass"] })
    })
    expect(spawned.status).toBe(200)
    const sample = (await (await get(server, "?interval=1")).json()) as Record<string, number>
    expectSample(sample)
    expect(sample.cpu_usage_pct).toBeGreaterThan(0)
  })

  it("streams NDJSON samples with follow (POST too), and reads GPUs from nvidia-smi", async () => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-metrics-bin-"))
    dirs.push(bin)
    // What `nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits`
    // prints on a two-GPU machine.
    fs.writeFileSync(
      path.join(bin, "nvidia-smi"),
      "#!/bin/sh\n" +
        'echo "GPU-882fa930-1b2c-3d4e-5f60-718293a4b5c6, 37, 1024, 22836"\n' +
        'echo "GPU-d901cd7f-0000-1111-2222-333344445555, [N/A], 0, 22836"\n',
      { mode: 0o755 }
    )
    const server = await start({ PATH: `${bin}:${process.env.PATH ?? ""}` })
    const controller = new AbortController()
    const res = await get(server, "?interval=0.1&follow=1", { method: "POST", signal: controller.signal })
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("application/x-ndjson")
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    while (text.split("\n").length < 3) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
    controller.abort()
    const lines = text.split("\n").slice(0, 2)
    expect(lines).toHaveLength(2)
    for (const line of lines) {
      const sample = JSON.parse(line) as Record<string, unknown>
      expectSample(sample)
      expect(sample.gpus).toEqual({
        "882fa930": { utilization: 37, memory_used_bytes: 1024 * 1024 * 1024, memory_total_bytes: 22836 * 1024 * 1024 },
        d901cd7f: { utilization: 0, memory_used_bytes: 0, memory_total_bytes: 22836 * 1024 * 1024 }
      })
    }
  })

  it("a stream of samples does not hold off the idle timeout: watching is not using", async () => {
    const server = await startServer({ args: ["--idle-timeout", "1"], prefix: "sbx-metrics-" })
    servers.push(server)
    const res = await get(server, "?interval=0.1&follow=1", { method: "POST" })
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    const drained = (async () => {
      try {
        while (!(await reader.read()).done) {}
      } catch {
        // cut when the server exits
      }
    })()
    expect(await withTimeout(server.exited, 20_000)).toEqual({ code: 0, signal: null })
    await withTimeout(server.drained, 5_000)
    expect(server.stderr()).toMatch(/idle/)
    await drained
  })
})
