/**
 * The harness of the suites that drive `rpc-server/sbx_server` directly (Node built-ins and `fetch`
 * only, no library code): start a real server on a free port with a fresh token and temp dir, and stop
 * it within a bound.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { until, withTimeout } from "./processes.js"
import { pythonJson } from "./python.js"

export const SERVER = fileURLToPath(new URL("../../rpc-server/sbx_server", import.meta.url))
/** Set `SBX_CONFORMANCE_PYTHON` to run the server suites with another interpreter (e.g. a Python 3.8). */
export const PYTHON = process.env.SBX_CONFORMANCE_PYTHON ?? "python3"

/**
 * A script run in the servers' interpreter with the server package importable: its first argument is the
 * package's directory, for `sys.path.insert(0, sys.argv[1])`. What it prints, as {@link pythonJson} reads it.
 */
export const serverPython = (script: string): Promise<unknown> =>
  pythonJson(script, { python: PYTHON, args: [path.dirname(SERVER)] })

const LISTENING = /^\{"event":"listening","host":"[^"]+","port":(\d+),"pid":(\d+),/

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Running {
  readonly proc: ChildProcessWithoutNullStreams
  readonly base: string
  readonly port: number
  readonly pid: number
  readonly token: string
  readonly dir: string
  readonly announce: string
  readonly exited: Promise<Exit>
  /**
   * Its stderr read to the end. The exit can be seen before the last of its output is read from the pipe:
   * a test that reads what a server said when it exited awaits this first.
   */
  readonly drained: Promise<void>
  readonly stderr: () => string
}

/**
 * Every server started by the current test file, for its afterAll. Files share their worker: the
 * set-up of each file (sharedWorker.ts) empties it after the file, stopping what the file left running.
 */
export const started: Array<Running> = []

/** The environment a server gets: ours, minus any token that would change what is under test. */
const baseEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of [
    "SBX_TOKEN",
    "HF_SANDBOX_TOKEN",
    "SBX_HOST",
    "SBX_PORT",
    "SBX_IDLE_TIMEOUT",
    "SBX_PING_INTERVAL"
  ]) {
    delete env[name]
  }
  return { ...env, ...extra }
}

/**
 * The interpreter's arguments that start the server with `args`, in the environment `env` it will have.
 * `-S` as the providers and the job's bootstrap run it (no site-packages: the server is stdlib-only).
 * Without it each server also ran the site's start-up hooks: ~50 ms of CPU where a .pth imports a package.
 * A test that puts modules on PYTHONPATH may bring a `sitecustomize` hook, which only `site` runs.
 */
export const serverArgs = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Array<string> => [
  "-u",
  ...(env.PYTHONPATH !== undefined ? [] : ["-S"]),
  SERVER,
  ...args
]

export const spawnServer = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  dir: string,
  command: ReadonlyArray<string> = [PYTHON]
) => {
  const [program, ...head] = command
  const childEnv = baseEnv(env)
  const proc = spawn(program!, [...head, ...serverArgs(args, childEnv)], {
    cwd: dir,
    env: childEnv,
    stdio: "pipe"
  })
  let stdout = ""
  let stderr = ""
  proc.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d
  })
  proc.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d
  })
  const exited = new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })))
  const drained = new Promise<void>((resolve) => proc.stderr.once("end", resolve).once("close", resolve))
  return { proc, exited, drained, stdout: () => stdout, stderr: () => stderr }
}

export interface StartOptions {
  readonly args?: ReadonlyArray<string>
  readonly env?: Record<string, string>
  readonly token?: string | null
  /** Prefix of the server's temp working directory. */
  readonly prefix?: string
  /** The interpreter and what runs it (default: [PYTHON]), e.g. a command that changes the user first. */
  readonly command?: ReadonlyArray<string>
  /** The uid that owns the server's working directory (for a server started as another user). */
  readonly owner?: number
}

export const startServer = async (options: StartOptions = {}): Promise<Running> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), options.prefix ?? "sbx-server-"))
  if (options.owner !== undefined) fs.chownSync(dir, options.owner, options.owner)
  const token = options.token === undefined ? randomBytes(32).toString("hex") : options.token
  const env = { ...(token === null ? {} : { SBX_TOKEN: token }), ...options.env }
  const s = spawnServer(["--port", "0", "--exit-on-stdin-eof", ...(options.args ?? [])], env, dir, options.command)
  let exitedEarly: Exit | undefined
  void s.exited.then((e) => {
    exitedEarly = e
  })
  await until(
    () => `the server to announce itself; stderr: ${s.stderr()}`,
    () => {
      if (s.stdout().includes("\n")) return true
      if (exitedEarly !== undefined)
        throw new Error(`server exited early ${JSON.stringify(exitedEarly)}: ${s.stderr()}`)
      return false
    },
    60_000,
    10
  )
  const announce = s.stdout().split("\n")[0]!
  const match = LISTENING.exec(announce)
  if (match === null) throw new Error(`unexpected listening line: ${announce}`)
  const port = Number(match[1])
  const running: Running = {
    proc: s.proc,
    base: `http://127.0.0.1:${port}`,
    port,
    pid: Number(match[2]),
    token: token ?? "",
    dir,
    announce,
    exited: s.exited,
    drained: s.drained,
    stderr: s.stderr
  }
  started.push(running)
  return running
}

export const stopServer = async (r: Running): Promise<Exit> => {
  if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGTERM")
  const exit = await withTimeout(r.exited, 10_000)
  if (exit === "timeout") {
    r.proc.kill("SIGKILL")
    throw new Error(`server ${r.pid} ignored SIGTERM`)
  }
  fs.rmSync(r.dir, { recursive: true, force: true })
  return exit
}

/**
 * Reads NDJSON events from an open streamed response until `until` holds (or the stream ends),
 * leaving the stream open for the caller.
 */
export const readEventsUntil = async <E>(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  until: (events: ReadonlyArray<E>) => boolean
): Promise<Array<E>> => {
  const decoder = new TextDecoder()
  const events: Array<E> = []
  let buffered = ""
  while (!until(events)) {
    const { value, done } = await reader.read()
    if (done) break
    buffered += decoder.decode(value, { stream: true })
    let nl = buffered.indexOf("\n")
    while (nl >= 0) {
      events.push(JSON.parse(buffered.slice(0, nl)) as E)
      buffered = buffered.slice(nl + 1)
      nl = buffered.indexOf("\n")
    }
  }
  return events
}

/** One NDJSON event as the server writes it. */
export type Event = Record<string, unknown> & { event: string }

/** The events of a whole NDJSON answer. */
export const parseNdjson = (text: string): Array<Event> =>
  text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Event)
