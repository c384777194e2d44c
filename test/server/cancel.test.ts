/**
 * Cancelling by idempotency key (`DELETE /v1/processes?idempotency_key=K`, docs/protocol.md): a client
 * interrupted before its exec or spawn answered knows only the key it sent. Cancelling kills what the
 * key started and spends the key, so that a request still on its way starts nothing. Run against the
 * real `rpc-server/sbx_server` over loopback HTTP with Node built-ins and `fetch` only.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { waitGone } from "../support/processes.js"
import { parseNdjson, type Running, started, startServer, stopServer } from "../support/server.js"

const seenPids = new Set<number>()

afterAll(async () => {
  for (const r of started) {
    expect(await stopServer(r)).toEqual({ code: 0, signal: null })
  }
  expect(await waitGone([...seenPids])).toEqual([])
})

const request = async (r: Running, method: string, route: string, body?: unknown) => {
  const res = await fetch(r.base + route, {
    method,
    headers: { "X-Sandbox-Token": r.token },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  return { status: res.status, text: await res.text() }
}

const cancel = async (r: Running, key: string) => {
  const res = await request(r, "DELETE", `/v1/processes?idempotency_key=${encodeURIComponent(key)}&signal=KILL`)
  return { status: res.status, body: JSON.parse(res.text) as Record<string, unknown> }
}

/** Waits until a file of the server's directory holds a pid. */
const pidIn = async (r: Running, name: string) => {
  const file = path.join(r.dir, name)
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : ""
    if (/^\d+\n$/.test(text)) return Number(text)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe("DELETE /v1/processes?idempotency_key=", () => {
  // One server for the file: every test uses keys of its own.
  let S: Running
  beforeAll(async () => {
    S = await startServer({ prefix: "sbx-cancel-" })
  })

  it("kills the whole family of the exec a key started, whose caller never saw its start event", async () => {
    const controller = new AbortController()
    const cmd = "sleep 30 & echo $! > child.pid; echo $$ > shell.pid; wait"
    // The caller gives up without reading a byte of the answer.
    void fetch(`${S.base}/v1/exec`, {
      method: "POST",
      headers: { "X-Sandbox-Token": S.token },
      body: JSON.stringify({ cmd, idempotency_key: "gone-1" }),
      signal: controller.signal
    }).catch(() => {})
    const pids = [await pidIn(S, "shell.pid"), await pidIn(S, "child.pid")]
    for (const pid of pids) seenPids.add(pid)
    controller.abort()
    const answer = await cancel(S, "gone-1")
    expect(answer).toEqual({ status: 200, body: { id: expect.stringMatching(/^e-/), killed: true } })
    // With KILL the answer comes once every member is gone (reaped, or a zombie of ours).
    expect(await waitGone(pids)).toEqual([])
    // The spent key starts nothing more.
    const retry = await request(S, "POST", "/v1/exec", { cmd, idempotency_key: "gone-1" })
    expect(retry.status).toBe(409)
  })

  it("spends a key no request has brought yet: a request that arrives later with it starts nothing", async () => {
    expect(await cancel(S, "late-1")).toEqual({ status: 200, body: { id: null, killed: false } })
    for (const route of ["/v1/exec", "/v1/processes"]) {
      const late = await request(S, "POST", route, { cmd: "echo ran >> ran.txt", idempotency_key: "late-1" })
      expect(late.status, route).toBe(409)
      expect(JSON.parse(late.text)).toEqual({
        error: expect.stringContaining("'late-1' was cancelled by its client: use a new key"),
        code: "idempotency_cancelled"
      })
    }
    expect(fs.existsSync(path.join(S.dir, "ran.txt"))).toBe(false)
    // Other keys are untouched.
    const other = await request(S, "POST", "/v1/exec", { cmd: "echo ok", idempotency_key: "late-2" })
    expect(parseNdjson(other.text).find((e) => e.event === "exit")).toMatchObject({ exit_code: 0 })
  })

  it("cancels a keyed background process too, and checks the key", async () => {
    const spawned = await request(S, "POST", "/v1/processes", { cmd: "sleep 30", idempotency_key: "bg-1" })
    const info = JSON.parse(spawned.text) as { id: string; pid: number }
    seenPids.add(info.pid)
    expect(await cancel(S, "bg-1")).toEqual({ status: 200, body: { id: info.id, killed: true } })
    expect(await waitGone([info.pid])).toEqual([])
    for (const key of ["", "a b", "x".repeat(129)]) {
      const bad = await cancel(S, key)
      expect(bad.status, JSON.stringify(key)).toBe(400)
    }
    const missing = await request(S, "DELETE", "/v1/processes")
    expect(missing.status).toBe(400)
  })
})
