/**
 * The harness of the `hf-sandbox` CLI tests (test/cli/local.test.ts, hfJobs.test.ts): the CLI run in this
 * process (`runCli`: the same parser and handlers as the program, with their own stdout, stderr and
 * environment), or as the real program in a child process where only that can show what is tested (exit
 * codes as the shell sees them, Ctrl-C, a closed pipe, a server that outlives the CLI). For those the CLI
 * is bundled with esbuild once per worker, for all the files it runs (test/support/bundleCli.ts), laid
 * out like the package (dist/cli next to rpc-server) so that it finds the server script exactly as
 * installed. After every test nothing may be left running: no local server, no live job.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Writable } from "node:stream"
import { afterAll, afterEach, assert, beforeAll } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Testing from "hf-sandbox/testing"
import { runCli } from "../../src/cli/app.js"
import { sharedCli } from "./bundleCli.js"
import { waitGone } from "./processes.js"

export let work: string
let bin: string
export let stateDir: string
let scope: Scope.CloseableScope
export let emulator: Testing.HubEmulator

/**
 * Registers the hooks of a CLI test file: a bundle of the CLI, a state directory and a Hub emulator for
 * the file, and after every test the check that nothing is left running.
 */
export const useCliHarness = () => {
  beforeAll(setUp)
  afterAll(tearDown)
  afterEach(leftNothing)
}

const setUp = async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-cli-test-"))
  bin = await sharedCli()
  stateDir = path.join(work, "state")
  scope = Effect.runSync(Scope.make())
  // Small pages: ls and kill --all must follow them.
  emulator = await Effect.runPromise(
    Scope.extend(Testing.make({ schedulingDelay: "100 millis", listPageSize: 2 }), scope)
  )
}

const tearDown = async () => {
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  if (work !== undefined) fs.rmSync(work, { recursive: true, force: true })
}

// ---------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------

export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly stdoutBytes: Buffer
}

/** The environment of the CLI: nothing of the test runner's, only what a user would have. */
export const cliEnv = (hf: boolean, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  HOME: work,
  LANG: "C.UTF-8",
  HF_SANDBOX_STATE_DIR: stateDir,
  ...(hf
    ? {
        HF_ENDPOINT: emulator.url,
        HF_TOKEN: Redacted.value(emulator.token),
        HF_SANDBOX_EMULATOR_URL: emulator.url
      }
    : {}),
  ...extra
})

export const start = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  spawn(process.execPath, [bin, ...args], {
    env: cliEnv(options.hf ?? false, options.env),
    stdio: ["ignore", "pipe", "pipe"]
  })

export const finish = (child: ChildProcess): Promise<Result> =>
  new Promise((resolve, reject) => {
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout!.on("data", (b: Buffer) => out.push(b))
    child.stderr!.on("data", (b: Buffer) => err.push(b))
    child.once("error", reject)
    child.once("close", (code, signal) => {
      const stdoutBytes = Buffer.concat(out)
      resolve({ code, signal, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes })
    })
  })

/** Runs the real program to its end, in a child process. */
export const binary = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  finish(start(args, options))

/**
 * Starts the CLI in this process, with its own stdout, stderr and environment: `stdout()` is what it has
 * written so far, `done` its result, `interrupt` what Ctrl-C does to the program (its exit code is then
 * 130, as the child-process tests show).
 */
export const startInProcess = (
  args: ReadonlyArray<string>,
  options: { hf?: boolean; env?: Record<string, string> } = {}
) => {
  const out: Array<Buffer> = []
  const err: Array<Buffer> = []
  // Kept as it is written, so that what a finished run wrote is all there.
  const sink = (chunks: Array<Buffer>) =>
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(Buffer.from(chunk))
        callback()
      }
    })
  const stdout = sink(out)
  const stderr = sink(err)
  const fiber = Effect.runFork(
    runCli([process.execPath, "hf-sandbox", ...args], { stdout, stderr, env: cliEnv(options.hf ?? false, options.env) })
  )
  const result = (code: number | null): Result => {
    const stdoutBytes = Buffer.concat(out)
    return { code, signal: null, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes }
  }
  const done = Effect.runPromise(Fiber.await(fiber)).then((exit) =>
    result(Exit.isSuccess(exit) ? exit.value : Exit.isInterrupted(exit) ? 130 : 1)
  )
  return {
    stdout: () => Buffer.concat(out).toString(),
    done,
    /** Interrupts the run and waits for its release: the code is then 130, as for the program. */
    interrupt: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => done)
  }
}

/** Runs the CLI to its end, in this process. */
export const cli = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  startInProcess(args, options).done

/** Runs a shell snippet in which `$HF_SANDBOX` is the CLI, as a user's script would. */
export const shell = (script: string, hf = false) =>
  finish(
    spawn("/bin/sh", ["-c", script], {
      cwd: work,
      env: { ...cliEnv(hf), HF_SANDBOX: `${process.execPath} ${bin}` },
      stdio: ["ignore", "pipe", "pipe"]
    })
  )

/** Fails with the CLI's output when it did not exit with `code`. */
export const expectCode = (result: Result, code: number) =>
  assert.strictEqual(result.code, code, `exit code (stdout: ${result.stdout} / stderr: ${result.stderr})`)

export const local = (args: ReadonlyArray<string>) => cli(["--local", ...args])
export const hf = (args: ReadonlyArray<string>) => cli(args, { hf: true })

/** The local sandboxes' files (the namespace cache of HF commands lives beside them, in `namespaces/`). */
export const stateFiles = () =>
  fs.existsSync(stateDir) ? fs.readdirSync(stateDir).filter((n) => n !== "namespaces") : []
export const stateOf = (id: string) =>
  JSON.parse(fs.readFileSync(path.join(stateDir, `${id}.json`), "utf8")) as { pid: number; token: string }

export const job = async (id: string) => {
  const record = await Effect.runPromise(emulator.job(id))
  if (record === undefined) throw new Error(`no job ${id}`)
  return record
}

export const TERMINAL = ["COMPLETED", "ERROR", "CANCELED", "DELETED"]

// Nothing may outlive a test: no detached local server (and no state left for one), no live job.
export const localPids = new Set<number>()
const leftNothing = async () => {
  const leftovers: Array<string> = []
  const states = stateFiles().filter((f) => f.endsWith(".json"))
  if (states.length > 0) {
    leftovers.push(`local state: ${states.join(", ")}`)
    await local(["kill", "--all"])
  }
  const alive = await waitGone([...localPids])
  if (alive.length > 0) leftovers.push(`local servers still running: ${alive.join(", ")}`)
  for (const pid of alive) process.kill(-pid, "SIGKILL")
  localPids.clear()
  const jobs = await Effect.runPromise(emulator.jobs)
  const live = jobs.filter((j) => !TERMINAL.includes(j.stage))
  if (live.length > 0) {
    leftovers.push(`live jobs: ${live.map((j) => `${j.id} (${j.stage})`).join(", ")}`)
    await hf(["kill", "--all"])
  }
  const running = await waitGone(jobs.flatMap((j) => (j.pid === undefined ? [] : [j.pid])))
  if (running.length > 0) leftovers.push(`job processes still running: ${running.join(", ")}`)
  assert.deepStrictEqual(leftovers, [])
  assert.deepStrictEqual(stateFiles(), [], "the state directory is empty")
}

/** `create -q --local`, remembering the server's pid for the leak check. */
export const createLocal = async (...args: Array<string>) => {
  const result = await local(["create", "-q", ...args])
  expectCode(result, 0)
  const id = result.stdout.trim()
  assert.match(id, /^local-[0-9a-f]{12}$/)
  localPids.add(stateOf(id).pid)
  return id
}

export const createHf = async (...args: Array<string>) => {
  const result = await hf(["create", "-q", ...args])
  expectCode(result, 0)
  const id = result.stdout.trim()
  assert.match(id, /^[0-9a-f]{24}$/)
  return id
}

// ---------------------------------------------------------------------------
