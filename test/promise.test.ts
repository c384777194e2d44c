/**
 * The Promise facade (`hf-sandbox/promise`) with plain async tests: real local servers over loopback
 * HTTP, the HF path against the Hub emulator, and child programs that are signalled or end with a
 * sandbox still open.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { type ExecEvent, Sandbox, SandboxError } from "hf-sandbox/promise"
import * as Testing from "hf-sandbox/testing"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import { type Bundle, bundlePrograms } from "./support/bundleProgram.js"
import { fastSchedules } from "./support/hub.js"
import { closedPort } from "./support/ports.js"
import { isAlive, until, waitGone } from "./support/processes.js"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Polls `read` until it gives a value: a read that fails (a file not written yet) counts as not yet. */
const eventually = <A>(what: string | (() => string), read: () => Promise<A | undefined>, ms?: number): Promise<A> =>
  until(what, () => read().catch(() => undefined), ms)

// Files share their worker: what a test stubs (`vi.stubEnv`) is put back after it, before the next file.
afterEach(() => {
  vi.unstubAllEnvs()
})

/** The pid a command wrote to `file` in the sandbox (it `exec`s, so the pid stays its own). */
const pidIn = (sb: Sandbox, file: string) =>
  eventually(`a pid in ${file}`, async () => {
    const content = (await sb.files.readText(file)).trim()
    return content === "" ? undefined : Number(content)
  })

describe("Promise facade (local provider)", () => {
  let sb: Sandbox
  beforeAll(async () => {
    sb = await Sandbox.create({ provider: "local" })
  })
  afterAll(() => sb.terminate())

  it("exec returns the result; a non-zero exit is a result", async () => {
    const r = await sb.exec(["python3", "-c", "print(1+1)"])
    expect(r).toMatchObject({ exitCode: 0, signal: null, timedOut: false, stdout: "2\n", stderr: "" })
    const failed = await sb.exec("echo oops >&2; exit 3", { env: { X: "1" } })
    expect(failed).toMatchObject({ exitCode: 3, stderr: "oops\n" })
    expect(sb.provider).toBe("local")
    expect(sb.id).toMatch(/^local-/)
  })

  it("execStream yields Start, output chunks and Exit in a for-await loop", async () => {
    const events: Array<ExecEvent> = []
    for await (const event of sb.execStream("echo one; echo two >&2; echo three")) events.push(event)
    expect(events[0]?._tag).toBe("Start")
    expect(events.at(-1)).toMatchObject({ _tag: "Exit", exitCode: 0 })
    const out = events.flatMap((e) => (e._tag === "Stdout" ? [e.text] : [])).join("")
    const err = events.flatMap((e) => (e._tag === "Stderr" ? [e.text] : [])).join("")
    expect(out).toBe("one\nthree\n")
    expect(err).toBe("two\n")
  })

  it("leaving an execStream loop early (break) kills the remote command", async () => {
    let pid: number | undefined
    for await (const event of sb.execStream("echo started; exec sleep 30")) {
      if (event._tag === "Start") pid = event.pid
      if (event._tag === "Stdout") break
    }
    expect(pid).toBeTypeOf("number")
    expect(await waitGone([pid!])).toEqual([])
  })

  it("an aborted exec rejects with the signal's reason at once, and its command dies", async () => {
    const controller = new AbortController()
    // The command outlives the test's timeout: a rejection that waited for it would never come.
    const running = sb.exec("echo $$ > abort-exec.pid; exec sleep 300", { signal: controller.signal })
    const pid = await pidIn(sb, "abort-exec.pid")
    expect(isAlive(pid)).toBe(true)
    controller.abort()
    await expect(running).rejects.toBe(controller.signal.reason)
    expect(await waitGone([pid])).toEqual([])
  })

  it("an already aborted signal rejects without running anything", async () => {
    const signal = AbortSignal.abort()
    await expect(sb.exec("touch should-not-exist", { signal })).rejects.toBe(signal.reason)
    await expect(sb.files.write("should-not-exist", "x", { signal })).rejects.toBe(signal.reason)
    expect(await sb.files.exists("should-not-exist")).toBe(false)
  })

  it("aborting during an execStream loop rejects the loop and kills the command", async () => {
    const controller = new AbortController()
    let pid: number | undefined
    const loop = (async () => {
      for await (const event of sb.execStream("exec sleep 30", { signal: controller.signal })) {
        if (event._tag === "Start") {
          pid = event.pid
          setTimeout(() => controller.abort(), 50)
        }
      }
    })()
    expect(await loop.catch((e: unknown) => e)).toBe(controller.signal.reason)
    expect(await waitGone([pid!])).toEqual([])
  })

  it("failures are the typed errors themselves (instanceof, _tag), not wrappers", async () => {
    const error = await sb.files.readText("no/such/file.txt").catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SandboxError.FileNotFoundError)
    expect(error).toMatchObject({ _tag: "FileNotFoundError", path: "no/such/file.txt" })
    expect((error as Error).message).toContain("No such file or directory")
    await expect(sb.exec(["no-such-program-xyz"])).rejects.toBeInstanceOf(SandboxError.CommandNotFoundError)
    await sb.files.mkdir("a-dir")
    await expect(sb.files.read("a-dir")).rejects.toMatchObject({ _tag: "IsDirectoryError" })
  })

  it("files: every method, with strings, bytes, async iterables and streamed reads", async () => {
    const f = sb.files
    await f.write("t/a.txt", "hello")
    await f.write("t/b.bin", new Uint8Array([0, 1, 2, 255]), { mode: 0o600 })
    async function* chunks() {
      yield "stream "
      yield new TextEncoder().encode("of ")
      yield Buffer.from("chunks")
    }
    await f.write("t/c.txt", chunks())
    await f.write("t/d.txt", new Blob(["from a web stream"]).stream())
    expect(await f.readText("t/a.txt")).toBe("hello")
    expect([...(await f.read("t/b.bin"))]).toEqual([0, 1, 2, 255])
    expect(await f.readText("t/c.txt")).toBe("stream of chunks")
    expect(await f.readText("t/d.txt")).toBe("from a web stream")
    expect((await f.stat("t/b.bin")).mode & 0o777).toBe(0o600)
    expect(await f.exists("t/a.txt")).toBe(true)

    const parts: Array<Uint8Array> = []
    for await (const part of f.readStream("t/c.txt")) parts.push(part)
    expect(text(Buffer.concat(parts))).toBe("stream of chunks")

    await f.mkdir("t/sub/deeper")
    await f.rename("t/a.txt", "t/sub/a.txt")
    await f.chmod("t/sub/a.txt", 0o755)
    await f.symlink("t/link", "sub/a.txt")
    expect((await f.stat("t/link")).type).toBe("symlink")
    expect((await f.stat("t/sub/a.txt")).mode & 0o777).toBe(0o755)
    expect((await f.list("t")).map((e) => e.name)).toEqual(["b.bin", "c.txt", "d.txt", "link", "sub"])
    expect((await f.list("t", { recursive: true })).map((e) => e.name)).toContain("sub/deeper")
    await expect(f.remove("t/sub")).rejects.toBeInstanceOf(SandboxError.IsDirectoryError)
    await f.remove("t/sub", { recursive: true })
    expect(await f.exists("t/sub")).toBe(false)

    const local = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-promise-"))
    try {
      fs.writeFileSync(path.join(local, "up.txt"), "uploaded")
      fs.mkdirSync(path.join(local, "tree/inner"), { recursive: true })
      fs.writeFileSync(path.join(local, "tree/inner/x.txt"), "x")
      const progress: Array<number> = []
      await f.upload(path.join(local, "up.txt"), "t/up.txt", { onProgress: (p) => progress.push(p.bytes) })
      expect(progress.at(-1)).toBe(8)
      await f.download("t/up.txt", path.join(local, "down.txt"))
      expect(fs.readFileSync(path.join(local, "down.txt"), "utf8")).toBe("uploaded")
      await f.uploadDir(path.join(local, "tree"), "t/tree")
      expect(await f.readText("t/tree/inner/x.txt")).toBe("x")
      await f.downloadDir("t/tree", path.join(local, "tree-back"))
      expect(fs.readFileSync(path.join(local, "tree-back/inner/x.txt"), "utf8")).toBe("x")
    } finally {
      fs.rmSync(local, { recursive: true, force: true })
    }
  })

  it("a write from an async iterable that throws rejects with that very error", async () => {
    const boom = new Error("source failed")
    async function* failing() {
      yield "partial "
      throw boom
    }
    await expect(sb.files.write("t/failing.txt", failing())).rejects.toBe(boom)
  })

  it("spawn gives a handle with wait, kill and output; processes lists it", async () => {
    const proc = await sb.spawn("echo out; echo err >&2; exec sleep 30", { tag: "sleeper" })
    expect(proc.id).toMatch(/^p-/)
    const listed = await sb.processes()
    expect(listed.find((p) => p.id === proc.id)).toMatchObject({ tag: "sleeper", running: true })
    expect((await sb.process(proc.pid)).id).toBe(proc.id)
    await expect(sb.process("p-999999")).rejects.toMatchObject({ _tag: "ProcessNotFoundError" })
    const seen = await eventually('"out" in the process\'s output', async () => {
      let out = ""
      for await (const event of proc.output()) if (event._tag === "Stdout") out += event.text
      return out.includes("out") ? out : undefined
    })
    expect(seen).toBe("out\n")
    expect(await proc.kill("SIGTERM")).toBe(true)
    expect(await proc.wait()).toMatchObject({ exitCode: null, signal: 15 })
    expect(await proc.kill()).toBe(false)
    const tags: Array<string> = []
    for await (const event of proc.output({ follow: true })) tags.push(event._tag)
    expect(tags.at(-1)).toBe("Exit")
  })

  it("await using on a spawned process kills it at the end of the block", async () => {
    let pid: number
    {
      await using proc = await sb.spawn("exec sleep 30")
      pid = proc.pid
      expect(isAlive(pid)).toBe(true)
    }
    expect(await waitGone([pid])).toEqual([])
  })

  it("bad options reject with typed errors naming them; exec gives the raw bytes too", async () => {
    // The file's shared sandbox: nothing here needs one of its own.
    const error = await sb.exec("true", { maxOutputBytes: 0 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SandboxError.InvalidArgumentError)
    expect((error as Error).message).toContain("maxOutputBytes")
    const buffer = await sb.spawn("true", { bufferBytes: 0 }).catch((e: unknown) => e)
    expect(buffer).toBeInstanceOf(SandboxError.InvalidArgumentError)
    expect((buffer as Error).message).toContain("bufferBytes")
    // The facade passes the option on: the sandbox keeps only the last 4 bytes.
    const kept = await sb.spawn(["printf", "0123456789"], { bufferBytes: 4 })
    await kept.wait()
    let tail = ""
    for await (const event of kept.output()) if (event._tag === "Stdout") tail += event.text
    expect(tail).toBe("6789")
    const r = await sb.exec(["printf", "\\377"], { maxOutputBytes: 16 })
    expect([...r.stdoutBytes]).toEqual([0xff])
    const idle = await Sandbox.create({ provider: "local", idleTimeout: -1 }).catch((e: unknown) => e)
    expect(idle).toMatchObject({ _tag: "StartError", reason: "InvalidOptions" })
    expect((idle as Error).message).toContain("idleTimeout")
  })

  it("logs follows until aborted", async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 200)
    const lines: Array<string> = []
    const following = (async () => {
      for await (const line of sb.logs({ follow: true, signal: controller.signal })) lines.push(line)
    })()
    expect(await following.catch((e: unknown) => e)).toBe(controller.signal.reason)
  })
})

describe("Promise facade lifetime", () => {
  it("await using terminates the sandbox: its server is gone and later calls fail with TerminatedError", async () => {
    const listeners = process.listenerCount("SIGINT")
    let pid: number
    let escaped: Sandbox
    {
      await using sb = await Sandbox.create({ provider: "local" })
      escaped = sb
      pid = sb.details.pid as number
      expect(isAlive(pid)).toBe(true)
      // Exit handlers are installed while a sandbox is open, and only then.
      expect(process.listenerCount("SIGINT")).toBe(listeners + 1)
    }
    expect(await waitGone([pid])).toEqual([])
    expect(process.listenerCount("SIGINT")).toBe(listeners)
    await expect(escaped.exec("true")).rejects.toBeInstanceOf(SandboxError.TerminatedError)
    await escaped.terminate() // idempotent
  })

  it("terminate stops the server; a failed start rejects with StartError and leaves nothing", async () => {
    const sb = await Sandbox.create({ provider: "local" })
    const pid = sb.details.pid as number
    await sb.terminate()
    expect(await waitGone([pid])).toEqual([])
    const error = await Sandbox.create({ provider: "local", python: "/no/such/python3" }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SandboxError.StartError)
    expect(error).toMatchObject({ _tag: "StartError", reason: "SpawnFailed" })
  })

  it("an unknown provider rejects with a StartError naming it, not a TypeError", async () => {
    for (const start of [
      () => Sandbox.create({ provider: "modal" as never }),
      () => Sandbox.connect("abc", { provider: "modal" as never })
    ]) {
      const error = await start().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(SandboxError.StartError)
      expect(error).toMatchObject({ _tag: "StartError", reason: "InvalidOptions" })
      expect((error as Error).message).toContain('"modal"')
    }
  })

  it("connect infers the local provider from a local-… id, as the CLI does", async () => {
    const made = await Sandbox.create({ provider: "local", detach: true })
    try {
      const attached = await Sandbox.connect(made.id)
      expect(attached.provider).toBe("local")
      expect((await attached.exec("echo attached")).stdout).toBe("attached\n")
    } finally {
      await made.terminate()
    }
  })

  it("a missing token is explained in the facade's terms (Sandbox.create({ token }), not a layer)", async () => {
    vi.stubEnv("HF_TOKEN", "")
    vi.stubEnv("HUGGING_FACE_HUB_TOKEN", "")
    vi.stubEnv("HF_TOKEN_PATH", "/nonexistent/token")
    const error = await Sandbox.create({ endpoint: "http://127.0.0.1:9" }).catch((e: unknown) => e)
    expect(error).toMatchObject({ _tag: "StartError", reason: "NoToken" })
    expect((error as Error).message).toContain("Sandbox.create({ token")
    expect((error as Error).message).not.toContain("HfJobs.layer")
  })

  it("an unreachable Hub is explained in the facade's terms (Sandbox.create({ endpoint }), not a layer)", async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`
    const error = await Sandbox.create({ endpoint, token: "hf_unreachable_test_token" }).catch((e: unknown) => e)
    expect(error).toMatchObject({ _tag: "StartError", reason: "HubUnreachable" })
    expect((error as Error).message).toContain(
      "Check the network, and HF_ENDPOINT (or Sandbox.create({ endpoint })) if you set one."
    )
    expect((error as Error).message).not.toContain("HfJobs.layer")
  })

  it("an aborted create rejects with the signal's reason", async () => {
    const signal = AbortSignal.abort()
    await expect(Sandbox.create({ provider: "local", signal })).rejects.toBe(signal.reason)
    const controller = new AbortController()
    const creating = Sandbox.create({ provider: "local", signal: controller.signal })
    controller.abort()
    await expect(creating).rejects.toBe(controller.signal.reason)
  })
})

// The child programs, bundled once for the file (see test/support/bundleProgram.ts).
const CHILD = "test/support/promiseChild.ts"
const TELEMETRY_CHILD = "test/support/promiseTelemetryChild.ts"
const STRETCH_TIMERS = "test/support/stretchTimers.ts"
let programs: Bundle
beforeAll(async () => {
  programs = await bundlePrograms([CHILD, TELEMETRY_CHILD, STRETCH_TIMERS])
})
afterAll(() => programs?.remove())

/** Runs test/support/promiseChild.ts in a child Node process, as a user would run their program. */
const child = (mode: string) => {
  const proc = spawn(process.execPath, [programs.paths[CHILD]!, mode], {
    cwd: path.resolve(import.meta.dirname, ".."),
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  proc.stdout.on("data", (d) => {
    stdout += d
  })
  proc.stderr.on("data", (d) => {
    stderr += d
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on("exit", (code, signal) => resolve({ code, signal }))
  })
  const ready = eventually(
    () => `the child's JSON line on stdout: ${stdout}`,
    async () => {
      const line = stdout.split("\n").find((l) => l.startsWith("{"))
      if (line === undefined) return undefined
      return JSON.parse(line) as { server: number; command?: number }
    },
    50_000
  ).catch((e) => {
    proc.kill("SIGKILL")
    throw new Error(`${e.message}; stderr: ${stderr}`)
  })
  return { proc, ready, exited, output: () => ({ stdout, stderr }) }
}

// Each test is a program of its own, with its own sandbox: they run side by side.
describe.concurrent("Promise facade: a program that is signalled or ends with a sandbox open", () => {
  for (const [mode, signal] of [
    ["idle", "SIGINT"],
    ["idle", "SIGTERM"],
    ["exec", "SIGTERM"],
    ["exec", "SIGINT"]
  ] as const) {
    it(`${signal} while ${mode === "idle" ? "idle" : "awaiting a remote command"}: sandbox terminated, process dies of ${signal}`, async () => {
      const run = child(mode)
      const { server, command } = await run.ready
      expect(isAlive(server)).toBe(true)
      run.proc.kill(signal)
      const exit = await run.exited
      expect(exit, JSON.stringify(run.output())).toMatchObject({ code: null, signal })
      expect(await waitGone(command === undefined ? [server] : [server, command])).toEqual([])
      expect(run.output().stdout).not.toContain("unreachable")
      expect(run.output().stderr).toBe("")
    })
  }

  for (const [mode, code, how] of [
    ["end", 3, "ends normally (exitCode 3)"],
    ["exit", 4, "calls process.exit(4)"],
    ["throw", 1, "dies of an uncaught exception"]
  ] as const) {
    it(`a program that ${how} with a sandbox open exits with ${code} and leaves no server`, async () => {
      const run = child(mode)
      const { server } = await run.ready
      const exit = await run.exited
      expect(exit, JSON.stringify(run.output())).toMatchObject({ code, signal: null })
      expect(await waitGone([server])).toEqual([])
    })
  }
})

describe("Promise facade on HF Jobs (Hub emulator)", () => {
  const scope = Effect.runSync(Scope.make())
  let emulator: Testing.HubEmulator
  beforeAll(async () => {
    emulator = await Effect.runPromise(Testing.make({ schedulingDelay: "100 millis" }).pipe(Scope.extend(scope)))
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  const fast = fastSchedules
  const hf = () => ({
    token: Redacted.value(emulator.token),
    endpoint: emulator.url,
    publicDns: false as const,
    schedules: fast,
    httpClient: Testing.routeHttpClient(emulator)
  })
  const stageOf = async (id: string) => (await Effect.runPromise(emulator.job(id)))?.stage
  // A release asks the sandbox's server to shut down before it cancels the job: it may complete first.
  const ended = (stage: string | undefined) => stage === "CANCELED" || stage === "COMPLETED"

  // The tests that do not count telemetry pings nor set faults run side by side, each with its own sandbox.
  for (const transport of ["proxy", "tunnel"] as const) {
    it.concurrent(`create (the default provider), exec, files and terminate over the ${transport}`, async () => {
      const sb = await Sandbox.create({ ...hf(), transport })
      expect(sb.provider).toBe("hf-jobs")
      expect(await stageOf(sb.id)).toBe("RUNNING")
      expect((await sb.exec(["python3", "-c", "print(1+1)"])).stdout).toBe("2\n")
      await sb.files.write("notes/hello.txt", "hello from a job")
      expect(await sb.files.readText("notes/hello.txt")).toBe("hello from a job")
      await sb.terminate()
      expect(
        await eventually(`job ${sb.id} to end`, async () => (ended(await stageOf(sb.id)) ? true : undefined))
      ).toBe(true)
    })
  }

  it.concurrent("a spawned process's output({ follow: true }) arrives live through the quick tunnel", async () => {
    const sb = await Sandbox.create({ ...hf(), transport: "tunnel" })
    try {
      // The process cannot end before the first line was seen: it waits for a file written only then.
      const proc = await sb.spawn("echo first; while [ ! -e go ]; do sleep 0.05; done; echo second", {
        timeout: "60 seconds"
      })
      let out = ""
      let released: Promise<void> | undefined
      for await (const event of proc.output({ follow: true })) {
        if (event._tag === "Stdout") out += event.text
        if (released === undefined && out.includes("first")) released = sb.files.write("go", "")
      }
      await released
      expect(out).toBe("first\nsecond\n")
      expect(await proc.wait()).toMatchObject({ exitCode: 0 })
    } finally {
      await sb.terminate()
    }
  }, 45_000)

  it.concurrent("connect attaches by id; disposing it only detaches, terminate cancels the job", async () => {
    await using owner = await Sandbox.create({ ...hf(), transport: "proxy" })
    {
      await using attached = await Sandbox.connect(owner.id, hf())
      expect((await attached.exec("echo attached")).stdout).toBe("attached\n")
    }
    expect(await stageOf(owner.id)).toBe("RUNNING")
    expect((await owner.exec("echo still here")).stdout).toBe("still here\n")
    const again = await Sandbox.connect(owner.id, hf())
    await again.terminate()
    expect(
      await eventually(`job ${owner.id} to end`, async () => (ended(await stageOf(owner.id)) ? true : undefined))
    ).toBe(true)
  })

  it.concurrent("a refused token is named as the facade's `token` option, not a layer's", async () => {
    const error = await Sandbox.create({ ...hf(), token: "hf_wrong_0000000000000000000000" }).catch((e: unknown) => e)
    expect(error).toMatchObject({ _tag: "StartError", reason: "HubRejected" })
    expect((error as Error).message).toContain(
      "The Hub rejected the token from the `token` option: run `hf auth login`"
    )
    expect((error as Error).message).not.toContain("HfJobs.layer")
  })

  it("a Hub transfer refused for its token says the call's `token` or Sandbox.create({ token })", async () => {
    // A local sandbox's Hub is HF_ENDPOINT; no token is found, so a private repo answers 401.
    vi.stubEnv("HF_ENDPOINT", emulator.url)
    vi.stubEnv("HF_TOKEN", "")
    vi.stubEnv("HUGGING_FACE_HUB_TOKEN", "")
    vi.stubEnv("HF_TOKEN_PATH", "/nonexistent/token")
    const repo = `${emulator.user}/private-promise-${Math.random().toString(36).slice(2, 8)}`
    await Effect.runPromise(emulator.seedRepo({ repo, private: true, files: { "x.txt": "secret" } }))
    await using sb = await Sandbox.create({ provider: "local" })
    const error = await sb.files.fromHub({ repo }, "priv").catch((e: unknown) => e)
    expect(error).toMatchObject({ _tag: "HubTransferError", reason: "Unauthorized", surface: "promise" })
    expect((error as Error).message).toContain(
      "Pass a token that can read (or write) this repo: the call's `token` option, or the sandbox's (Sandbox.create({ token }) on HF Jobs"
    )
    expect((error as Error).message).not.toContain("HfJobs.layer")
  })

  it("create and terminate send the original's two anonymous telemetry events; opt-outs send none; a hanging endpoint fails nothing", async () => {
    // Pings are fire-and-forget: a terminate ping of an earlier test may still arrive, so only the
    // creates count, and a sandbox's terminate is found by its session id.
    const pings = () => Effect.runPromise(emulator.telemetry)
    const creates = async (from: number) => (await pings()).slice(from).filter((p) => p.path.endsWith("/create"))
    const before = (await pings()).length
    // The opted-out sandboxes first: a ping of theirs would be sent before the next sandbox even starts,
    // so once that one's pings have arrived, theirs would have too (no waiting on a clock for an absence).
    for (const name of ["HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK"]) {
      vi.stubEnv(name, "1")
      try {
        const quiet = await Sandbox.create({ ...hf(), transport: "proxy" })
        await quiet.terminate()
      } finally {
        // Each opt-out alone, and none for the sandbox below.
        vi.unstubAllEnvs()
      }
    }
    const sb = await Sandbox.create({ ...hf(), transport: "proxy" })
    await sb.terminate()
    const [create] = await eventually("a create ping", async () => {
      const found = await creates(before)
      return found.length > 0 ? found : undefined
    })
    expect(create!.path).toBe("/api/telemetry/hf-sandbox/create")
    const session = /session_id\/([0-9a-f]+)/.exec(create!.userAgent)?.[1]
    const terminate = await eventually(`the terminate ping of session ${session}`, async () =>
      (await pings()).find((p) => p.path.endsWith("/terminate") && p.userAgent.includes(`session_id/${session}`))
    )
    expect(terminate.path).toBe("/api/telemetry/hf-sandbox/terminate")
    expect(await creates(before), "the opted-out sandboxes sent nothing").toHaveLength(1)

    for (const fault of ["hang", "reset"] as const) {
      emulator.faults.telemetry = fault
      try {
        const count = (await pings()).length
        const held = await Sandbox.create({ ...hf(), transport: "proxy" })
        expect((await held.exec("echo unaffected")).stdout).toBe("unaffected\n")
        await held.terminate()
        await eventually("a create ping", async () => ((await creates(count)).length > 0 ? true : undefined))
      } finally {
        emulator.faults.telemetry = undefined
      }
    }
  })

  it("a telemetry ping the Hub never answers does not keep a finished program alive", async () => {
    emulator.faults.telemetry = "hang"
    try {
      const before = (await Effect.runPromise(emulator.telemetry)).length
      // Every timer of 2 s or more lasts an hour in the child: a program that waited for its pings' 3 s
      // bound (or any other long timer) would not end before this test's bound, loaded machine or not.
      const proc = spawn(
        process.execPath,
        [
          "--import",
          programs.paths[STRETCH_TIMERS]!,
          programs.paths[TELEMETRY_CHILD]!,
          emulator.url,
          Redacted.value(emulator.token)
        ],
        { cwd: path.resolve(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      proc.stdout.on("data", (d) => {
        stdout += d
      })
      proc.stderr.on("data", (d) => {
        stderr += d
      })
      // A bound for the test, not for the program: one held by its pings would not end within the hour.
      const guard = setTimeout(() => proc.kill("SIGKILL"), 45_000)
      const code = await new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)))
      clearTimeout(guard)
      expect(code, `the program did not end by itself: ${stderr}`).toBe(0)
      expect(JSON.parse(stdout)).toEqual({ said: "hi" })
      // Both pings were sent (the emulator may read them after it saw the child exit), and never answered.
      const paths = ["/api/telemetry/hf-sandbox/create", "/api/telemetry/hf-sandbox/terminate"]
      const sent = await eventually("the create and terminate pings", async () => {
        const seen = (await Effect.runPromise(emulator.telemetry)).slice(before).map((p) => p.path)
        return paths.every((p) => seen.includes(p)) ? seen : undefined
      })
      expect(sent).toEqual(expect.arrayContaining(paths))
    } finally {
      emulator.faults.telemetry = undefined
    }
  })

  it("a bad token rejects with the Hub's typed error", async () => {
    const error = await Sandbox.create({ ...hf(), token: "hf_wrong", transport: "proxy" }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SandboxError.StartError)
    expect(error).toMatchObject({ _tag: "StartError", reason: "HubRejected" })
  })
})
