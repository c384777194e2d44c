/**
 * Background processes of the in-sandbox server (`/v1/processes`, see `docs/protocol.md`), run
 * against the real `rpc-server/sbx_server` over loopback HTTP with Node built-ins and `fetch` only.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { isAlive, sleep, until, waitGone, withTimeout } from "../support/processes.js"
import {
  type Event,
  parseNdjson,
  type Running,
  readEventsUntil,
  startServer as start,
  started,
  stopServer
} from "../support/server.js"

const startServer = (args: ReadonlyArray<string> = []) => start({ args, prefix: "sbx-processes-" })

/** Every process a test started inside a server: all must be gone at the end. */
const seenPids = new Set<number>()

const call = (r: Running, route: string, init: RequestInit = {}) =>
  fetch(r.base + route, { ...init, headers: { "X-Sandbox-Token": r.token } })

const json = async (r: Running, route: string, init: RequestInit = {}) => {
  const res = await call(r, route, init)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

interface Started {
  readonly id: string
  readonly pid: number
  readonly cmd: unknown
  readonly tag: string | null
  readonly started_at_ms: number
}

const startProcess = async (r: Running, body: Record<string, unknown>): Promise<Started> => {
  const { status, body: out } = await json(r, "/v1/processes", { method: "POST", body: JSON.stringify(body) })
  expect(status, JSON.stringify(out)).toBe(200)
  seenPids.add(out.pid as number)
  return out as unknown as Started
}

const output = async (r: Running, id: string, query = "") => {
  const res = await call(r, `/v1/processes/${id}/output${query}`)
  expect(res.status).toBe(200)
  expect(res.headers.get("content-type")).toBe("application/x-ndjson")
  return parseNdjson(await res.text())
}

const text = (events: ReadonlyArray<Event>, name: string) =>
  events
    .filter((e) => e.event === name)
    .map((e) => e.data as string)
    .join("")

/** Polls the buffered output until `pattern` shows up in stdout. */
const stdoutMatching = (r: Running, id: string, pattern: RegExp) =>
  until(
    `${pattern} in the output of ${id}`,
    async () => pattern.exec(text(await output(r, id), "stdout")) ?? undefined,
    10_000,
    50
  )

/** Opens a follower and reads events until `until` says stop; the stream is left open. */
const follow = async (r: Running, id: string, until: (events: ReadonlyArray<Event>) => boolean) => {
  const controller = new AbortController()
  const res = await fetch(`${r.base}/v1/processes/${id}/output?follow=1`, {
    headers: { "X-Sandbox-Token": r.token },
    signal: controller.signal
  })
  expect(res.status).toBe(200)
  const events = await readEventsUntil<Event>(res.body!.getReader(), until)
  return { events, controller }
}

let S: Running

beforeAll(async () => {
  S = await startServer()
})

afterAll(async () => {
  for (const r of started) {
    const exit = await stopServer(r)
    expect(exit.signal).toBeNull()
  }
  expect(await waitGone([...started.map((r) => r.pid), ...seenPids])).toEqual([])
})

describe("background processes", () => {
  it("spawns, lists, buffers, follows live, survives a dropped follower, and is killed as a group (TERM)", async () => {
    const cmd = "echo start; sleep 30 & echo child:$!; while :; do echo tick; sleep 0.1; done"
    const p = await startProcess(S, { cmd, tag: "ticker" })
    expect(p).toEqual({
      id: expect.stringMatching(/^p-\d+$/),
      pid: expect.any(Number),
      cmd,
      tag: "ticker",
      started_at_ms: expect.any(Number)
    })
    expect(Math.abs(p.started_at_ms - Date.now())).toBeLessThan(60_000)

    const list = await json(S, "/v1/processes")
    expect(list.status).toBe(200)
    expect(list.body).toContainEqual({ ...p, kind: "process", running: true, exit_code: null, signal: null })
    expect(await json(S, `/v1/processes/${p.id}`)).toEqual({
      status: 200,
      body: { ...p, kind: "process", running: true, exit_code: null, signal: null }
    })

    const child = Number((await stdoutMatching(S, p.id, /child:(\d+)\n/))[1])
    seenPids.add(child)
    expect(isAlive(child)).toBe(true)
    const buffered = await output(S, p.id)
    expect(text(buffered, "stdout").startsWith("start\nchild:")).toBe(true)
    expect(buffered.some((e) => e.event === "exit" || e.event === "dropped")).toBe(false)

    // A follower gets the buffered output, then live ticks; dropping it leaves the process running.
    const before = (text(await output(S, p.id), "stdout").match(/tick/g) ?? []).length
    const f = await follow(S, p.id, (events) => (text(events, "stdout").match(/tick/g) ?? []).length >= before + 3)
    expect(text(f.events, "stdout").startsWith("start\n")).toBe(true)
    f.controller.abort()
    // Five more ticks (a tick each 0.1 s): the server has written to the dropped follower, so it has seen
    // the drop, and the process went on through it.
    const seen = (text(f.events, "stdout").match(/tick/g) ?? []).length
    await until(`five ticks after tick ${seen}, once the follower was dropped`, async () => {
      return (text(await output(S, p.id), "stdout").match(/tick/g) ?? []).length >= seen + 5
    })
    expect((await json(S, `/v1/processes/${p.id}`)).body.running).toBe(true)
    expect(isAlive(p.pid)).toBe(true)

    expect(await json(S, `/v1/processes/${p.id}?signal=TERM`, { method: "DELETE" })).toEqual({
      status: 200,
      body: { id: p.id, killed: true }
    })
    const waited = await json(S, `/v1/processes/${p.id}/wait?timeout=10`)
    expect(waited).toEqual({
      status: 200,
      body: { exit_code: null, signal: 15, timed_out: false, duration_ms: expect.any(Number) }
    })
    expect(await waitGone([p.pid, child])).toEqual([])
    expect((await json(S, `/v1/processes/${p.id}`)).body).toEqual({
      ...p,
      kind: "process",
      running: false,
      exit_code: null,
      signal: 15
    })
    const after = await output(S, p.id)
    expect(after.at(-1)).toEqual({ event: "exit", ...waited.body })
    // Killing an exited process is not an error, and says so.
    expect(await json(S, `/v1/processes/${p.id}`, { method: "DELETE" })).toEqual({
      status: 200,
      body: { id: p.id, killed: false }
    })
  })

  it("kills by OS pid with the default signal (KILL), group included", async () => {
    const p = await startProcess(S, { cmd: "sleep 30 & echo $!; wait" })
    const child = Number((await stdoutMatching(S, p.id, /^(\d+)\n/))[1])
    seenPids.add(child)
    expect(await json(S, `/v1/processes/${p.pid}`, { method: "DELETE" })).toEqual({
      status: 200,
      body: { id: p.id, killed: true }
    })
    expect((await json(S, `/v1/processes/${p.pid}/wait`)).body).toMatchObject({ exit_code: null, signal: 9 })
    expect(await waitGone([p.pid, child])).toEqual([])
    const listed = (await json(S, "/v1/processes")).body as unknown as Array<Record<string, unknown>>
    expect(listed.find((e) => e.id === p.id)).toMatchObject({ running: false, signal: 9 })
  })

  // Linux only: finding what left the group needs /proc (and the server being the subreaper).
  it.skipIf(process.platform !== "linux")(
    "kill kills every process it started, wherever it moved (setsid, double fork), even after it exited",
    async () => {
      const pidsOf = async (id: string, names: ReadonlyArray<string>) => {
        const found: Array<number> = []
        for (const name of names) found.push(Number((await stdoutMatching(S, id, new RegExp(`${name}:(\\d+)\n`)))[1]))
        for (const pid of found) seenPids.add(pid)
        return found
      }
      // Still running: a child in its group, a `setsid` escapee with a child, a double-forked daemon.
      const p = await startProcess(S, {
        cmd: [
          "sleep 300 & echo a:$!",
          "setsid sh -c 'sleep 300 & echo b:$!; echo c:$$; wait' &",
          "( setsid sh -c 'sleep 300 & echo d:$!' & )",
          "wait"
        ].join("\n")
      })
      const family = await pidsOf(p.id, ["a", "b", "c", "d"])
      expect(family.every(isAlive)).toBe(true)
      expect(await json(S, `/v1/processes/${p.id}`, { method: "DELETE" })).toEqual({
        status: 200,
        body: { id: p.id, killed: true }
      })
      expect(await waitGone([p.pid, ...family])).toEqual([])
      expect((await json(S, `/v1/processes/${p.id}/wait?timeout=10`)).body).toMatchObject({ signal: 9 })
      expect((await json(S, `/v1/processes/${p.id}`)).body).toMatchObject({ running: false, signal: 9 })

      // Already exited, leaving a daemon behind: killing it still stops the daemon, and says so.
      // The leader waits until the daemon has spoken: output written after the leader's end may be missed.
      const q = await startProcess(S, {
        cmd: "( setsid sh -c 'sleep 300 & echo e:$!; : > daemon-spoke' & ); while [ ! -e daemon-spoke ]; do sleep 0.05; done; echo done"
      })
      const [daemon] = await pidsOf(q.id, ["e"])
      expect((await json(S, `/v1/processes/${q.id}/wait?timeout=10`)).body).toMatchObject({ exit_code: 0 })
      expect(isAlive(daemon!)).toBe(true)
      expect(await json(S, `/v1/processes/${q.id}`, { method: "DELETE" })).toEqual({
        status: 200,
        body: { id: q.id, killed: true }
      })
      expect(await waitGone([daemon!])).toEqual([])
    }
  )

  it("answers 404 for an unknown id or pid, on every route", async () => {
    expect(await json(S, "/v1/processes/p-999")).toEqual({
      status: 404,
      body: { error: "no such process: p-999", code: "not_found" }
    })
    expect(await json(S, "/v1/processes/p-999", { method: "DELETE" })).toEqual({
      status: 404,
      body: { error: "no such process: p-999", code: "not_found" }
    })
    expect(await json(S, "/v1/processes/999999999", { method: "DELETE" })).toEqual({
      status: 404,
      body: { error: "no such process: 999999999", code: "not_found" }
    })
    expect((await json(S, "/v1/processes/p-999/output")).status).toBe(404)
    expect((await json(S, "/v1/processes/p-999/wait?timeout=1")).status).toBe(404)
    expect((await json(S, `/v1/processes/${process.pid}`, { method: "DELETE" })).status).toBe(404)
  })

  it("rejects spawn failures and bad requests like exec does", async () => {
    const post = (body: unknown) => json(S, "/v1/processes", { method: "POST", body: JSON.stringify(body) })
    expect(await post({ cmd: ["no-such-command-xyz"] })).toEqual({
      status: 400,
      body: { error: expect.stringContaining("command not found"), code: "command_not_found" }
    })
    expect((await post({ cmd: "true", cwd: "/no/such/dir" })).body.code).toBe("cwd_not_found")
    expect((await post({ cmd: "true", buffer_bytes: 64 * 1024 * 1024 + 1 })).status).toBe(400)
    expect((await post({ cmd: "true", tag: 3 })).status).toBe(400)
  })

  it("keeps the last buffer_bytes of a stream and reports what was dropped", async () => {
    const p = await startProcess(S, {
      cmd: "i=0; while [ $i -lt 1024 ]; do printf '%09d\\n' $i; i=$((i+1)); done; echo oops >&2",
      buffer_bytes: 1024
    })
    expect((await json(S, `/v1/processes/${p.id}/wait?timeout=20`)).body).toMatchObject({ exit_code: 0 })
    const events = await output(S, p.id)
    expect(events[0]).toEqual({ event: "dropped", stdout: 10240 - 1024, stderr: 0 })
    let expected = ""
    for (let i = 1024 - 103; i < 1024; i++) expected += `${String(i).padStart(9, "0")}\n`
    expected = expected.slice(expected.length - 1024)
    expect(text(events, "stdout")).toBe(expected)
    expect(text(events, "stderr")).toBe("oops\n")
    expect(events.at(-1)).toMatchObject({ event: "exit", exit_code: 0, signal: null, timed_out: false })
    // A follower of an exited process gets the same and ends.
    const followed = await output(S, p.id, "?follow=1")
    expect(followed).toEqual(events)
  })

  it("returns exact bytes with encoding=base64", async () => {
    const bytes = Buffer.concat([randomBytes(70_000), Buffer.from([0xff, 0xfe, 0xc3])])
    const p = await startProcess(S, { cmd: ["cat"], stdin_b64: bytes.toString("base64") })
    await json(S, `/v1/processes/${p.id}/wait?timeout=20`)
    const events = await output(S, p.id, "?encoding=base64")
    const chunks = events.filter((e) => e.event === "stdout").map((e) => Buffer.from(e.data as string, "base64"))
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(32 * 1024)
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true)
  })

  it("wait times out with 408 while running, then reports the exit", async () => {
    // The process ends only when the test says so: a wait that did not time out would never answer.
    const go = path.join(os.tmpdir(), `hf-sandbox-wait-${process.pid}-${randomBytes(4).toString("hex")}`)
    const p = await startProcess(S, { cmd: `while [ ! -e ${go} ]; do sleep 0.05; done; exit 3` })
    expect(await json(S, `/v1/processes/${p.id}/wait?timeout=0.2`)).toEqual({
      status: 408,
      body: { error: `process ${p.id} still running after 0.2 s`, code: "timeout" }
    })
    // Another request is served while a wait blocks.
    const pending = json(S, `/v1/processes/${p.id}/wait?timeout=30`)
    expect((await json(S, "/v1/processes")).status).toBe(200)
    fs.writeFileSync(go, "")
    onTestFinished(() => fs.rmSync(go, { force: true }))
    expect(await pending).toEqual({
      status: 200,
      body: { exit_code: 3, signal: null, timed_out: false, duration_ms: expect.any(Number) }
    })
  })

  // The last two have servers of their own: they run side by side.
  it.concurrent("kills running background processes on server SIGTERM", async () => {
    const r = await startServer()
    const p = await startProcess(r, { cmd: "sleep 30 & echo $!; wait" })
    const child = Number((await stdoutMatching(r, p.id, /^(\d+)\n/))[1])
    seenPids.add(child)
    r.proc.kill("SIGTERM")
    expect(await withTimeout(r.exited, 10_000)).toEqual({ code: 0, signal: null })
    expect(await waitGone([p.pid, child])).toEqual([])
  })

  it.concurrent("does not go idle while a background process runs", async () => {
    // The grace holds the idle clock until the first request, which a loaded machine may delay past 0.3 s.
    const r = await startServer(["--idle-timeout", "0.3", "--start-grace", "60"])
    // The process runs until the test lets it end: however late the checks below run, it still runs.
    const gate = path.join(r.dir, "gate")
    await startProcess(r, { cmd: `while [ ! -e ${gate} ]; do sleep 0.05; done` })
    let exitedAt: number | undefined
    void r.exited.then(() => {
      exitedAt = Date.now()
    })
    // Twice the idle timeout without a request: an idle server would be gone by now. A wait, not an
    // event: nothing the server reports shows its idle loop counting the process as activity.
    await sleep(600)
    expect(exitedAt).toBeUndefined()
    expect((await call(r, "/health")).status).toBe(200)
    const opened = Date.now()
    fs.writeFileSync(gate, "")
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
    // Idle for 0.3 s once the process ended, no sooner.
    expect(exitedAt! - opened).toBeGreaterThanOrEqual(300)
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toContain("idle")
  })
})

describe.runIf(process.platform === "linux")("the subreaper", () => {
  /** `[ppid, state]` of a process, or undefined once it is gone (reaped). */
  const statOf = (pid: number): [number, string] | undefined => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return [Number(fields[1]), fields[0]!]
    } catch {
      return undefined
    }
  }

  it("adopts an orphan that left its command's group, and reaps it when it ends", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-orphan-"))
    const go = path.join(dir, "go")
    // Told to end before its directory goes, whatever failed: in a session of its own, nobody else ends it.
    onTestFinished(() => {
      fs.writeFileSync(go, "")
      fs.rmSync(dir, { recursive: true, force: true })
    })
    // The child leaves the group and the command's pipes, and ends only when told to: the test sees it
    // alive as the server's child, then ended, with no clock in between.
    const code = [
      "import os, time",
      "pid = os.fork()",
      "if pid == 0:",
      "    os.setsid()",
      "    null = os.open(os.devnull, os.O_RDWR)",
      "    for n in (0, 1, 2): os.dup2(null, n)",
      `    while not os.path.exists(${JSON.stringify(go)}): time.sleep(0.01)`,
      "    os._exit(0)",
      "print(pid)"
    ].join("\n")
    const res = await call(S, "/v1/exec", { method: "POST", body: JSON.stringify({ cmd: ["python3", "-c", code] }) })
    const events = parseNdjson(await res.text())
    const orphan = Number(
      events
        .filter((e) => e.event === "stdout")
        .map((e) => e.data)
        .join("")
    )
    seenPids.add(orphan)
    expect(statOf(orphan)?.[0]).toBe(S.pid)
    fs.writeFileSync(go, "")
    // Ended, it is the server's zombie until the reaper (each second, or sooner) collects it.
    await until(
      () => `pid ${orphan} still ${JSON.stringify(statOf(orphan))}`,
      () => {
        const stat = statOf(orphan)
        return stat === undefined || stat[0] !== S.pid
      }
    )
  })
})
