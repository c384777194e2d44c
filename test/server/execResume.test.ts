/**
 * Execs that outlive their connection (`docs/protocol.md`, "Process semantics"): every exec is a
 * record of the process table with an id, addressable on `/v1/processes/{id}/…`; it survives a
 * dropped connection for the reattach grace, is paused by back-pressure meanwhile, resumes from byte
 * offsets, and answers a retried request with the same idempotency key. Run against the real
 * `rpc-server/sbx_server` over loopback HTTP with Node built-ins and `fetch` only.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { until, waitGone, withTimeout } from "../support/processes.js"
import {
  type Event,
  parseNdjson,
  type Running,
  readEventsUntil,
  spawnServer,
  started,
  startServer,
  stopServer
} from "../support/server.js"

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

describe.concurrent("ack_window", () => {
  it("sends no more than the window past the client's acknowledgements; each ack lets it go on", async () => {
    const S = await startServer({ prefix: "sbx-exec-ack-" })
    const total = 1024 * 1024
    const window = 65536
    const res = await call(S, "/v1/exec", {
      method: "POST",
      body: JSON.stringify({ cmd: ["head", "-c", String(total), "/dev/zero"], encoding: "base64", ack_window: window })
    })
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let buffered = ""
    let id = ""
    let received = 0
    let acked = 0
    let acks = 0
    let exit: Event | undefined
    while (exit === undefined) {
      const { value, done } = await reader.read()
      if (done) break
      buffered += decoder.decode(value, { stream: true })
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const event = JSON.parse(buffered.slice(0, nl)) as Event
        buffered = buffered.slice(nl + 1)
        if (event.event === "start") {
          id = event.id as string
          seenPids.add(event.pid as number)
        } else if (event.event === "stdout") {
          received += Buffer.from(event.data as string, "base64").length
          // The server's side of the bound: never a byte past the acknowledged offset plus the window.
          expect(received).toBeLessThanOrEqual(acked + window)
          if (received - acked === window) {
            const ack = await json(S, `/v1/processes/${id}/ack?stdout_offset=${received}`, { method: "POST" })
            expect(ack).toEqual({ status: 200, body: { id, stdout_offset: received, stderr_offset: 0 } })
            acked = received
            acks += 1
          }
        } else if (event.event === "exit") exit = event
      }
    }
    expect(received).toBe(total)
    expect(exit).toMatchObject({ event: "exit", exit_code: 0 })
    // Without its acknowledgements the stream would have stopped at the first window.
    expect(acks).toBe(total / window)
  })

  it("rejects a bad ack_window, and an ack past what was written or of an unknown command", async () => {
    const S = started[0] ?? (await startServer({ prefix: "sbx-exec-id-" }))
    for (const ack_window of [0, -1, 1.5, true, "8", 64 * 1024 * 1024 + 1]) {
      const res = await call(S, "/v1/exec", { method: "POST", body: JSON.stringify({ cmd: "true", ack_window }) })
      expect(res.status, String(ack_window)).toBe(400)
      expect(((await res.json()) as Record<string, unknown>).error).toMatch(/`ack_window` must be an integer/)
    }
    const done = await events(S, "/v1/exec", {
      method: "POST",
      body: JSON.stringify({ cmd: "printf abc", ack_window: 3 })
    })
    const id = done[0]!.id as string
    expect(text(done, "stdout")).toBe("abc")
    const past = await json(S, `/v1/processes/${id}/ack?stdout_offset=4`, { method: "POST" })
    expect(past.status).toBe(400)
    expect(past.body.error).toMatch(/stdout_offset=4 is past the 3 bytes/)
    expect((await json(S, "/v1/processes/e-999999/ack?stdout_offset=0", { method: "POST" })).status).toBe(404)
  })
})

/** Reads a whole `/v1/exec`-like answer of `route` and returns its events. */
const post = (r: Running, route: string, body?: unknown) =>
  call(r, route, { method: "POST", ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })

// Each test has a server of its own: they run side by side.
describe.concurrent("a dropped exec connection", () => {
  it("leaves the command running; a reader resumes each stream at its byte offset, none repeated", async () => {
    const S = await startServer({ prefix: "sbx-exec-resume-" })
    const g = gate(S, "g2")
    const cmd = `printf 'o1 '; printf 'e1 ' >&2; read l < ${g.file}; printf 'o2'; printf 'e2' >&2`
    const x = await openExec(S, { cmd }, (seen) => text(seen, "stdout") === "o1 " && text(seen, "stderr") === "e1 ")
    x.controller.abort()
    g.open()
    // Resumed after the first 2 bytes of stdout and 1 of stderr: the rest, then the exit.
    const resumed = await events(S, `/v1/processes/${x.id}/output?follow=1&stdout_offset=2&stderr_offset=1`, {
      method: "POST"
    })
    expect(text(resumed, "stdout")).toBe(" o2")
    expect(text(resumed, "stderr")).toBe("1 e2")
    expect(resumed.at(-1)).toMatchObject({ event: "exit", exit_code: 0 })
    expect(resumed.some((e) => e.event === "dropped" || e.event === "start")).toBe(false)
    // base64 and offsets at the end: just the exit.
    const atEnd = await events(
      S,
      `/v1/processes/${x.id}/output?follow=1&encoding=base64&stdout_offset=5&stderr_offset=5`
    )
    expect(atEnd.map((e) => e.event)).toEqual(["exit"])
    // An offset past what was written is refused, naming it.
    const past = await call(S, `/v1/processes/${x.id}/output?stdout_offset=6`)
    expect(past.status).toBe(400)
    expect(((await past.json()) as Record<string, unknown>).error).toMatch(/stdout_offset=6 is past the 5 bytes/)
  })

  it("is killed with its family once no reader reattached within SBX_EXEC_REATTACH", async () => {
    const S = await startServer({ prefix: "sbx-exec-grace-", env: { SBX_EXEC_REATTACH: "0.3" } })
    const x = await openExec(S, { cmd: "sleep 30 & echo $!; sleep 30" }, (seen) => text(seen, "stdout").includes("\n"))
    const child = Number(text(x.events, "stdout").trim())
    seenPids.add(child)
    x.controller.abort()
    expect(await waitGone([x.pid, child])).toEqual([])
    expect((await json(S, `/v1/processes/${x.id}`)).body).toMatchObject({ running: false, signal: 9 })
  })

  it("pauses the command when the window is full instead of dropping output", async () => {
    const S = await startServer({ prefix: "sbx-exec-window-" })
    const total = 16 * 1024 * 1024
    // 16 MiB with a 64 KiB window: what is not yet sent waits in the command's pipe.
    const x = await openExec(
      S,
      { cmd: ["head", "-c", String(total), "/dev/zero"], buffer_bytes: 65536, encoding: "base64" },
      (seen) => seen.length >= 1
    )
    x.controller.abort()
    const resumed = await events(S, `/v1/processes/${x.id}/output?follow=1&encoding=base64&stdout_offset=0`, {
      method: "POST"
    })
    // What the dropped connection had been sent is gone but for a window behind it; all the rest is
    // still there. Without the pause the server would have read all 16 MiB and kept 3 windows at most.
    const dropped = resumed[0]!.event === "dropped" ? (resumed[0]!.stdout as number) : 0
    const rest = bytes(resumed, "stdout").length
    expect(dropped + rest).toBe(total)
    expect(rest).toBeGreaterThan(total / 2)
    expect(resumed.at(-1)).toMatchObject({ event: "exit", exit_code: 0 })
  })

  it("forgets a finished exec after SBX_EXEC_RETAIN; background processes stay", async () => {
    const S = await startServer({ prefix: "sbx-exec-retain-", env: { SBX_EXEC_RETAIN: "0.2" } })
    const bg = await json(S, "/v1/processes", { method: "POST", body: JSON.stringify({ cmd: "true" }) })
    seenPids.add(bg.body.pid as unknown as number)
    const x = await openExec(S, { cmd: "echo done" }, (seen) => seen.some((e) => e.event === "exit"))
    await until(`exec ${x.id} forgotten (404)`, async () => (await call(S, `/v1/processes/${x.id}`)).status === 404)
    expect((await json(S, `/v1/processes/${x.id}/output`)).status).toBe(404)
    expect((await json(S, `/v1/processes/${bg.body.id}`)).body).toMatchObject({ running: false, exit_code: 0 })
  })
})

describe("SBX_EXEC_REATTACH and SBX_EXEC_RETAIN", () => {
  it("refuses a value that is not a number of seconds ≥ 0 (exit 2, naming it)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-exec-env-"))
    try {
      // Each server is a process of its own that refuses to start: they run side by side.
      const cases = [
        ["SBX_EXEC_REATTACH", "soon"],
        ["SBX_EXEC_REATTACH", "-1"],
        ["SBX_EXEC_RETAIN", "nan"]
      ] as const
      const servers = cases.map(([name, value]) => spawnServer(["--port", "0"], { SBX_TOKEN: "x", [name]: value }, dir))
      const exits = await Promise.all(servers.map((s) => withTimeout(s.exited, 30_000)))
      await Promise.all(servers.map((s) => withTimeout(s.drained, 5_000)))
      cases.forEach(([name, value], i) => {
        expect(exits[i], `${name}=${value}`).toEqual({ code: 2, signal: null })
        expect(servers[i]!.stderr()).toContain(`invalid ${name} '${value}'`)
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe.concurrent("idempotency_key", () => {
  it("runs a keyed exec once: a retry streams the same command from its first byte", async () => {
    const S = await startServer({ prefix: "sbx-exec-key-" })
    const body = { cmd: "echo ran >> side.txt; echo out; echo err >&2", idempotency_key: "k-1:a.b_c" }
    const first = parseNdjson(await (await post(S, "/v1/exec", body)).text())
    const again = parseNdjson(await (await post(S, "/v1/exec", body)).text())
    expect(again).toEqual(first.filter((e) => e.event !== "ping"))
    expect(first[0]).toMatchObject({ event: "start", id: expect.stringMatching(/^e-/) })
    expect(fs.readFileSync(path.join(S.dir, "side.txt"), "utf8")).toBe("ran\n")
    // Concurrent requests with one key start one command.
    const gated = gate(S, "g3")
    const concurrent = { cmd: `echo ran >> side2.txt; read l < ${gated.file}; echo done`, idempotency_key: "k-2" }
    const answers = [post(S, "/v1/exec", concurrent), post(S, "/v1/exec", concurrent), post(S, "/v1/exec", concurrent)]
    const starts = await Promise.all(
      answers.map(async (a) => {
        const reader = (await a).body!.getReader()
        return { reader, start: (await readEventsUntil<Event>(reader, (seen) => seen.length >= 1))[0]! }
      })
    )
    expect(new Set(starts.map((s) => s.start.id)).size).toBe(1)
    seenPids.add(starts[0]!.start.pid as number)
    gated.open()
    for (const s of starts) {
      expect(text(await readEventsUntil<Event>(s.reader, () => false), "stdout")).toBe("done\n")
    }
    expect(fs.readFileSync(path.join(S.dir, "side2.txt"), "utf8")).toBe("ran\n")
  })

  it("answers a keyed spawn with the existing process; another request with the key is a 409", async () => {
    const S = await startServer({ prefix: "sbx-exec-key-" })
    const body = { cmd: "echo ran >> spawned.txt; sleep 30", idempotency_key: "spawn-1" }
    const first = await json(S, "/v1/processes", { method: "POST", body: JSON.stringify(body) })
    expect(first.status).toBe(200)
    seenPids.add(first.body.pid as unknown as number)
    const again = await json(S, "/v1/processes", { method: "POST", body: JSON.stringify(body) })
    expect(again).toEqual({
      status: 200,
      body: expect.objectContaining({ id: first.body.id, pid: first.body.pid, running: true, existing: true })
    })
    const conflict = await json(S, "/v1/processes", {
      method: "POST",
      body: JSON.stringify({ ...body, env: { A: "1" } })
    })
    expect(conflict.status).toBe(409)
    expect(conflict.body).toEqual({ error: expect.stringContaining("spawn-1"), code: "idempotency_conflict" })
    // The same key on /v1/exec is another request too.
    const viaExec = await post(S, "/v1/exec", body)
    expect(viaExec.status).toBe(409)
    for (const idempotency_key of ["", "a b", "x".repeat(129), 7, "é"]) {
      const bad = await json(S, "/v1/processes", {
        method: "POST",
        body: JSON.stringify({ cmd: "true", idempotency_key })
      })
      expect(bad.status, JSON.stringify(idempotency_key)).toBe(400)
      expect(bad.body.error).toMatch(/`idempotency_key` must be 1 to 128 characters/)
    }
    await call(S, `/v1/processes/${first.body.id}?signal=KILL`, { method: "DELETE" })
    expect(fs.readFileSync(path.join(S.dir, "spawned.txt"), "utf8")).toBe("ran\n")
  })
})
