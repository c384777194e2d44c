/**
 * Conformance suite for the in-sandbox server (`rpc-server/sbx_server`), run against the real
 * process over real loopback HTTP. It uses only Node built-ins and the global `fetch`, so it checks
 * the wire protocol of `docs/protocol.md` independently of the library's own client; its last block
 * checks that the client's schemas (`src/Protocol.ts`) accept what the server really sends.
 *
 * Set `SBX_CONFORMANCE_PYTHON` to run it with another interpreter (e.g. a Python 3.8); the harness is
 * `test/support/server.ts`.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Protocol from "hf-sandbox/Protocol"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isAlive, until, waitGone, withTimeout } from "../support/processes.js"
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

const AUTH_BODY = { error: "invalid or missing sandbox token", code: "auth" }
const LISTENING =
  /^\{"event":"listening","host":"127\.0\.0\.1","port":(\d+),"pid":(\d+),"version":"0\.1\.0","protocol":2\}$/
const isLinux = process.platform === "linux"

/** Every pid a test saw start; all of them must be gone once the servers are stopped. */
const seenPids = new Set<number>()

// ---- HTTP helpers ----

const call = (r: Running, pathAndQuery: string, init: RequestInit = {}) =>
  fetch(r.base + pathAndQuery, {
    ...init,
    headers: { "X-Sandbox-Token": r.token, ...(init.headers as Record<string, string> | undefined) }
  })

const callJson = async (r: Running, pathAndQuery: string, init: RequestInit = {}) => {
  const res = await call(r, pathAndQuery, init)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

const post = (r: Running, route: string, body: unknown) =>
  callJson(r, route, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } })

interface ExecOutcome {
  readonly status: number
  readonly events: Array<Event>
  readonly error?: Record<string, unknown>
  readonly stdout: string
  readonly stderr: string
  readonly exit: Event
  readonly contentType: string | null
}

const exec = async (r: Running, body: Record<string, unknown>): Promise<ExecOutcome> => {
  const res = await call(r, "/v1/exec", { method: "POST", body: JSON.stringify(body) })
  const contentType = res.headers.get("content-type")
  if (res.status !== 200) {
    const error = (await res.json()) as Record<string, unknown>
    return { status: res.status, events: [], error, stdout: "", stderr: "", exit: { event: "none" }, contentType }
  }
  const events = parseNdjson(await res.text())
  for (const e of events) if (e.event === "start") seenPids.add(e.pid as number)
  const data = (name: string) =>
    events
      .filter((e) => e.event === name)
      .map((e) => e.data as string)
      .join("")
  return { status: 200, events, stdout: data("stdout"), stderr: data("stderr"), exit: events.at(-1)!, contentType }
}

/** Concatenates base64 `data` chunks of one stream into the raw bytes. */
const rawBytes = (events: ReadonlyArray<Event>, name: string) =>
  Buffer.concat(events.filter((e) => e.event === name).map((e) => Buffer.from(e.data as string, "base64")))

/**
 * Starts an exec and returns after the first `lines` events: the stream stays open for the caller.
 */
const openExec = async (r: Running, body: Record<string, unknown>, lines: number) => {
  const controller = new AbortController()
  const res = await call(r, "/v1/exec", { method: "POST", body: JSON.stringify(body), signal: controller.signal })
  expect(res.status).toBe(200)
  const reader = res.body!.getReader()
  const events = await readEventsUntil<Event>(reader, (seen) => seen.length >= lines)
  for (const e of events) if (e.event === "start") seenPids.add(e.pid as number)
  return { events, controller, reader }
}

/** Raw HTTP over one TCP connection, for framing checks fetch cannot express. */
const rawHttp = (port: number, payload: string | Buffer, until: (received: string) => boolean) =>
  new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    let received = ""
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`raw HTTP timed out; got: ${received}`))
    }, 10_000)
    socket.on("data", (d) => {
      received += d.toString("latin1")
      if (until(received)) {
        clearTimeout(timer)
        socket.destroy()
        resolve(received)
      }
    })
    socket.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    socket.write(payload)
  })

const count = (haystack: string, needle: string) => haystack.split(needle).length - 1

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

let S: Running
let cwd: string // the server's working directory, as the server sees it (symlinks resolved)
const abs = (p: string) => path.join(cwd, p)
const q = (p: string) => encodeURIComponent(p)

beforeAll(async () => {
  S = await startServer()
  cwd = fs.realpathSync(S.dir)
})

afterAll(async () => {
  for (const r of started) {
    expect(await stopServer(r)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid])).toEqual([])
  }
  // Nothing any test started may outlive the servers.
  expect(await waitGone([...seenPids])).toEqual([])
})

// Each test but the first has a server of its own (or one that refuses to start): they run side by side.
describe.concurrent("startup", () => {
  it("announces exactly one listening line with the real port and pid", () => {
    expect(S.announce).toMatch(LISTENING)
    expect(S.port).toBeGreaterThan(0)
    expect(S.pid).toBe(S.proc.pid)
  })

  it("refuses to start without a token (exit 2, message on stderr)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-conformance-"))
    try {
      const s = spawnServer(["--port", "0"], {}, dir)
      const exit = await withTimeout(s.exited, 30_000)
      expect(exit).toEqual({ code: 2, signal: null })
      await withTimeout(s.drained, 5_000)
      expect(s.stderr()).toMatch(/SBX_TOKEN/)
      expect(s.stdout()).toBe("")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("rejects invalid numeric options with exit 2", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-conformance-"))
    try {
      // Each server is a process of its own that refuses to start: they run side by side.
      const cases = [
        ["--port", "nope"],
        ["--port", "70000"],
        ["--idle-timeout", "-1"],
        ["--lifetime", "soon"]
      ]
      const servers = cases.map((args) => spawnServer(args, { SBX_TOKEN: "x" }, dir))
      const exits = await Promise.all(servers.map((s) => withTimeout(s.exited, 30_000)))
      await Promise.all(servers.map((s) => withTimeout(s.drained, 5_000)))
      cases.forEach((args, i) => {
        expect(exits[i], args.join(" ")).toEqual({ code: 2, signal: null })
        expect(servers[i]!.stderr().length).toBeGreaterThan(0)
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("--journal: a predecessor's journal is replayed at start; a directory that is not a journal is refused, untouched", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-conformance-"))
    try {
      // What a server killed mid-write left: its temporary file, listed in its journal, and a file the
      // journal does not own (a link to it, under a name the server never gives) that must survive.
      const journal = path.join(dir, "run.journal")
      const part = path.join(dir, ".data.bin.hf-sandbox-0123456789abcdef.part")
      const keep = path.join(dir, "keep.txt")
      fs.writeFileSync(part, "half")
      fs.writeFileSync(keep, "mine")
      fs.mkdirSync(journal)
      fs.symlinkSync(part, path.join(journal, "0".repeat(40)))
      fs.symlinkSync(keep, path.join(journal, "0".repeat(40).replace(/^0/, "1")))
      const r = await startServer({ args: ["--journal", journal] })
      expect(fs.existsSync(part)).toBe(false)
      expect(fs.readFileSync(keep, "utf8")).toBe("mine")
      // A shutdown removes its own journal, with whatever it lists.
      await stopServer(r)
      expect(fs.existsSync(journal)).toBe(false)

      const notJournal = path.join(dir, "home")
      fs.mkdirSync(notJournal)
      fs.writeFileSync(path.join(notJournal, "notes.txt"), "precious")
      const s = spawnServer(["--journal", notJournal], { SBX_TOKEN: "x".repeat(64) }, dir)
      expect(await withTimeout(s.exited, 15_000)).toEqual({ code: 2, signal: null })
      await withTimeout(s.drained, 5_000)
      expect(s.stderr()).toMatch(/exists and is not a journal/)
      expect(fs.readFileSync(path.join(notJournal, "notes.txt"), "utf8")).toBe("precious")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("starts with --allow-no-auth and then needs no token", async () => {
    const r = await startServer({ token: null, args: ["--allow-no-auth"] })
    const health = await (await fetch(`${r.base}/health`)).json()
    expect(health).toMatchObject({ status: "ok", auth: false, protocol: 2 })
    const res = await fetch(`${r.base}/v1/files/stat?path=.`)
    expect(res.status).toBe(200)
    await stopServer(r)
  })

  it("accepts the legacy HF_SANDBOX_TOKEN variable and hides both token variables from commands", async () => {
    const legacy = randomBytes(16).toString("hex")
    const r = await startServer({ token: null, env: { HF_SANDBOX_TOKEN: legacy } })
    const res = await fetch(`${r.base}/v1/exec`, {
      method: "POST",
      headers: { "X-Sandbox-Token": legacy },
      body: JSON.stringify({ cmd: "env" })
    })
    expect(res.status).toBe(200)
    const out = parseNdjson(await res.text())
    const text = out.map((e) => e.data ?? "").join("")
    expect(text).not.toContain(legacy)
    expect(text).not.toContain("HF_SANDBOX_TOKEN")
    await stopServer(r)
  })
})

describe("auth and routing", () => {
  it("GET /health: status only without a valid token, details with one", async () => {
    const anon = await fetch(`${S.base}/health`)
    expect(anon.status).toBe(200)
    expect(await anon.json()).toEqual({ status: "ok" })
    const wrong = await fetch(`${S.base}/health`, { headers: { "X-Sandbox-Token": "nope" } })
    expect(wrong.status).toBe(200)
    expect(await wrong.json()).toEqual({ status: "ok" })
    for (const headers of [{ "X-Sandbox-Token": S.token }, { Authorization: `Bearer ${S.token}` }]) {
      const body = await (await fetch(`${S.base}/health`, { headers })).json()
      expect(body).toEqual({
        status: "ok",
        version: "0.1.0",
        protocol: 2,
        uptime_ms: expect.any(Number),
        mode: "dedicated",
        auth: true
      })
    }
  })

  it("answers 403 with the same body for a missing or wrong token, on v1 and legacy routes", async () => {
    const routes: Array<[string, string, string | undefined]> = [
      ["POST", "/v1/exec", JSON.stringify({ cmd: ["true"] })],
      ["GET", "/v1/files/read?path=x", undefined],
      ["PUT", "/v1/files/write?path=x", "data"],
      ["GET", "/v1/files/list?path=.", undefined],
      ["POST", "/exec", JSON.stringify({ cmd: ["true"] })],
      ["POST", "/write", JSON.stringify({ path: "x", content_b64: "" })],
      ["POST", "/read", JSON.stringify({ path: "x" })]
    ]
    const variants: Array<Record<string, string>> = [
      {},
      { "X-Sandbox-Token": "wrong" },
      { "X-Sandbox-Token": "" },
      { Authorization: "Bearer wrong" },
      { Authorization: S.token }
    ]
    for (const [method, route, body] of routes) {
      for (const headers of variants) {
        const res = await fetch(S.base + route, { method, headers, ...(body === undefined ? {} : { body }) })
        expect(res.status, `${method} ${route} ${JSON.stringify(headers)}`).toBe(403)
        expect(await res.json()).toEqual(AUTH_BODY)
      }
    }
    expect(fs.existsSync(path.join(S.dir, "x"))).toBe(false)
  })

  it("accepts the token as a bearer too", async () => {
    const res = await fetch(`${S.base}/v1/files/stat?path=.`, { headers: { Authorization: `Bearer ${S.token}` } })
    expect(res.status).toBe(200)
  })

  it("answers unknown routes with 404 and wrong methods with 405", async () => {
    expect(await callJson(S, "/nope")).toEqual({
      status: 404,
      body: { error: "no route: GET /nope", code: "not_found" }
    })
    const wrongMethod = await callJson(S, "/v1/exec")
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.body.code).toBe("method_not_allowed")
  })

  it("keeps a keep-alive connection in sync after a rejected body (pipelined requests)", async () => {
    const rejected = "PUT /v1/files/write?path=pipelined HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    const health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    const out = await rawHttp(S.port, rejected + health, (got) => got.includes('{"status":"ok"}'))
    expect(out.startsWith("HTTP/1.1 403 ")).toBe(true)
    expect(count(out, "HTTP/1.1 ")).toBe(2)
    expect(fs.existsSync(path.join(S.dir, "pipelined"))).toBe(false)
  })

  it("decodes chunked request bodies (files and JSON)", async () => {
    const chunks = ["hello ", "chunked ", "world"]
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const c of chunks) controller.enqueue(new TextEncoder().encode(c))
        controller.close()
      }
    })
    const init = { method: "PUT", body, duplex: "half" } as RequestInit
    const res = await call(S, "/v1/files/write?path=chunked.txt", init)
    expect(await res.json()).toEqual({ path: path.join(cwd, "chunked.txt"), size: 19 })
    expect(fs.readFileSync(path.join(S.dir, "chunked.txt"), "utf8")).toBe("hello chunked world")

    const json = '{"cmd": ["echo", "via chunks"]}'
    const raw =
      `POST /v1/exec HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${S.token}\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `${(10).toString(16)}\r\n${json.slice(0, 10)}\r\n${(json.length - 10).toString(16)}\r\n${json.slice(10)}\r\n0\r\n\r\n`
    const out = await rawHttp(S.port, raw, (got) => got.includes("\r\n0\r\n\r\n"))
    expect(out).toContain('{"event":"stdout","data":"via chunks\\n"}')
  })

  it("rejects oversized JSON bodies with 413", async () => {
    const res = await call(S, "/v1/exec", { method: "POST", body: `{"cmd":"true","pad":"${"x".repeat(17 << 20)}"}` })
    expect(res.status).toBe(413)
    expect(((await res.json()) as Record<string, unknown>).code).toBe("too_large")
  })
})

describe("POST /v1/exec", () => {
  it("streams start, stdout, stderr and exit for a shell string", async () => {
    const r = await exec(S, { cmd: "echo out; echo err 1>&2; exit 3" })
    expect(r.status).toBe(200)
    expect(r.contentType).toBe("application/x-ndjson")
    expect(r.events[0]).toEqual({ event: "start", id: expect.stringMatching(/^e-\d+$/), pid: expect.any(Number) })
    expect(r.exit).toEqual({
      event: "exit",
      exit_code: 3,
      signal: null,
      timed_out: false,
      duration_ms: expect.any(Number)
    })
    expect(r.events.filter((e) => e.event === "exit")).toHaveLength(1)
    for (const e of r.events) expect(["start", "stdout", "stderr", "ping", "exit"]).toContain(e.event)
    expect(r.stdout).toBe("out\n")
    expect(r.stderr).toBe("err\n")
  })

  it("runs an argv list without a shell", async () => {
    const r = await exec(S, { cmd: ["printf", "%s|%s", "a b", "$HOME"] })
    expect(r.stdout).toBe("a b|$HOME")
    expect(r.exit.exit_code).toBe(0)
    expect((await exec(S, { cmd: "printf %s ok", shell: true })).stdout).toBe("ok")
    expect((await exec(S, { cmd: ["true"], shell: false })).exit.exit_code).toBe(0)
  })

  it("adds env to the server's environment and never exposes the token", async () => {
    const r = await exec(S, { cmd: 'printf %s "$GREETING"; env', env: { GREETING: "hi there" } })
    expect(r.stdout.startsWith("hi there")).toBe(true)
    expect(r.stdout).toMatch(/^PATH=/m)
    expect(r.stdout).not.toContain(S.token)
    expect(r.stdout).not.toMatch(/SBX_TOKEN|HF_SANDBOX_TOKEN/)
  })

  it("resolves a relative cwd against the server's working directory", async () => {
    fs.mkdirSync(path.join(S.dir, "work", "sub"), { recursive: true })
    expect((await exec(S, { cmd: "pwd -P", cwd: "work/sub" })).stdout).toBe(path.join(cwd, "work", "sub") + "\n")
    expect((await exec(S, { cmd: "pwd -P" })).stdout).toBe(cwd + "\n")
  })

  it("feeds stdin (text and base64) and closes it; /dev/null without", async () => {
    expect((await exec(S, { cmd: ["cat"], stdin: "line 1\nline 2" })).stdout).toBe("line 1\nline 2")
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe])
    const b64 = await exec(S, { cmd: ["cat"], stdin_b64: bytes.toString("base64"), encoding: "base64" })
    expect(rawBytes(b64.events, "stdout").equals(bytes)).toBe(true)
    expect((await exec(S, { cmd: ["cat"] })).stdout).toBe("")
    // A child that never reads a large stdin must not deadlock the server.
    const ignored = await exec(S, { cmd: "exit 0", stdin: "x".repeat(4 << 20) })
    expect(ignored.exit.exit_code).toBe(0)
  })

  it("reports a death by signal as exit_code null and the signal number", async () => {
    const r = await exec(S, { cmd: "kill -TERM $$" })
    expect(r.exit).toMatchObject({ exit_code: null, signal: 15, timed_out: false })
  })

  it("kills the whole process group on timeout and keeps partial output", async () => {
    const r = await exec(S, { cmd: "echo partial; sleep 30 & echo $!; sleep 30", timeout: 1 })
    expect(r.exit).toMatchObject({ exit_code: null, signal: 9, timed_out: true })
    // Killed (signal 9, timed_out), not ended by itself: the 30 s sleep did not run its course.
    expect(r.exit.duration_ms).toBeGreaterThanOrEqual(900)
    const [first, grandchild] = r.stdout.trim().split("\n")
    expect(first).toBe("partial")
    const pids = [Number(grandchild), r.events[0]!.pid as number]
    expect(await waitGone(pids)).toEqual([])
  })

  it("does not wait for background processes that keep the pipes open", async () => {
    // No clock: an exec that waited for the background `sleep` would return after it ended (or not
    // within the test's bound); it must return while it still runs.
    const r = await exec(S, { cmd: "sleep 300 & echo $!; echo started" })
    expect(r.exit).toMatchObject({ exit_code: 0, timed_out: false })
    const [bg, msg] = r.stdout.trim().split("\n")
    expect(msg).toBe("started")
    seenPids.add(Number(bg))
    expect(isAlive(Number(bg))).toBe(true) // left running on purpose; killed at shutdown
  })

  it("survives non-UTF-8 output and returns exact bytes with encoding base64", async () => {
    const text = await exec(S, { cmd: "printf '\\377\\376ok'; printf '\\377' >&2" })
    expect(text.stdout).toBe("\ufffd\ufffdok")
    expect(text.stderr).toBe("\ufffd")
    expect(text.exit.exit_code).toBe(0)
    const b64 = await exec(S, { cmd: "printf '\\377\\376ok'", encoding: "base64" })
    expect(rawBytes(b64.events, "stdout").equals(Buffer.from([0xff, 0xfe, 0x6f, 0x6b]))).toBe(true)
  })

  it("keeps a multibyte character split across two writes intact", async () => {
    const r = await exec(S, { cmd: "printf '\\303'; sleep 0.3; printf '\\251'" })
    expect(r.stdout).toBe("é")
  })

  it("chunks large output into events of at most 32 KiB", async () => {
    const r = await exec(S, { cmd: "head -c 3000000 /dev/zero | tr '\\0' a", encoding: "base64" })
    const chunks = r.events.filter((e) => e.event === "stdout")
    expect(rawBytes(r.events, "stdout").length).toBe(3_000_000)
    for (const c of chunks) expect(Buffer.from(c.data as string, "base64").length).toBeLessThanOrEqual(32 * 1024)
  })

  it("answers spawn failures and bad requests with 400 before streaming", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ cmd: ["nosuchcmd-sbx"] }, "command_not_found"],
      [{ cmd: ["./no-such-file"] }, "command_not_found"],
      [{ cmd: ["true"], cwd: "no/such/dir" }, "cwd_not_found"],
      [{ cmd: ["echo"], shell: true }, "bad_request"],
      [{ cmd: "echo", shell: false }, "bad_request"],
      [{ cmd: [] }, "bad_request"],
      [{ cmd: "" }, "bad_request"],
      [{ cmd: 42 }, "bad_request"],
      [{ cmd: ["true"], env: { N: 1 } }, "bad_request"],
      [{ cmd: ["true"], timeout: "soon" }, "bad_request"],
      [{ cmd: ["true"], encoding: "latin1" }, "bad_request"],
      [{ cmd: ["cat"], stdin_b64: "!!!" }, "bad_request"]
    ]
    for (const [body, code] of cases) {
      const r = await exec(S, body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.error, JSON.stringify(body)).toEqual({ error: expect.any(String), code })
    }
    const missing = await exec(S, { cmd: ["nosuchcmd-sbx"] })
    expect(missing.error!.error).toBe("command not found: nosuchcmd-sbx (not on PATH)")
    fs.writeFileSync(path.join(S.dir, "noexec.sh"), "#!/bin/sh\necho hi\n", { mode: 0o644 })
    expect((await exec(S, { cmd: ["./noexec.sh"] })).error!.code).toBe("permission_denied")
    const badJson = await call(S, "/v1/exec", { method: "POST", body: "{nope" })
    expect(badJson.status).toBe(400)
    expect(((await badJson.json()) as Record<string, unknown>).code).toBe("bad_request")
  })

  it("kills the process group when the client goes away and the reattach grace is 0", async () => {
    // With the default grace (SBX_EXEC_REATTACH=60) the command waits a minute for a reader to
    // reattach: test/server/execResume.test.ts covers that.
    const R = await startServer({ env: { SBX_EXEC_REATTACH: "0" } })
    const { events, controller } = await openExec(R, { cmd: "sleep 30 & echo $!; sleep 30" }, 2)
    expect(events[0]!.event).toBe("start")
    const pids = [events[0]!.pid as number, Number((events[1]!.data as string).trim())]
    expect(pids.every(isAlive)).toBe(true)
    controller.abort()
    expect(await waitGone(pids)).toEqual([])
  })

  it("serves many concurrent execs", async () => {
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => exec(S, { cmd: ["echo", String(i)] })))
    expect(results.map((r) => r.stdout)).toEqual(results.map((_, i) => `${i}\n`))
  })
})

describe("files", () => {
  it("writes and reads, with offset, length, truncate_to and mode", async () => {
    const put = await callJson(S, `/v1/files/write?path=${q("f/a.txt")}`, { method: "PUT", body: "hello world" })
    expect(put).toEqual({ status: 200, body: { path: abs("f/a.txt"), size: 11 } })

    const read = await call(S, `/v1/files/read?path=${q("f/a.txt")}`)
    expect(read.headers.get("content-type")).toBe("application/octet-stream")
    expect(await read.text()).toBe("hello world")
    expect(await (await call(S, `/v1/files/read?path=f/a.txt&offset=6`)).text()).toBe("world")
    const ranged = await call(S, `/v1/files/read?path=f/a.txt&offset=2&length=3`)
    expect(ranged.headers.get("content-length")).toBe("3")
    expect(await ranged.text()).toBe("llo")
    const past = await call(S, `/v1/files/read?path=f/a.txt&offset=100`)
    expect(past.headers.get("content-length")).toBe("0")
    expect(await past.text()).toBe("")

    // Offset writes keep the rest of the file; truncate_to cuts it to the final size.
    await call(S, `/v1/files/write?path=f/a.txt&offset=0`, { method: "PUT", body: "HELLO" })
    expect(fs.readFileSync(abs("f/a.txt"), "utf8")).toBe("HELLO world")
    const cut = await callJson(S, `/v1/files/write?path=f/a.txt&offset=3&truncate_to=5`, { method: "PUT", body: "lo" })
    expect(cut.body.size).toBe(5)
    expect(fs.readFileSync(abs("f/a.txt"), "utf8")).toBe("HELlo")

    await call(S, `/v1/files/write?path=f/m.sh&mode=0750`, { method: "PUT", body: "#!/bin/sh\n" })
    expect(fs.statSync(abs("f/m.sh")).mode & 0o7777).toBe(0o750)
    expect((await callJson(S, `/v1/files/write?path=f/x&mode=9z`, { method: "PUT", body: "" })).status).toBe(400)

    const noMkdir = await callJson(S, `/v1/files/write?path=nodir/x&mkdir=0`, { method: "PUT", body: "x" })
    expect(noMkdir.status).toBe(404)
    expect((await callJson(S, `/v1/files/write?path=f`, { method: "PUT", body: "x" })).body.code).toBe("is_a_directory")
    expect((await callJson(S, `/v1/files/write`, { method: "PUT", body: "x" })).status).toBe(400)
    expect((await callJson(S, `/v1/files/write?path=f/b&mkdir=maybe`, { method: "PUT", body: "x" })).status).toBe(400)
  })

  it("answers read errors: 404 missing, 409 directory, 400 missing path", async () => {
    expect(await callJson(S, `/v1/files/read?path=nope`)).toMatchObject({ status: 404, body: { code: "not_found" } })
    fs.mkdirSync(abs("adir"), { recursive: true })
    expect(await callJson(S, `/v1/files/read?path=adir`)).toMatchObject({
      status: 409,
      body: { code: "is_a_directory" }
    })
    expect(await callJson(S, `/v1/files/read`)).toMatchObject({ status: 400, body: { code: "bad_request" } })
    expect((await callJson(S, `/v1/files/read?path=f/a.txt&offset=-1`)).status).toBe(400)
  })

  it("stats files, directories and symlinks without following them", async () => {
    fs.mkdirSync(abs("st"), { recursive: true })
    fs.writeFileSync(abs("st/file.txt"), "12345", { mode: 0o640 })
    fs.chmodSync(abs("st/file.txt"), 0o640)
    fs.symlinkSync("file.txt", abs("st/link"))
    const file = await callJson(S, `/v1/files/stat?path=st/file.txt`)
    expect(file.body).toEqual({
      name: "file.txt",
      path: abs("st/file.txt"),
      type: "file",
      size: 5,
      mtime_ms: expect.any(Number),
      mode: "640"
    })
    expect(Math.abs((file.body.mtime_ms as number) - Date.now())).toBeLessThan(600_000)
    expect((await callJson(S, `/v1/files/stat?path=st`)).body).toMatchObject({ type: "dir", name: "st" })
    expect((await callJson(S, `/v1/files/stat?path=st/link&symlink_targets=1`)).body).toMatchObject({
      type: "symlink",
      target: "file.txt"
    })
    expect((await callJson(S, `/v1/files/stat?path=st/none`)).status).toBe(404)
  })

  it("gives list and stat entries exactly the keys of HF's FileEntry unless symlink_targets=1", async () => {
    // HF's Python client builds `FileEntry(**entry)` from every list and stat entry, so any other key
    // raises TypeError there. The key set is that dataclass's fields: huggingface_hub
    // src/huggingface_hub/_sandbox.py, `class FileEntry` (name, path, type, size, mtime_ms, mode), as of
    // commit ee0a4510f4bc (2026-08-20).
    const HF_FILE_ENTRY_KEYS = ["mode", "mtime_ms", "name", "path", "size", "type"]
    fs.mkdirSync(abs("hfkeys/dir"), { recursive: true })
    fs.writeFileSync(abs("hfkeys/file"), "x")
    fs.symlinkSync("file", abs("hfkeys/link"))
    fs.symlinkSync("gone", abs("hfkeys/dangling"))
    const keys = (e: Record<string, unknown>) => Object.keys(e).sort()
    const plain = await callJson(S, `/v1/files/list?path=hfkeys`)
    const entries = plain.body.entries as Array<Record<string, unknown>>
    expect(entries.map((e) => [e.name, e.type])).toEqual([
      ["dangling", "symlink"],
      ["dir", "dir"],
      ["file", "file"],
      ["link", "symlink"]
    ])
    for (const e of entries) expect(keys(e)).toEqual(HF_FILE_ENTRY_KEYS)
    expect(Object.keys(plain.body)).toEqual(["entries"])
    for (const name of ["link", "dangling", "file", "dir"]) {
      expect(keys((await callJson(S, `/v1/files/stat?path=hfkeys/${name}`)).body)).toEqual(HF_FILE_ENTRY_KEYS)
    }
    const recursive = await callJson(S, `/v1/files/list?path=hfkeys&recursive=1`)
    for (const e of recursive.body.entries as Array<Record<string, unknown>>)
      expect(keys(e)).toEqual(HF_FILE_ENTRY_KEYS)

    // Asked for, symlinks (only they) also carry their target, on list, recursive list and stat.
    const asked = await callJson(S, `/v1/files/list?path=hfkeys&symlink_targets=1`)
    expect((asked.body.entries as Array<Record<string, unknown>>).map((e) => e.target)).toEqual([
      "gone",
      undefined,
      undefined,
      "file"
    ])
    const tree = await callJson(S, `/v1/files/list?path=hfkeys&recursive=1&symlink_targets=1`)
    expect((tree.body.entries as Array<Record<string, unknown>>).find((e) => e.name === "link")?.target).toBe("file")
    expect((await callJson(S, `/v1/files/stat?path=hfkeys/dangling&symlink_targets=1`)).body.target).toBe("gone")
    expect((await callJson(S, `/v1/files/stat?path=hfkeys/link&symlink_targets=0`)).body).not.toHaveProperty("target")
    expect(await callJson(S, `/v1/files/list?path=hfkeys&symlink_targets=yes`)).toMatchObject({
      status: 400,
      body: { code: "bad_request" }
    })
  })

  it("decodes a query value that ends in %2F", async () => {
    fs.mkdirSync(abs("sub dir"), { recursive: true })
    const url = `/v1/files/stat?path=${q("sub dir/")}`
    expect(url.endsWith("%2F")).toBe(true)
    expect(await callJson(S, url)).toMatchObject({ status: 200, body: { type: "dir", name: "sub dir" } })
    const made = await callJson(S, `/v1/files/mkdir?path=${q("made+here/")}`, { method: "POST" })
    expect(made.body).toEqual({ created: abs("made+here") })
  })

  it("lists a directory sorted by name", async () => {
    fs.mkdirSync(abs("ls/zdir"), { recursive: true })
    fs.writeFileSync(abs("ls/b"), "bb")
    fs.writeFileSync(abs("ls/a"), "a")
    const list = await callJson(S, `/v1/files/list?path=ls`)
    expect((list.body.entries as Array<Record<string, unknown>>).map((e) => [e.name, e.type, e.path])).toEqual([
      ["a", "file", abs("ls/a")],
      ["b", "file", abs("ls/b")],
      ["zdir", "dir", abs("ls/zdir")]
    ])
    expect(await callJson(S, `/v1/files/list?path=missing`)).toMatchObject({ status: 404, body: { code: "not_found" } })
    expect(await callJson(S, `/v1/files/list?path=ls/a`)).toMatchObject({
      status: 400,
      body: { code: "not_a_directory" }
    })
  })

  it("lists a tree with recursive=1: relative names, depth first, symlinks reported but never followed", async () => {
    fs.mkdirSync(abs("rl/tree/sub/deep"), { recursive: true })
    fs.mkdirSync(abs("rl/tree/empty"), { recursive: true })
    fs.mkdirSync(abs("rl/outside/inner"), { recursive: true })
    fs.writeFileSync(abs("rl/tree/a.txt"), "a")
    fs.writeFileSync(abs("rl/tree/sub/b.txt"), "bb")
    fs.writeFileSync(abs("rl/tree/sub/deep/c.txt"), "ccc")
    fs.writeFileSync(abs("rl/tree/sub-file"), "") // after sub's contents, though "sub-file" < "sub/b.txt" as strings
    fs.writeFileSync(abs("rl/outside/inner/secret"), "x")
    fs.symlinkSync("../../outside", abs("rl/tree/sub/out"))
    fs.symlinkSync("nowhere", abs("rl/tree/dangling"))
    const list = await callJson(S, `/v1/files/list?path=${q("rl/tree")}&recursive=1&symlink_targets=1`)
    expect(list.status).toBe(200)
    const entries = list.body.entries as Array<Record<string, unknown>>
    expect(entries.map((e) => [e.name, e.type, e.path])).toEqual([
      ["a.txt", "file", abs("rl/tree/a.txt")],
      ["dangling", "symlink", abs("rl/tree/dangling")],
      ["empty", "dir", abs("rl/tree/empty")],
      ["sub", "dir", abs("rl/tree/sub")],
      ["sub/b.txt", "file", abs("rl/tree/sub/b.txt")],
      ["sub/deep", "dir", abs("rl/tree/sub/deep")],
      ["sub/deep/c.txt", "file", abs("rl/tree/sub/deep/c.txt")],
      ["sub/out", "symlink", abs("rl/tree/sub/out")],
      ["sub-file", "file", abs("rl/tree/sub-file")]
    ])
    expect(list.body.skipped).toEqual([])
    // Every entry has the non-recursive shape; symlinks carry their raw target text.
    expect(entries.find((e) => e.name === "sub/deep/c.txt")).toEqual({
      name: "sub/deep/c.txt",
      path: abs("rl/tree/sub/deep/c.txt"),
      type: "file",
      size: 3,
      mtime_ms: expect.any(Number),
      mode: expect.stringMatching(/^[0-7]+$/)
    })
    expect(entries.find((e) => e.name === "sub/out")).toMatchObject({ type: "symlink", target: "../../outside" })
    expect(entries.find((e) => e.name === "dangling")).toMatchObject({ type: "symlink", target: "nowhere" })
    expect(entries.filter((e) => e.type !== "symlink").every((e) => !("target" in e))).toBe(true)

    // The plain list is unchanged: direct children only, no `skipped`, symlink targets too.
    const flat = await callJson(S, `/v1/files/list?path=${q("rl/tree/sub")}&symlink_targets=true`)
    expect(flat.body).toEqual({ entries: expect.any(Array) })
    expect((flat.body.entries as Array<Record<string, unknown>>).map((e) => [e.name, e.target])).toEqual([
      ["b.txt", undefined],
      ["deep", undefined],
      ["out", "../../outside"]
    ])
    expect((await callJson(S, `/v1/files/list?path=rl/tree/empty&recursive=1`)).body).toEqual({
      entries: [],
      skipped: []
    })

    // The listed directory itself may be a symlink; it is followed, the entries below are not.
    fs.symlinkSync("tree", abs("rl/tree-link"))
    const viaLink = await callJson(S, `/v1/files/list?path=rl/tree-link&recursive=true`)
    expect((viaLink.body.entries as Array<Record<string, unknown>>).map((e) => e.name)).toEqual(
      entries.map((e) => e.name)
    )
    expect((viaLink.body.entries as Array<Record<string, unknown>>)[0]!.path).toBe(abs("rl/tree-link/a.txt"))

    expect(await callJson(S, `/v1/files/list?path=rl/missing&recursive=1`)).toMatchObject({
      status: 404,
      body: { code: "not_found" }
    })
    expect(await callJson(S, `/v1/files/list?path=rl/tree/a.txt&recursive=1`)).toMatchObject({
      status: 400,
      body: { code: "not_a_directory" }
    })
    expect(await callJson(S, `/v1/files/list?path=rl/tree&recursive=yes`)).toMatchObject({
      status: 400,
      body: { code: "bad_request" }
    })
  })

  it.skipIf(process.getuid?.() === 0)(
    "recursive list: an unreadable subdirectory is listed and reported in skipped, an unreadable root fails",
    async () => {
      fs.mkdirSync(abs("rp/tree/locked"), { recursive: true })
      fs.mkdirSync(abs("rp/tree/open"), { recursive: true })
      fs.writeFileSync(abs("rp/tree/locked/hidden"), "x")
      fs.writeFileSync(abs("rp/tree/open/seen"), "x")
      fs.chmodSync(abs("rp/tree/locked"), 0o000)
      try {
        const list = await callJson(S, `/v1/files/list?path=rp/tree&recursive=1`)
        expect(list.status).toBe(200)
        expect((list.body.entries as Array<Record<string, unknown>>).map((e) => e.name)).toEqual([
          "locked",
          "open",
          "open/seen"
        ])
        expect(list.body.skipped).toEqual([
          { name: "locked", path: abs("rp/tree/locked"), error: expect.any(String), code: "permission_denied" }
        ])
        expect(await callJson(S, `/v1/files/list?path=rp/tree/locked&recursive=1`)).toMatchObject({
          status: 400,
          body: { code: "permission_denied" }
        })
      } finally {
        fs.chmodSync(abs("rp/tree/locked"), 0o755)
      }
    }
  )

  it("creates symlinks: target text as given, parents made, links and files replaced, never a directory", async () => {
    const made = await callJson(S, `/v1/files/symlink?path=${q("sl/new/parent/link")}&target=${q("../x y")}`, {
      method: "POST"
    })
    expect(made).toEqual({ status: 200, body: { path: abs("sl/new/parent/link"), target: "../x y" } })
    expect(fs.readlinkSync(abs("sl/new/parent/link"))).toBe("../x y") // never resolved, may dangle
    expect((await callJson(S, `/v1/files/stat?path=${q("sl/new/parent/link")}&symlink_targets=1`)).body).toMatchObject({
      type: "symlink",
      target: "../x y"
    })

    // An existing symlink (even one to a directory) or file is replaced by the new link.
    fs.mkdirSync(abs("sl/dir"), { recursive: true })
    fs.writeFileSync(abs("sl/dir/keep"), "x")
    fs.symlinkSync("dir", abs("sl/to-dir"))
    const relinked = await callJson(S, `/v1/files/symlink?path=sl/to-dir&target=${q("/etc")}`, { method: "POST" })
    expect(relinked.body).toEqual({ path: abs("sl/to-dir"), target: "/etc" })
    expect(fs.readlinkSync(abs("sl/to-dir"))).toBe("/etc")
    expect(fs.readdirSync(abs("sl/dir"))).toEqual(["keep"])
    // A regular file is replaced only with replace=1; without it, it stays as it was.
    fs.writeFileSync(abs("sl/file"), "data")
    expect(await callJson(S, `/v1/files/symlink?path=sl/file&target=dir`, { method: "POST" })).toMatchObject({
      status: 409,
      body: { code: "already_exists" }
    })
    expect(fs.readFileSync(abs("sl/file"), "utf8")).toBe("data")
    const replaced = await callJson(S, `/v1/files/symlink?path=sl/file&target=dir&replace=1`, { method: "POST" })
    expect(replaced.status).toBe(200)
    expect(fs.lstatSync(abs("sl/file")).isSymbolicLink()).toBe(true)
    expect(fs.readFileSync(abs("sl/file/keep"), "utf8")).toBe("x")

    // A directory is never replaced; nothing is left behind.
    expect(await callJson(S, `/v1/files/symlink?path=sl/dir&target=elsewhere`, { method: "POST" })).toMatchObject({
      status: 409,
      body: { code: "is_a_directory" }
    })
    expect(fs.lstatSync(abs("sl/dir")).isDirectory()).toBe(true)
    expect((await callJson(S, `/v1/files/symlink?path=sl/dir&target=x&replace=1`, { method: "POST" })).status).toBe(409)
    expect(fs.readdirSync(abs("sl")).sort()).toEqual(["dir", "file", "new", "to-dir"])

    const bad = async (query: string) => (await callJson(S, `/v1/files/symlink?${query}`, { method: "POST" })).body
    fs.writeFileSync(abs("sl-plain"), "x")
    expect(await bad("path=sl-plain/under&target=x")).toMatchObject({ code: "not_a_directory" })
    expect(await bad("path=sl/l&target=")).toMatchObject({ code: "bad_request" })
    expect(await bad("path=sl/l")).toMatchObject({ code: "bad_request" })
    expect(await bad("path=&target=x")).toMatchObject({ code: "bad_request" })
    expect(await bad("path=sl/l&target=a%00b")).toMatchObject({ code: "bad_request" })
    expect(await bad("path=sl/l%00&target=x")).toMatchObject({ code: "bad_request" })
    expect((await callJson(S, `/v1/files/symlink?path=sl/l&target=x`)).status).toBe(405)
    expect(fs.existsSync(abs("sl/l"))).toBe(false)
  })

  it("deletes files and directories, recursive only on request, never through symlinks", async () => {
    fs.mkdirSync(abs("del/full/deep"), { recursive: true })
    fs.writeFileSync(abs("del/full/deep/x"), "x")
    fs.writeFileSync(abs("del/file"), "x")
    fs.mkdirSync(abs("keep"), { recursive: true })
    fs.writeFileSync(abs("keep/precious"), "x")
    fs.symlinkSync(abs("keep"), abs("del/full/link-to-keep"))
    fs.symlinkSync(abs("keep"), abs("dirlink"))

    expect(await callJson(S, `/v1/files/delete?path=del/file`, { method: "DELETE" })).toEqual({
      status: 200,
      body: { deleted: abs("del/file") }
    })
    const notEmpty = await callJson(S, `/v1/files/delete?path=del/full`, { method: "DELETE" })
    expect(notEmpty).toMatchObject({ status: 409, body: { code: "not_empty" } })
    const rec = await callJson(S, `/v1/files/delete?path=del/full&recursive=1`, { method: "DELETE" })
    expect(rec.status).toBe(200)
    expect(fs.existsSync(abs("del/full"))).toBe(false)
    expect(fs.existsSync(abs("keep/precious"))).toBe(true)
    expect((await callJson(S, `/v1/files/delete?path=dirlink&recursive=true`, { method: "DELETE" })).status).toBe(200)
    expect(fs.existsSync(abs("dirlink"))).toBe(false)
    expect(fs.existsSync(abs("keep/precious"))).toBe(true)
    expect((await callJson(S, `/v1/files/delete?path=del&recursive=0`, { method: "DELETE" })).status).toBe(200)
    expect(await callJson(S, `/v1/files/delete?path=del`, { method: "DELETE" })).toMatchObject({ status: 404 })
  })

  it("makes directories, renames and chmods", async () => {
    expect((await callJson(S, `/v1/files/mkdir?path=mk/a/b`, { method: "POST" })).body).toEqual({
      created: abs("mk/a/b")
    })
    expect((await callJson(S, `/v1/files/mkdir?path=mk/a/b`, { method: "POST" })).status).toBe(200)
    fs.writeFileSync(abs("mk/file"), "x")
    expect(await callJson(S, `/v1/files/mkdir?path=mk/file`, { method: "POST" })).toMatchObject({ status: 409 })

    const renamed = await callJson(S, `/v1/files/rename?from=mk/file&to=${q("mk/new/parent/file2")}`, {
      method: "POST"
    })
    expect(renamed.body).toEqual({ renamed: abs("mk/file"), to: abs("mk/new/parent/file2") })
    expect(fs.readFileSync(abs("mk/new/parent/file2"), "utf8")).toBe("x")
    expect((await callJson(S, `/v1/files/rename?from=mk/nope&to=mk/z`, { method: "POST" })).status).toBe(404)

    const chmod = await callJson(S, `/v1/files/chmod?path=mk/new/parent/file2&mode=755`, { method: "POST" })
    expect(chmod.body).toEqual({ path: abs("mk/new/parent/file2"), mode: "755" })
    expect((await callJson(S, `/v1/files/stat?path=mk/new/parent/file2`)).body.mode).toBe("755")
    expect((await callJson(S, `/v1/files/chmod?path=mk/nope&mode=755`, { method: "POST" })).status).toBe(404)
  })

  it("round-trips 10 MiB of random bytes exactly", async () => {
    const data = randomBytes(10 << 20)
    const put = await callJson(S, `/v1/files/write?path=big.bin`, { method: "PUT", body: data })
    expect(put.body.size).toBe(data.length)
    const back = Buffer.from(await (await call(S, `/v1/files/read?path=big.bin`)).arrayBuffer())
    expect(back.equals(data)).toBe(true)
    const mid = await call(S, `/v1/files/read?path=big.bin&offset=3000000&length=4000000`)
    expect(Buffer.from(await mid.arrayBuffer()).equals(data.subarray(3_000_000, 7_000_000))).toBe(true)
  })
})

describe("atomic writes", () => {
  const temps = (dir: string) => fs.readdirSync(abs(dir)).filter((name) => name.includes(".hf-sandbox-"))
  /** The server removes temporary files on its own thread: wait (bounded) until `dir` holds `n` of them. */
  const tempsBecome = (dir: string, n: number) =>
    until(
      () => `${n} temp file(s) in ${dir}: ${JSON.stringify(temps(dir))}`,
      () => temps(dir).length === n
    )
  /** Sends a PUT's head and `sent` bytes of a body announced as `length` bytes; the socket stays open. */
  const partialPut = async (r: Running, query: string, length: number, sent: number) => {
    const socket = net.connect(r.port, "127.0.0.1")
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
    socket.on("error", () => {})
    socket.write(
      `PUT /v1/files/write?${query} HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${r.token}\r\n` +
        `Content-Length: ${length}\r\n\r\n`
    )
    await new Promise<void>((resolve) => socket.write(randomBytes(sent), () => resolve()))
    return socket
  }
  const old = randomBytes(200_000)

  it("sends ranges of a transfer to a temp file beside the destination; commit renames it, with its mode", async () => {
    fs.mkdirSync(abs("aw"), { recursive: true })
    fs.writeFileSync(abs("aw/t.bin"), old)
    const data = randomBytes(300_000)
    const id = "t1-0123456789"
    const range = (offset: number, end: number) =>
      callJson(S, `/v1/files/write?path=aw/t.bin&transfer=${id}&offset=${offset}&truncate_to=${data.length}`, {
        method: "PUT",
        body: data.subarray(offset, end)
      })
    expect((await range(200_000, 300_000)).status).toBe(200)
    expect((await range(0, 200_000)).status).toBe(200)
    // Until the commit, the old file is untouched and the transfer's temp file sits beside it.
    expect(fs.readFileSync(abs("aw/t.bin")).equals(old)).toBe(true)
    expect(temps("aw")).toEqual([`.t.bin.hf-sandbox-${id}.part`])
    const wrong = await callJson(S, `/v1/files/commit?path=aw/t.bin&transfer=${id}&size=5`, { method: "POST" })
    expect(wrong).toMatchObject({ status: 409, body: { code: "size_mismatch" } })
    expect(temps("aw")).toEqual([]) // a failed commit abandons the transfer
    expect(fs.readFileSync(abs("aw/t.bin")).equals(old)).toBe(true)
    expect((await range(0, 200_000)).status).toBe(410) // and it stays abandoned

    const id2 = "t2-0123456789"
    for (const [offset, end] of [
      [0, 150_000],
      [150_000, 300_000]
    ] as const) {
      const put = await callJson(S, `/v1/files/write?path=aw/t.bin&transfer=${id2}&offset=${offset}`, {
        method: "PUT",
        body: data.subarray(offset, end)
      })
      expect(put.status).toBe(200)
    }
    const done = await callJson(S, `/v1/files/commit?path=aw/t.bin&transfer=${id2}&size=300000&mode=0751`, {
      method: "POST"
    })
    expect(done).toEqual({ status: 200, body: { path: abs("aw/t.bin"), size: 300_000 } })
    expect(fs.readFileSync(abs("aw/t.bin")).equals(data)).toBe(true)
    expect(fs.statSync(abs("aw/t.bin")).mode & 0o7777).toBe(0o751)
    expect(temps("aw")).toEqual([])

    // Abort removes the temp file; an unknown transfer or a bad id is refused.
    await range(0, 10)
    expect(
      (await callJson(S, `/v1/files/write?path=aw/t.bin&transfer=t3-0123456789`, { method: "PUT", body: "x" })).status
    ).toBe(200)
    expect(temps("aw")).toEqual([".t.bin.hf-sandbox-t3-0123456789.part"])
    const aborted = await callJson(S, `/v1/files/abort?path=aw/t.bin&transfer=t3-0123456789`, { method: "POST" })
    expect(aborted).toEqual({ status: 200, body: { path: abs("aw/t.bin"), aborted: true } })
    expect(temps("aw")).toEqual([])
    expect((await callJson(S, `/v1/files/commit?path=aw/t.bin&transfer=nope-0123456`, { method: "POST" })).status).toBe(
      404
    )
    expect((await callJson(S, `/v1/files/write?path=aw/t.bin&transfer=../x`, { method: "PUT", body: "" })).status).toBe(
      400
    )
    expect(fs.readFileSync(abs("aw/t.bin")).equals(data)).toBe(true)
  })

  it("writes to a device in place, never replacing it with a file (one request or a transfer)", async () => {
    expect((await callJson(S, `/v1/files/write?path=/dev/null`, { method: "PUT", body: "x" })).status).toBe(200)
    const range = await callJson(S, `/v1/files/write?path=/dev/null&transfer=null-0123456789&offset=0&truncate_to=1`, {
      method: "PUT",
      body: "x"
    })
    expect(range.status).toBe(200)
    const commit = await callJson(S, `/v1/files/commit?path=/dev/null&transfer=null-0123456789&size=1`, {
      method: "POST"
    })
    expect(commit.status).toBe(200)
    expect(fs.statSync("/dev/null").isCharacterDevice()).toBe(true)
  })

  it.skipIf(process.getuid?.() === 0)(
    "a writable file in a directory it cannot write: one request writes it in place, a transfer says why not",
    async () => {
      fs.mkdirSync(abs("aw-ro"), { recursive: true })
      fs.writeFileSync(abs("aw-ro/f"), "old")
      fs.chmodSync(abs("aw-ro"), 0o555)
      try {
        expect((await callJson(S, `/v1/files/write?path=aw-ro/f`, { method: "PUT", body: "new" })).status).toBe(200)
        expect(fs.readFileSync(abs("aw-ro/f"), "utf8")).toBe("new")
        const range = await callJson(S, `/v1/files/write?path=aw-ro/f&transfer=ro-0123456789`, {
          method: "PUT",
          body: "x"
        })
        expect(range).toMatchObject({ status: 400, body: { code: "permission_denied" } })
        expect(range.body.error).toContain("in_place=1")
      } finally {
        fs.chmodSync(abs("aw-ro"), 0o755)
      }
    }
  )

  it("removes a transfer's temp file when its client hangs up mid-range; the old file stays byte-exact", async () => {
    fs.mkdirSync(abs("aw-cut"), { recursive: true })
    fs.writeFileSync(abs("aw-cut/f"), old)
    const socket = await partialPut(
      S,
      "path=aw-cut/f&transfer=cut-0123456789&offset=0&truncate_to=4000000",
      4_000_000,
      300_000
    )
    await tempsBecome("aw-cut", 1)
    socket.destroy()
    await tempsBecome("aw-cut", 0)
    expect(fs.readFileSync(abs("aw-cut/f")).equals(old)).toBe(true)
    // A late range of that transfer cannot rebuild it with holes.
    const late = await callJson(S, `/v1/files/write?path=aw-cut/f&transfer=cut-0123456789&offset=300000`, {
      method: "PUT",
      body: "x"
    })
    expect(late).toMatchObject({ status: 410, body: { code: "transfer_gone" } })
    expect(temps("aw-cut")).toEqual([])
  })

  it("removes the temp file of a transfer that went silent (SBX_TRANSFER_STALE)", async () => {
    const quick = await startServer({ env: { SBX_TRANSFER_STALE: "0.3" } })
    const dir = fs.realpathSync(quick.dir)
    fs.writeFileSync(path.join(dir, "f"), old)
    const listTemps = () => fs.readdirSync(dir).filter((name) => name.includes(".hf-sandbox-"))
    // One transfer stops mid-body with its socket open; another sent a range and never came back.
    const socket = await partialPut(quick, "path=f&transfer=stall-0123456789", 1_000_000, 100_000)
    const left = await callJson(quick, `/v1/files/write?path=g&transfer=left-0123456789`, { method: "PUT", body: "x" })
    expect(left.status).toBe(200)
    await until(
      () => `no temp file left: ${JSON.stringify(listTemps())}`,
      () => listTemps().length === 0
    )
    expect(fs.readFileSync(path.join(dir, "f")).equals(old)).toBe(true)
    expect(fs.existsSync(path.join(dir, "g"))).toBe(false)
    const commit = await callJson(quick, `/v1/files/commit?path=g&transfer=left-0123456789`, { method: "POST" })
    expect(commit).toMatchObject({ status: 410, body: { code: "transfer_gone" } })
    socket.destroy()
  })

  it("replaces a file with one request atomically: a body cut short leaves the old file and no temp file", async () => {
    fs.mkdirSync(abs("aw-one"), { recursive: true })
    fs.writeFileSync(abs("aw-one/f"), old)
    fs.chmodSync(abs("aw-one/f"), 0o750)
    const socket = await partialPut(S, "path=aw-one/f", 4_000_000, 300_000)
    await tempsBecome("aw-one", 1)
    expect(fs.readFileSync(abs("aw-one/f")).equals(old)).toBe(true) // nobody sees half a file
    socket.destroy()
    await tempsBecome("aw-one", 0)
    expect(fs.readFileSync(abs("aw-one/f")).equals(old)).toBe(true)

    // A whole body replaces it (a new inode), keeping the mode of the file it replaced.
    const before = fs.statSync(abs("aw-one/f")).ino
    expect((await callJson(S, `/v1/files/write?path=aw-one/f`, { method: "PUT", body: "new" })).status).toBe(200)
    expect(fs.readFileSync(abs("aw-one/f"), "utf8")).toBe("new")
    expect(fs.statSync(abs("aw-one/f")).mode & 0o7777).toBe(0o750)
    expect(fs.statSync(abs("aw-one/f")).ino).not.toBe(before)
    // Through a symlink, the file it points to is replaced, not the link.
    fs.symlinkSync("f", abs("aw-one/link"))
    expect((await callJson(S, `/v1/files/write?path=aw-one/link`, { method: "PUT", body: "via" })).status).toBe(200)
    expect(fs.lstatSync(abs("aw-one/link")).isSymbolicLink()).toBe(true)
    expect(fs.readFileSync(abs("aw-one/f"), "utf8")).toBe("via")
    // in_place=1 writes the file itself (same inode, hard links see it).
    const inode = fs.statSync(abs("aw-one/f")).ino
    const inPlace = await callJson(S, `/v1/files/write?path=aw-one/f&in_place=1`, { method: "PUT", body: "here" })
    expect(inPlace.status).toBe(200)
    expect(fs.statSync(abs("aw-one/f")).ino).toBe(inode)
    expect(fs.readFileSync(abs("aw-one/f"), "utf8")).toBe("here")
    expect(temps("aw-one")).toEqual([])
  })
})

describe("legacy prototype routes", () => {
  it("POST /exec returns rc, stdout and stderr", async () => {
    expect(await post(S, "/exec", { cmd: ["sh", "-c", "echo o; echo e >&2; exit 4"] })).toEqual({
      status: 200,
      body: { rc: 4, stdout: "o\n", stderr: "e\n" }
    })
    fs.mkdirSync(abs("legacy"), { recursive: true })
    expect((await post(S, "/exec", { cmd: "pwd -P", workdir: "legacy" })).body.stdout).toBe(abs("legacy") + "\n")
    expect((await post(S, "/exec", { cmd: ["pwd", "-P"], cwd: "legacy" })).body.stdout).toBe(abs("legacy") + "\n")
    expect((await post(S, "/exec", { cmd: ["cat"], stdin: "in" })).body.stdout).toBe("in")
    expect((await post(S, "/exec", { cmd: "kill -9 $$" })).body.rc).toBe(-9)
    expect(await post(S, "/exec", { cmd: ["nosuchcmd-sbx"] })).toEqual({
      status: 200,
      body: { rc: 127, stdout: "", stderr: "command not found: nosuchcmd-sbx" }
    })
  })

  it("POST /exec timeout kills the group and keeps partial output", async () => {
    const r = await post(S, "/exec", { cmd: "echo partial; sleep 30 & echo $!; sleep 30", timeout: 1 })
    expect(r.body).toMatchObject({ rc: -1, timed_out: true })
    const [first, grandchild] = (r.body.stdout as string).trim().split("\n")
    expect(first).toBe("partial")
    expect(r.body.stderr).toMatch(/timeout$/)
    expect(await waitGone([Number(grandchild)])).toEqual([])
  })

  it("POST /write and /read move bytes, create parents and report a missing file", async () => {
    const bytes = Buffer.from([0, 255, 1, 254])
    expect(await post(S, "/write", { path: "lg/deep/b.bin", content_b64: bytes.toString("base64") })).toEqual({
      status: 200,
      body: { ok: true }
    })
    expect(fs.readFileSync(abs("lg/deep/b.bin")).equals(bytes)).toBe(true)
    expect((await post(S, "/write", { path: "lg/t.txt", content: "text" })).body).toEqual({ ok: true })
    expect(await post(S, "/read", { path: "lg/t.txt" })).toEqual({
      status: 200,
      body: { content_b64: Buffer.from("text").toString("base64") }
    })
    const big = randomBytes(1_000_001)
    fs.writeFileSync(abs("lg/big"), big)
    const read = await post(S, "/read", { path: "lg/big" })
    expect(Buffer.from(read.body.content_b64 as string, "base64").equals(big)).toBe(true)
    expect(await post(S, "/read", { path: "lg/none" })).toEqual({
      status: 404,
      body: { detail: "file not found: lg/none", error: "file not found: lg/none", code: "not_found" }
    })
  })
})

describe("streams and long polls by POST", () => {
  // A quick tunnel holds a GET's body until it ends (cloudflared#1449), so every route that streams or
  // long-polls also answers POST, with the same query string; the GET forms stay for HF's clients.
  const startWaiting = async (dir: string) => {
    const gate = path.join(dir, `gate-${randomBytes(4).toString("hex")}`)
    const { status, body } = await post(S, "/v1/processes", {
      cmd: `echo first; while [ ! -e '${gate}' ]; do sleep 0.02; done; echo second; exit 3`,
      timeout: 60
    })
    expect(status).toBe(200)
    seenPids.add(body.pid as number)
    return { id: body.id as string, open: () => fs.writeFileSync(gate, "") }
  }

  it("POST /v1/processes/{id}/output?follow=1 streams live output, then the exit", async () => {
    const p = await startWaiting(cwd)
    const res = await call(S, `/v1/processes/${p.id}/output?follow=1&encoding=utf-8`, { method: "POST" })
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("application/x-ndjson")
    const reader = res.body!.getReader()
    // The process cannot end before this first line was read: it waits for the gate.
    const early = await withTimeout(
      readEventsUntil<Event>(reader, (events) => events.some((e) => e.event === "stdout")),
      30_000
    )
    if (early === "timeout") throw new Error("the first line did not arrive while the process ran")
    expect(early.filter((e) => e.event === "stdout").map((e) => e.data)).toEqual(["first\n"])
    p.open()
    const rest = await readEventsUntil<Event>(reader, (events) => events.some((e) => e.event === "exit"))
    const all = [...early, ...rest].filter((e) => e.event !== "ping")
    expect(all.map((e) => (e.event === "stdout" ? e.data : e.event))).toEqual(["first\n", "second\n", "exit"])
    expect(all.at(-1)).toMatchObject({ exit_code: 3, signal: null, timed_out: false })
  })

  it("POST /v1/processes/{id}/wait long-polls like GET: 408 while running, then the exit", async () => {
    const p = await startWaiting(cwd)
    for (const method of ["GET", "POST"]) {
      expect(await callJson(S, `/v1/processes/${p.id}/wait?timeout=0`, { method })).toEqual({
        status: 408,
        body: { error: `process ${p.id} still running after 0 s`, code: "timeout" }
      })
    }
    const waiting = callJson(S, `/v1/processes/${p.id}/wait`, { method: "POST" })
    p.open()
    const done = await withTimeout(waiting, 30_000)
    if (done === "timeout") throw new Error("POST wait did not return after the process ended")
    expect(done.status).toBe(200)
    expect(done.body).toMatchObject({ exit_code: 3, signal: null, timed_out: false })
    expect(await callJson(S, `/v1/processes/${p.id}/wait?timeout=0`)).toEqual(done)
  })

  it("GET and POST give the same buffered output, and the same errors", async () => {
    const p = await startWaiting(cwd)
    p.open()
    await callJson(S, `/v1/processes/${p.id}/wait`, { method: "POST" })
    const get = parseNdjson(await (await call(S, `/v1/processes/${p.id}/output?encoding=base64`)).text())
    const byPost = parseNdjson(
      await (await call(S, `/v1/processes/${p.id}/output?encoding=base64`, { method: "POST" })).text()
    )
    expect(byPost).toEqual(get)
    expect(byPost.at(-1)).toMatchObject({ event: "exit", exit_code: 3 })
    for (const route of ["output", "wait"]) {
      expect(await callJson(S, `/v1/processes/p-999999/${route}`, { method: "POST" })).toEqual({
        status: 404,
        body: { error: "no such process: p-999999", code: "not_found" }
      })
    }
    const bad = await callJson(S, `/v1/processes/${p.id}/output?follow=maybe`, { method: "POST" })
    expect(bad.status).toBe(400)
    const wrong = await call(S, `/v1/processes/${p.id}/output`, { method: "PUT" })
    expect(wrong.status).toBe(405)
    expect(wrong.headers.get("allow")).toBe("GET, POST")
    await wrong.body?.cancel()
  })
})

// Each test has a server of its own, and most wait on the server's timers: they run side by side.
describe.concurrent("lifecycle", () => {
  it("sends a ping after the configured silence", async () => {
    const r = await startServer({ env: { SBX_PING_INTERVAL: "0.2" } })
    const out = await exec(r, { cmd: "sleep 1; echo done" })
    expect(out.events.some((e) => e.event === "ping")).toBe(true)
    expect(out.events[0]!.event).toBe("start")
    expect(out.exit).toMatchObject({ event: "exit", exit_code: 0 })
    await stopServer(r)
  })

  it("exits by itself after --idle-timeout with nothing in flight", async () => {
    const r = await startServer({ args: ["--idle-timeout", "1"] })
    const exit = await withTimeout(r.exited, 20_000)
    expect(exit).toEqual({ code: 0, signal: null })
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toMatch(/idle/)
  })

  it("--start-grace: not idle before a client's first request; idle as usual after it", async () => {
    const r = await startServer({ args: ["--idle-timeout", "0.3", "--start-grace", "60"] })
    // Three idle timeouts without a client: a server that counted them would be gone.
    expect(await withTimeout(r.exited, 1_000)).toBe("timeout")
    expect((await call(r, "/health")).status).toBe(200)
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toMatch(/idle for 0\.3s/)
    // A client that never comes: the grace is the bound.
    const lonely = await startServer({ args: ["--idle-timeout", "0.3", "--start-grace", "1"] })
    expect(await withTimeout(lonely.exited, 20_000)).toEqual({ code: 0, signal: null })
    await withTimeout(lonely.drained, 5_000)
    expect(lonely.stderr()).toMatch(/no client reached the server within 1s \(--start-grace\)/)
  })

  it("counts a running exec as activity for the idle timeout", async () => {
    // The grace holds the idle clock until the first request: on a loaded machine more than the idle
    // timeout can pass between the server listening and the exec reaching it (seen in CI).
    const r = await startServer({ args: ["--idle-timeout", "0.3", "--start-grace", "60"] })
    const t0 = Date.now()
    // Twice the idle timeout: a server that counted the exec as idle time would end it.
    const out = await exec(r, { cmd: "sleep 0.6; echo alive" })
    expect(out.stdout).toBe("alive\n")
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550)
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
  })

  it.skipIf(!isLinux)(
    "counts a connection held to an exposed port (SBX_EXPOSED_PORTS) as activity for the idle timeout",
    async () => {
      // A server in the sandbox used through the Jobs proxy: its clients never send this server a request.
      const served = net.createServer((socket) => socket.on("error", () => {}))
      await new Promise<void>((resolve) => served.listen(0, "127.0.0.1", resolve))
      const port = (served.address() as net.AddressInfo).port
      const unexposed = net.createServer((socket) => socket.on("error", () => {}))
      await new Promise<void>((resolve) => unexposed.listen(0, "127.0.0.1", resolve))
      try {
        const r = await startServer({
          // A short idle timeout (0.3 s): the check below waits for several of them and can only be a
          // wait, since nothing the server reports shows its idle loop counting the exposed connection.
          args: ["--idle-timeout", "0.3", "--start-grace", "60"],
          env: { SBX_EXPOSED_PORTS: `${port},not-a-port` }
        })
        const held = net.connect(port, "127.0.0.1")
        await new Promise((resolve) => held.once("connect", resolve))
        // A connection to a port nobody exposed keeps nothing alive; it is held the whole time too.
        const other = net.connect((unexposed.address() as net.AddressInfo).port, "127.0.0.1")
        await new Promise((resolve) => other.once("connect", resolve))
        expect((await call(r, "/health")).status).toBe(200)
        // Four idle timeouts with only the exposed port in use: still serving. (The idle loop counts the
        // connection in the same pass that checks the timeout, so a loaded machine cannot make this fail.)
        expect(await withTimeout(r.exited, 1_200)).toBe("timeout")
        expect((await call(r, "/health")).status).toBe(200)
        held.destroy()
        expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
        await withTimeout(r.drained, 5_000)
        expect(r.stderr()).toMatch(/idle for 0\.3s/)
        other.destroy()
      } finally {
        served.close()
        unexposed.close()
      }
    }
  )

  it("--lifetime ends the server even while a command runs, and kills it", async () => {
    // Before the start: the lifetime cannot have begun earlier, so the bound below holds on any machine.
    const t0 = Date.now()
    const r = await startServer({ args: ["--lifetime", "1.5", "--idle-timeout", "60"] })
    const { events } = await openExec(r, { cmd: "sleep 30" }, 1)
    const pid = events[0]!.pid as number
    seenPids.add(pid)
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500)
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toMatch(/lifetime of 1\.5s reached/)
    expect(await waitGone([pid])).toEqual([])
  })

  it("shuts down when stdin reaches EOF (the parent went away)", async () => {
    const r = await startServer()
    r.proc.stdin.end()
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
  })

  it("SIGTERM kills running commands, their groups and daemonized descendants, then exits 0", async () => {
    const r = await startServer()
    const { events } = await openExec(r, { cmd: "sleep 30 & echo $!; sleep 30" }, 2)
    const pids = [events[0]!.pid as number, Number((events[1]!.data as string).trim())]
    if (isLinux) {
      // setsid leaves our process group; the server finds it as a descendant (subreaper).
      const daemon = await exec(r, {
        cmd: "setsid sh -c 'echo $$ > daemon.pid; exec sleep 30' >/dev/null 2>&1 </dev/null &"
      })
      expect(daemon.exit.exit_code).toBe(0)
      const pidFile = path.join(r.dir, "daemon.pid")
      const written = await until(
        "the daemon's pid in daemon.pid",
        () => (fs.existsSync(pidFile) && fs.readFileSync(pidFile, "utf8").trim()) || undefined,
        5_000
      )
      pids.push(Number(written))
    }
    for (const p of pids) seenPids.add(p)
    expect(pids.every(isAlive)).toBe(true)
    r.proc.kill("SIGTERM")
    expect(await withTimeout(r.exited, 20_000)).toEqual({ code: 0, signal: null })
    expect(await waitGone(pids)).toEqual([])
  })
})

describe("POST /v1/shutdown", () => {
  it("needs the token, answers 202, then ends every process group it started and exits 0", async () => {
    const r = await startServer()
    const refused = await fetch(`${r.base}/v1/shutdown`, { method: "POST" })
    expect(refused.status).toBe(403)
    expect(await refused.json()).toEqual(AUTH_BODY)
    expect((await call(r, "/v1/shutdown")).status).toBe(405)
    const { events } = await openExec(r, { cmd: "sleep 30 & echo $!; sleep 30" }, 2)
    const pids = [events[0]!.pid as number, Number((events[1]!.data as string).trim())]
    const background = await post(r, "/v1/processes", { cmd: "sleep 30" })
    expect(background.status).toBe(200)
    pids.push(background.body.pid as number)
    for (const p of pids) seenPids.add(p)
    expect(pids.every(isAlive)).toBe(true)
    const answer = await call(r, "/v1/shutdown", { method: "POST" })
    expect(answer.status).toBe(202)
    expect(await answer.json()).toEqual({ shutting_down: true })
    expect(await withTimeout(r.exited, 5_000)).toEqual({ code: 0, signal: null })
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toMatch(/shutdown requested \(POST \/v1\/shutdown\)/)
    expect(await waitGone(pids)).toEqual([])
  })
})

describe("the client's schemas (src/Protocol.ts) decode what the server sends", () => {
  const decodes = <A, I>(schema: Schema.Schema<A, I>, value: unknown) =>
    expect(Either.isRight(Schema.decodeUnknownEither(schema)(value)), JSON.stringify(value)).toBe(true)

  it("listening line, health, errors", async () => {
    decodes(Protocol.ListeningLine, JSON.parse(S.announce))
    decodes(Protocol.HealthResponse, await (await fetch(`${S.base}/health`)).json())
    decodes(Protocol.HealthResponse, (await callJson(S, "/health")).body)
    decodes(Protocol.ErrorBody, (await callJson(S, "/v1/files/read?path=nope")).body)
  })

  it("every exec event", async () => {
    const out = await exec(S, { cmd: "echo out; echo err >&2; exit 3" })
    expect(out.events.map((e) => e.event)).toEqual(["start", "stdout", "stderr", "exit"])
    for (const event of out.events) decodes(Protocol.ExecEvent, event)
    decodes(Protocol.ExecRequest, { cmd: ["a"], env: { A: "1" }, cwd: ".", timeout: 1.5, stdin: "x" })
  })

  it("files routes", async () => {
    const write = await callJson(S, `/v1/files/write?path=${q("schema/a.txt")}`, { method: "PUT", body: "abc" })
    decodes(Protocol.WriteResponse, write.body)
    decodes(Protocol.FileEntry, (await callJson(S, `/v1/files/stat?path=${q("schema/a.txt")}`)).body)
    decodes(Protocol.ListResponse, (await callJson(S, `/v1/files/list?path=${q("schema")}`)).body)
    const link = await callJson(S, `/v1/files/symlink?path=${q("schema/d/link")}&target=../a.txt`, { method: "POST" })
    decodes(Protocol.SymlinkResponse, link.body)
    decodes(Protocol.FileEntry, (await callJson(S, `/v1/files/stat?path=${q("schema/d/link")}`)).body)
    const withTarget = await callJson(S, `/v1/files/stat?path=${q("schema/d/link")}&symlink_targets=1`)
    expect(Schema.decodeUnknownSync(Protocol.FileEntry)(withTarget.body)).toMatchObject({ target: "../a.txt" })
    const tree = await callJson(S, `/v1/files/list?path=${q("schema")}&recursive=1`)
    expect((tree.body.entries as Array<unknown>).length).toBe(3)
    decodes(Protocol.ListResponse, tree.body)
    decodes(Protocol.ListResponse, {
      entries: [],
      skipped: [{ name: "x", path: "/x", error: "cannot list /x: permission denied", code: "permission_denied" }]
    })
    decodes(
      Protocol.MkdirResponse,
      (await callJson(S, `/v1/files/mkdir?path=${q("schema/d")}`, { method: "POST" })).body
    )
    decodes(
      Protocol.DeleteResponse,
      (await callJson(S, `/v1/files/delete?path=${q("schema")}&recursive=1`, { method: "DELETE" })).body
    )
  })

  it("legacy routes", async () => {
    decodes(Protocol.LegacyExecResponse, (await post(S, "/exec", { cmd: ["echo", "hi"] })).body)
    decodes(
      Protocol.LegacyWriteResponse,
      (await post(S, "/write", { path: "legacy-schema.txt", content_b64: "aGk=" })).body
    )
    decodes(Protocol.LegacyReadResponse, (await post(S, "/read", { path: "legacy-schema.txt" })).body)
  })
})

describe.skipIf(!isLinux)("a supervised server killed with SIGKILL in the middle of a write", () => {
  it("leaves the old file and no temporary file: its supervisor removes what the journal lists", async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-conformance-"))
    try {
      const journal = path.join(outside, "server.journal")
      const dest = path.join(outside, "data.bin")
      fs.writeFileSync(dest, "the old content")
      const r = await startServer({ args: ["--supervise", "--journal", journal] })
      // One request (no transfer): 256 KiB, then the body stays open.
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(256 * 1024).fill(1))
        }
      })
      const pending = call(r, `/v1/files/write?path=${q(dest)}`, { method: "PUT", body, duplex: "half" } as RequestInit)
        .then((res) => res.status)
        .catch((e: unknown) => e)
      const parts = () => fs.readdirSync(outside).filter((name) => name.endsWith(".part"))
      // The temporary file exists from the request's start; its bytes may still sit in the server's read.
      await until("the transfer's temporary .part file", () => parts().length > 0)
      expect(parts().length).toBe(1)
      process.kill(r.pid, "SIGKILL") // the server itself: r.proc is its supervisor
      // The supervisor exits the way the server did (it used to crash re-raising SIGKILL: exit 1).
      expect(await withTimeout(r.exited, 10_000)).toEqual({ code: null, signal: "SIGKILL" })
      started.splice(started.indexOf(r), 1)
      fs.rmSync(r.dir, { recursive: true, force: true }) // what stopServer would have done
      expect(parts()).toEqual([])
      expect(fs.existsSync(journal)).toBe(false)
      expect(fs.readFileSync(dest, "utf8")).toBe("the old content")
      expect(await pending).toBeInstanceOf(Error)
    } finally {
      fs.rmSync(outside, { recursive: true, force: true })
    }
  })
})
