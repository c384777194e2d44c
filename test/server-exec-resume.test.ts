/**
 * Execs that outlive their connection (`docs/protocol.md`, "Process semantics"): every exec is a
 * record of the process table with an id, addressable on `/v1/processes/{id}/…`; it survives a
 * dropped connection for the reattach grace, is paused by back-pressure meanwhile, resumes from byte
 * offsets, and answers a retried request with the same idempotency key. Run against the real
 * `rpc-server/server.py` over loopback HTTP with Node built-ins and `fetch` only.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { isAlive, waitGone } from "./support/processes.js"
import {
  type Event,
  parseNdjson,
  type Running,
  readEventsUntil,
  started,
  startServer,
  stopServer
} from "./support/server.js"

/** Every pid a test saw start: all must be gone once the servers are stopped. */
const seenPids = new Set<number>()

afterAll(async () => {
  for (const r of started) {
    expect(await stopServer(r)).toEqual({ code: 0, signal: null })
  }
  expect(await waitGone([...seenPids])).toEqual([])
})

const call = (r: Running, route: string, init: RequestInit = {}) =>
  fetch(r.base + route, { ...init, headers: { "X-Sandbox-Token": r.token } })

const json = async (r: Running, route: string, init: RequestInit = {}) => {
  const res = await call(r, route, init)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & Array<Record<string, unknown>> }
}

const events = async (r: Running, route: string, init: RequestInit = {}) => {
  const res = await call(r, route, init)
  expect(res.status, route).toBe(200)
  return parseNdjson(await res.text())
}

/** Starts an exec and reads until `until` holds; the stream stays open for the caller. */
const openExec = async (
  r: Running,
  body: Record<string, unknown>,
  until: (events: ReadonlyArray<Event>) => boolean
) => {
  const controller = new AbortController()
  const res = await call(r, "/v1/exec", { method: "POST", body: JSON.stringify(body), signal: controller.signal })
  expect(res.status).toBe(200)
  const reader = res.body!.getReader()
  const seen = await readEventsUntil<Event>(reader, until)
  const start = seen[0]!
  expect(start).toEqual({ event: "start", id: expect.stringMatching(/^e-\d+$/), pid: expect.any(Number) })
  seenPids.add(start.pid as number)
  return { events: seen, id: start.id as string, pid: start.pid as number, controller, reader }
}

const text = (evs: ReadonlyArray<Event>, name: string) =>
  evs
    .filter((e) => e.event === name)
    .map((e) => e.data as string)
    .join("")

const bytes = (evs: ReadonlyArray<Event>, name: string) =>
  Buffer.concat(evs.filter((e) => e.event === name).map((e) => Buffer.from(e.data as string, "base64")))

/** A FIFO in the server's directory that a command blocks on until the test writes a line to it. */
const gate = (r: Running, name: string) => {
  const file = path.join(r.dir, name)
  execFileSync("mkfifo", [file])
  return { file, open: () => fs.writeFileSync(file, "go\n") }
}

describe("every exec has an id", () => {
  it("is registered with kind exec and addressable on /v1/processes/{id}: info, output, wait, kill", async () => {
    const S = await startServer({ prefix: "sbx-exec-id-" })
    const g = gate(S, "g1")
    const x = await openExec(S, { cmd: `echo before; read l < ${g.file}; echo after; sleep 30` }, (seen) =>
      seen.some((e) => e.event === "stdout")
    )
    expect(text(x.events, "stdout")).toBe("before\n")

    const info = await json(S, `/v1/processes/${x.id}`)
    expect(info).toEqual({
      status: 200,
      body: {
        id: x.id,
        kind: "exec",
        pid: x.pid,
        cmd: expect.any(String),
        tag: null,
        started_at_ms: expect.any(Number),
        running: true,
        exit_code: null,
        signal: null
      }
    })
    expect((await json(S, `/v1/processes/${x.pid}`)).body.id).toBe(x.id)
    // The plain list keeps showing background processes only.
    expect((await json(S, "/v1/processes")).body).toEqual([])
    expect((await json(S, "/v1/processes?kind=all")).body.map((p) => p.id)).toEqual([x.id])
    expect((await json(S, "/v1/processes?kind=exec")).body.map((p) => p.id)).toEqual([x.id])
    expect((await json(S, "/v1/processes?kind=nope")).status).toBe(400)

    // A second reader sees what is buffered.
    expect(text(await events(S, `/v1/processes/${x.id}/output`), "stdout")).toBe("before\n")
    g.open()
    const more = await readEventsUntil<Event>(x.reader, (seen) => text(seen, "stdout").includes("after"))
    expect(text(more, "stdout")).toBe("after\n")

    // Killing it by id ends the exec's own stream with the signal, and wait reports it.
    expect(await json(S, `/v1/processes/${x.id}?signal=KILL`, { method: "DELETE" })).toEqual({
      status: 200,
      body: { id: x.id, killed: true }
    })
    const rest = await readEventsUntil<Event>(x.reader, () => false)
    expect(rest.at(-1)).toMatchObject({ event: "exit", exit_code: null, signal: 9 })
    expect((await json(S, `/v1/processes/${x.id}/wait`, { method: "POST" })).body).toMatchObject({ signal: 9 })
    expect(await waitGone([x.pid])).toEqual([])
  })

  it("rejects a bad buffer_bytes on exec like on background processes", async () => {
    const S = started[0] ?? (await startServer({ prefix: "sbx-exec-id-" }))
    for (const buffer_bytes of [0, -1, 1.5, true, "8", 64 * 1024 * 1024 + 1]) {
      const res = await call(S, "/v1/exec", { method: "POST", body: JSON.stringify({ cmd: "true", buffer_bytes }) })
      expect(res.status, String(buffer_bytes)).toBe(400)
      expect(((await res.json()) as Record<string, unknown>).error).toMatch(/`buffer_bytes` must be an integer/)
    }
  })
})
