/**
 * The `hf-sandbox` CLI against the local provider (with a temp state directory) and against the Hub
 * emulator (jobs run as local processes; proxy and tunnel hosts are routed to it). Most commands run in
 * this process (`runCli`: the same parser and handlers as the program, with their own stdout, stderr and
 * environment), which saves a Node start-up per command. What only the real program can show runs it in
 * a child process: exit codes as the shell sees them, Ctrl-C, a closed pipe, a server that outlives the
 * CLI. For those the CLI is bundled once with esbuild, laid out like the package (dist/cli next to
 * rpc-server) so that it finds the server script exactly as installed.
 * After every test nothing may be left running: no local server, no live job.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Writable } from "node:stream"
import { fileURLToPath } from "node:url"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { build } from "esbuild"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"
import { runCli } from "../src/cli/app.js"
import { descendants } from "../src/internal/processTree.js"
import { isAlive, sleep, waitGone, waitNoneWithArg } from "./support/processes.js"

const root = fileURLToPath(new URL("..", import.meta.url))

let work: string
let bin: string
let stateDir: string
let scope: Scope.CloseableScope
let emulator: Testing.HubEmulator

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-cli-test-"))
  bin = path.join(work, "pkg", "dist", "cli", "main.mjs")
  await build({
    entryPoints: [path.join(root, "src/cli/main.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: bin,
    logLevel: "warning",
    // Bundled CommonJS dependencies still call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  stateDir = path.join(work, "state")
  scope = Effect.runSync(Scope.make())
  // Small pages: ls and kill --all must follow them.
  emulator = await Effect.runPromise(
    Scope.extend(Testing.make({ schedulingDelay: "100 millis", listPageSize: 2 }), scope)
  )
})

afterAll(async () => {
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  if (work !== undefined) fs.rmSync(work, { recursive: true, force: true })
})

// ---------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------

interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly stdoutBytes: Buffer
}

/** The environment of the CLI: nothing of the test runner's, only what a user would have. */
const cliEnv = (hf: boolean, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
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

const start = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  spawn(process.execPath, [bin, ...args], {
    env: cliEnv(options.hf ?? false, options.env),
    stdio: ["ignore", "pipe", "pipe"]
  })

const finish = (child: ChildProcess): Promise<Result> =>
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
const binary = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  finish(start(args, options))

/**
 * Starts the CLI in this process, with its own stdout, stderr and environment: `stdout()` is what it has
 * written so far, `done` its result, `interrupt` what Ctrl-C does to the program (its exit code is then
 * 130, as the child-process tests show).
 */
const startInProcess = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) => {
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
const cli = (args: ReadonlyArray<string>, options: { hf?: boolean; env?: Record<string, string> } = {}) =>
  startInProcess(args, options).done

/** Runs a shell snippet in which `$HF_SANDBOX` is the CLI, as a user's script would. */
const shell = (script: string, hf = false) =>
  finish(
    spawn("/bin/sh", ["-c", script], {
      cwd: work,
      env: { ...cliEnv(hf), HF_SANDBOX: `${process.execPath} ${bin}` },
      stdio: ["ignore", "pipe", "pipe"]
    })
  )

/** Fails with the CLI's output when it did not exit with `code`. */
const expectCode = (result: Result, code: number) =>
  assert.strictEqual(result.code, code, `exit code (stdout: ${result.stdout} / stderr: ${result.stderr})`)

const local = (args: ReadonlyArray<string>) => cli(["--local", ...args])
const hf = (args: ReadonlyArray<string>) => cli(args, { hf: true })

/** Waits until `predicate` holds, polling. */
const until = async (predicate: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not met in time")
    await sleep(25)
  }
}

/** The local sandboxes' files (the namespace cache of HF commands lives beside them, in `namespaces/`). */
const stateFiles = () => (fs.existsSync(stateDir) ? fs.readdirSync(stateDir).filter((n) => n !== "namespaces") : [])
const stateOf = (id: string) =>
  JSON.parse(fs.readFileSync(path.join(stateDir, `${id}.json`), "utf8")) as { pid: number; token: string }

const job = async (id: string) => {
  const record = await Effect.runPromise(emulator.job(id))
  if (record === undefined) throw new Error(`no job ${id}`)
  return record
}

const TERMINAL = ["COMPLETED", "ERROR", "CANCELED", "DELETED"]

// Nothing may outlive a test: no detached local server (and no state left for one), no live job.
const localPids = new Set<number>()
afterEach(async () => {
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
})

/** `create -q --local`, remembering the server's pid for the leak check. */
const createLocal = async (...args: Array<string>) => {
  const result = await local(["create", "-q", ...args])
  expectCode(result, 0)
  const id = result.stdout.trim()
  assert.match(id, /^local-[0-9a-f]{12}$/)
  localPids.add(stateOf(id).pid)
  return id
}

const createHf = async (...args: Array<string>) => {
  const result = await hf(["create", "-q", ...args])
  expectCode(result, 0)
  const id = result.stdout.trim()
  assert.match(id, /^[0-9a-f]{24}$/)
  return id
}

// ---------------------------------------------------------------------------
// Local provider
// ---------------------------------------------------------------------------

describe("hf-sandbox CLI, local provider", () => {
  it("create leaves a server running in its own session after the CLI exits; its state is the user's alone", async () => {
    // The real program: the server must outlive the process that made it.
    const created = await binary(["--local", "create"])
    expectCode(created, 0)
    const id = created.stdout.trim()
    const state = stateOf(id)
    localPids.add(state.pid)
    assert.include(created.stderr, "10m without a request", "the output says how the sandbox ends")
    assert.isTrue(isAlive(state.pid), "the server outlives the CLI")
    const stat = fs.readFileSync(`/proc/${state.pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    assert.strictEqual(Number(fields[3]), state.pid, "its own session (sid = pid)")
    assert.strictEqual(fs.statSync(path.join(stateDir, `${id}.json`)).mode & 0o777, 0o600)
    assert.strictEqual(fs.statSync(stateDir).mode & 0o777, 0o700)
    // The token is in the state file only: never on a command line, never printed.
    assert.match(state.token, /^[0-9a-f]{64}$/)
    assert.notInclude(fs.readFileSync(`/proc/${state.pid}/cmdline`, "utf8"), state.token)
    assert.notInclude(created.stdout + created.stderr, state.token)

    const listed = await local(["ls"])
    expectCode(listed, 0)
    assert.include(listed.stdout, id)

    const killed = await local(["kill", id])
    expectCode(killed, 0)
    assert.strictEqual(killed.stdout.trim(), id)
    assert.deepStrictEqual(await waitGone([state.pid]), [])
    assert.deepStrictEqual(stateFiles(), [])
  })

  it("-q output works in $(...): create, exec, kill in a shell script", async () => {
    const result = await shell(
      'set -e; id=$($HF_SANDBOX create --local -q); $HF_SANDBOX exec "$id" -- echo "hi from $id" > out.txt; ' +
        'cat out.txt; $HF_SANDBOX kill -q "$id"',
      false
    )
    expectCode(result, 0)
    const lines = result.stdout.trim().split("\n")
    assert.match(lines[0]!, /^hi from local-[0-9a-f]{12}$/)
    assert.strictEqual(lines[1], lines[0]!.slice("hi from ".length), "kill -q prints the id")
  })

  it("exec exits with the command's code: 0, 3, 124 on timeout, 128+N on a signal, 127 for a missing program", async () => {
    const id = await createLocal()
    expectCode(await local(["exec", id, "--", "true"]), 0)
    const three = await local(["exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
    expectCode(three, 3)
    assert.strictEqual(three.stdout, "out\n")
    assert.strictEqual(three.stderr, "err\n")
    const timedOut = await local(["exec", "--timeout", "1", id, "--", "sleep 30"])
    expectCode(timedOut, 124)
    assert.include(timedOut.stderr, "timed out")
    expectCode(await local(["exec", id, "--", "sh", "-c", "kill -TERM $$"]), 128 + 15)
    const missing = await local(["exec", id, "--", "no-such-program-xyz", "--flag"])
    expectCode(missing, 127)
    assert.include(missing.stderr, "no-such-program-xyz")
    expectCode(await local(["kill", id]), 0)
  })

  it("exec streams stdout and stderr live and apart, as bytes, with -e and --cwd", async () => {
    const id = await createLocal()
    // The command goes on only once the test has seen its first line: output held until the command ends
    // would never arrive, and the command never end.
    const go = path.join(work, "exec-go")
    const running = startInProcess([
      "--local",
      "exec",
      "-e",
      "GREETING=hello",
      "--cwd",
      "/",
      id,
      "--",
      `echo "$GREETING from $(pwd)"; while [ ! -e ${go} ]; do sleep 0.05; done; echo late >&2; echo done`
    ])
    await until(() => running.stdout().includes("hello from /\n"), 30_000)
    fs.writeFileSync(go, "")
    const result = await running.done
    expectCode(result, 0)
    assert.strictEqual(result.stdout, "hello from /\ndone\n")
    assert.strictEqual(result.stderr, "late\n")

    const binary = await local(["exec", id, "--", "printf", "\\000\\377\\376abc"])
    expectCode(binary, 0)
    assert.deepStrictEqual([...binary.stdoutBytes], [0, 255, 254, 97, 98, 99])

    // A reader that goes away stops the command, as SIGPIPE would stop a local one.
    const piped = await shell(`$HF_SANDBOX exec ${id} -- yes | head -n 2`)
    expectCode(piped, 0)
    assert.strictEqual(piped.stdout, "y\ny\n")
    await until(async () => (await local(["exec", id, "--", "pgrep -x yes || echo none"])).stdout === "none\n")
    expectCode(await local(["kill", id]), 0)
  })

  it("--json: one document per command, NDJSON for exec", async () => {
    const created = await local(["--json", "create", "--timeout", "10m"])
    expectCode(created, 0)
    const doc = JSON.parse(created.stdout) as {
      id: string
      provider: string
      idleTimeoutSeconds: number
      timeoutSeconds?: number
    }
    localPids.add(stateOf(doc.id).pid)
    assert.strictEqual(doc.provider, "local")
    assert.strictEqual(doc.idleTimeoutSeconds, 600)
    // A local sandbox has a lifetime only when given one; the server enforces it (--lifetime).
    assert.strictEqual(doc.timeoutSeconds, 600)
    if (process.platform === "linux") {
      assert.include(fs.readFileSync(`/proc/${stateOf(doc.id).pid}/cmdline`, "utf8").split("\0"), "--lifetime")
    }
    assert.strictEqual(created.stderr, "")

    const exec = await local(["exec", "--json", doc.id, "--", "echo a; echo b >&2; exit 5"])
    expectCode(exec, 5)
    const events = exec.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; data?: string; exitCode?: number })
    assert.strictEqual(events[0]!.event, "start")
    assert.deepInclude(events, { event: "stdout", data: "a\n" })
    assert.deepInclude(events, { event: "stderr", data: "b\n" })
    assert.deepInclude(events.at(-1)!, { event: "exit", exitCode: 5 })

    const listed = JSON.parse((await local(["ls", "--json"])).stdout) as Array<{ id: string }>
    assert.deepStrictEqual(
      listed.map((s) => s.id),
      [doc.id]
    )
    const spawned = await local(["spawn", "--json", doc.id, "--", "sleep", "30"])
    expectCode(spawned, 0)
    assert.match((JSON.parse(spawned.stdout) as { id: string }).id, /^p-\d+$/)
    const killed = await local(["kill", "--json", "--all"])
    expectCode(killed, 0)
    assert.deepStrictEqual(JSON.parse(killed.stdout), { killed: [doc.id], failed: [] })
    const failed = await local(["exec", "--json", doc.id, "--", "true"])
    expectCode(failed, 125)
    // The error's own tag, not the CLI's wrapper; and nothing "did not start": exec starts nothing.
    assert.strictEqual((JSON.parse(failed.stdout) as { error: { type: string } }).error.type, "StartError")
    assert.notInclude(failed.stderr, "did not start")
  })

  it("ls, logs and kill without a token say how to give one the CLI's way, under the error's own tag", async () => {
    const env = { HF_ENDPOINT: emulator.url, HF_TOKEN_PATH: path.join(work, "no-such-token") }
    for (const args of [["ls"], ["logs", "687fb701029421ae5549d998"], ["kill", "687fb701029421ae5549d998"]]) {
      const result = await cli([...args, "--json"], { env })
      expectCode(result, 1)
      const doc = JSON.parse(result.stdout) as {
        error?: { type: string }
        failed?: ReadonlyArray<{ type: string }>
      }
      // kill reports each id's failure in its document; the others fail as a whole.
      const error = doc.error ?? doc.failed![0]!
      const what = `${args[0]}: ${result.stderr}`
      assert.strictEqual(error.type, "StartError", what)
      assert.notInclude(result.stderr, "did not start", what)
      assert.notInclude(result.stderr, "HfJobs.layer", what)
      assert.include(result.stderr, "HF_TOKEN", what)
      assert.include(result.stderr, "hf auth login", what)
    }
  })

  it("cp copies a file and a directory both ways, docker-style", async () => {
    const id = await createLocal()
    const src = path.join(work, "cp-src")
    fs.mkdirSync(path.join(src, "sub"), { recursive: true })
    fs.writeFileSync(path.join(src, "a.txt"), "alpha")
    fs.writeFileSync(path.join(src, "sub", "b.bin"), Buffer.from([0, 1, 2, 255]))
    fs.chmodSync(path.join(src, "a.txt"), 0o755)
    fs.symlinkSync("a.txt", path.join(src, "link"))

    expectCode(await local(["cp", path.join(src, "a.txt"), `${id}:data/one.txt`]), 0)
    expectCode(await local(["cp", src, `${id}:data/tree`]), 0)
    expectCode(await local(["cp", src, `${id}:data/tree`]), 0) // onto an existing directory: lands inside
    const listing = await local(["exec", id, "--", "cd data && cat one.txt && find tree | sort"])
    expectCode(listing, 0)
    assert.strictEqual(
      listing.stdout,
      [
        "alphatree",
        "tree/a.txt",
        "tree/cp-src",
        "tree/cp-src/a.txt",
        "tree/cp-src/link",
        "tree/cp-src/sub",
        "tree/cp-src/sub/b.bin",
        "tree/link",
        "tree/sub",
        "tree/sub/b.bin",
        ""
      ].join("\n")
    )

    const back = path.join(work, "cp-back")
    fs.mkdirSync(back)
    expectCode(await local(["cp", `${id}:data/one.txt`, `${back}/`]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "one.txt"), "utf8"), "alpha")
    const copied = await local(["cp", "--json", `${id}:data/tree`, path.join(back, "tree")])
    expectCode(copied, 0)
    assert.strictEqual((JSON.parse(copied.stdout) as { bytes: number }).bytes, 18)
    assert.deepStrictEqual([...fs.readFileSync(path.join(back, "tree", "sub", "b.bin"))], [0, 1, 2, 255])
    assert.strictEqual(fs.statSync(path.join(back, "tree", "a.txt")).mode & 0o777, 0o755)
    assert.strictEqual(fs.readlinkSync(path.join(back, "tree", "link")), "a.txt")

    const missing = await local(["cp", `${id}:nope`, back])
    expectCode(missing, 1)
    assert.include(missing.stderr, "no such file or directory")
    expectCode(await local(["kill", id]), 0)
  })

  it("logs, spawn, and kill --all stop every server (and what it started) and empty the state directory", async () => {
    const first = await createLocal()
    const second = await createLocal("--idle-timeout", "5m")
    const spawned = await local(["spawn", "-q", first, "--", "sleep 300"])
    expectCode(spawned, 0)
    assert.match(spawned.stdout.trim(), /^p-\d+$/)
    const sleeper = (await descendants(stateOf(first).pid).pipe(Effect.runPromise)).slice()
    assert.isNotEmpty(sleeper)

    const listed = await local(["ls", "-q"])
    assert.deepStrictEqual(listed.stdout.trim().split("\n").sort(), [first, second].sort())

    const killed = await local(["kill", "--all"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), [first, second].sort())
    assert.deepStrictEqual(await waitGone([...localPids, ...sleeper]), [])
    assert.deepStrictEqual(stateFiles(), [])
    const logs = await local(["logs", first])
    expectCode(logs, 1)
    assert.include(logs.stderr, first)
  })

  it("logs of a local sandbox: its start, each command and how it ended; never a command's environment", async () => {
    const id = await createLocal()
    const secret = "s3cret-value-91c2"
    expectCode(await local(["exec", "-e", `TOKEN=${secret}`, id, "--", 'test -n "$TOKEN"; exit 3']), 3)
    expectCode(await local(["exec", "--timeout", "1", id, "--", "sleep", "30"]), 124)
    expectCode(await local(["spawn", "-q", "--tag", "web", id, "--", "sleep 300"]), 0)
    const logs = await local(["logs", id])
    expectCode(logs, 0)
    const text = logs.stdout
    assert.match(text, /started: version \S+ \(protocol \d+\), Python \S+, pid \d+, /)
    assert.match(text, /working directory \/\S+, listening on 127\.0\.0\.1:\d+/)
    assert.match(
      text,
      /command started, pid (\d+): test -n "\$TOKEN"; exit 3\n.*command pid \1 ended: exit status 3 \(/
    )
    assert.match(text, /command started, pid (\d+): sleep 30\n.*command pid \1 timed out after 1s: killed by signal 9/)
    assert.match(text, /command started, pid (\d+): sleep 300\n.*command pid \1 is background process p-1 "web"/)
    assert.notInclude(text, secret)
    expectCode(await local(["kill", id]), 0)
  })

  it("process ls, logs and kill: background processes by id or pid, with clear errors", async () => {
    const id = await createLocal()
    const first = await local(["spawn", "-q", id, "--tag", "web", "--", "echo hello; echo oops >&2; exec sleep 300"])
    expectCode(first, 0)
    const web = first.stdout.trim()
    const second = await local(["spawn", "-q", id, "--", "exit 3"])
    expectCode(second, 0)
    const done = second.stdout.trim()

    const listing = async () =>
      JSON.parse((await local(["process", "ls", "--json", id])).stdout) as Array<Sandbox.ProcessInfo>
    await until(async () => (await listing()).find((p) => p.id === done)?.running === false)
    const table = await local(["process", "ls", id])
    expectCode(table, 0)
    assert.match(table.stdout, new RegExp(`${web}\\s+\\d+\\s+web\\s+running`))
    assert.match(table.stdout, new RegExp(`${done}\\s+\\d+\\s+-\\s+exited \\(3\\)`))
    assert.deepStrictEqual((await local(["process", "ls", "-q", id])).stdout.trim().split("\n"), [web, done])

    const logs = await local(["process", "logs", id, web])
    expectCode(logs, 0)
    assert.strictEqual(logs.stdout, "hello\n")
    assert.strictEqual(logs.stderr, "oops\n")

    const pid = (await listing()).find((p) => p.id === web)!.pid
    const killed = await local(["process", "kill", "--json", id, String(pid), done])
    expectCode(killed, 0)
    assert.deepStrictEqual(JSON.parse(killed.stdout), { killed: [web], exited: [done] })
    assert.deepStrictEqual(await waitGone([pid]), [])
    assert.deepInclude(
      (await listing()).find((p) => p.id === web),
      { running: false, signal: 15 }
    )
    // Following an exited process replays its output and ends.
    const followed = await local(["process", "logs", "-f", "--json", id, web])
    expectCode(followed, 0)
    const events = followed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as object)
    assert.deepInclude(events, { event: "stdout", data: "hello\n" })
    assert.deepInclude(events, { event: "stderr", data: "oops\n" })
    assert.deepInclude(events.at(-1), { event: "exit", exitCode: null, signal: 15 })

    const unknown = await local(["process", "kill", id, "p-99"])
    expectCode(unknown, 1)
    assert.include(unknown.stderr, `no background process p-99 in ${id}`)
    const badSignal = await local(["process", "kill", "--signal", "NOPE", id, web])
    expectCode(badSignal, 2)
    assert.include(badSignal.stderr, "--signal must be")
    expectCode(await local(["kill", id]), 0)
  })

  it("a sandbox's idle timeout ends it; stale state is cleaned by ls", async () => {
    const idle = await createLocal("--idle-timeout", "1")
    const crashed = await createLocal()
    process.kill(stateOf(crashed).pid, "SIGKILL")
    await until(() => !isAlive(stateOf(idle).pid), 10_000)
    const follow = await local(["logs", "-f", idle])
    expectCode(follow, 0)
    assert.include(follow.stdout, "idle", "the server's log says why it stopped")
    assert.include(follow.stdout, "stopped: exit status 0")
    const listed = await local(["ls", "--json"])
    assert.deepStrictEqual(JSON.parse(listed.stdout), [])
    assert.deepStrictEqual(stateFiles(), [])
    const gone = await local(["exec", idle, "--", "true"])
    expectCode(gone, 125)
    assert.include(gone.stderr, idle)
  })

  it("run: create, exec, stop in one go, with the command's exit code; nothing is left", async () => {
    const result = await shell('out=$($HF_SANDBOX run --local -- "echo one-liner; exit 4"); echo "[$out] $?"')
    expectCode(result, 0)
    assert.strictEqual(result.stdout, "[one-liner] 4\n")
    assert.deepStrictEqual(stateFiles(), [], "run's sandbox is not detached")
  })

  it("Ctrl-C: run stops its sandbox, exec kills its command; both exit 130", async () => {
    const running = start(["--local", "run", "--", "echo ready; sleep 30"])
    const done = finish(running)
    let ready = false
    running.stdout!.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) ready = true
    })
    // A bound, not a race: on a loaded machine a Node start and a server start can take over 10 s.
    await until(() => ready, 60_000)
    const family = await descendants(running.pid!).pipe(Effect.runPromise)
    running.kill("SIGINT")
    const result = await done
    expectCode(result, 130)
    assert.deepStrictEqual(await waitGone(family), [], "the server and the command are gone")

    const id = await createLocal()
    const exec = start(["--local", "exec", "--json", id, "--", "sleep", "30"])
    const execDone = finish(exec)
    let pid: number | undefined
    exec.stdout!.on("data", (b: Buffer) => {
      const match = /"event":"start","pid":(\d+)/.exec(b.toString())
      if (match) pid = Number(match[1])
    })
    await until(() => pid !== undefined, 60_000)
    exec.kill("SIGINT")
    expectCode(await execDone, 130)
    assert.deepStrictEqual(await waitGone([pid!]), [], "the remote command was killed")
    expectCode(await local(["kill", id]), 0)
  })

  it("bad arguments: a clear message, exit code 2, no stack trace", async () => {
    const cases: Array<[Array<string>, string]> = [
      [["exec"], "Missing argument <ID>"],
      [["bogus"], "Invalid subcommand"],
      [["create", "--idle-timeout", "soon"], 'invalid --idle-timeout "soon"'],
      [["create", "-e", "NOVALUE"], 'invalid -e/--env "NOVALUE"'],
      [["create", "-s", "HF_SANDBOX_TEST_UNSET"], "HF_SANDBOX_TEST_UNSET is not set"],
      [["exec", "local-0123456789ab", "--timout", "5", "--", "ls"], "unknown option --timout"],
      [["exec", "--tiemout", "local-0123456789ab"], "unknown option --tiemout"],
      [["exec", "local-0123456789ab"], "missing the command"],
      [["kill"], "give their ids, or --all"],
      [["run", "echo", "hi"], "run needs --"],
      [["ls", "--", "x"], "unexpected --"],
      [["cp", "a", "b"], "must be in a sandbox"],
      [[], "usage: hf-sandbox"]
    ]
    for (const [args, message] of cases) {
      const result = await local(args)
      expectCode(result, 2)
      assert.include(result.stderr, message, args.join(" "))
      assert.notMatch(result.stderr, /^\s+at /m, "no stack trace")
    }
    const unknown = await local(["exec", "local-0123456789ab", "--", "true"])
    expectCode(unknown, 125)
    assert.include(unknown.stderr, "no local sandbox local-0123456789ab")
    assert.notMatch(unknown.stderr, /^\s+at /m)
  })
})

// ---------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------

describe("hf-sandbox --help", () => {
  const leaves = [
    "create",
    "exec",
    "spawn",
    "cp",
    "ls",
    "logs",
    "kill",
    "run",
    "process ls",
    "process kill",
    "process logs"
  ]

  /** Fails unless the help is fit for a terminal: short lines, no @effect/cli internals. */
  const readable = (text: string, what: string) => {
    for (const line of text.split("\n")) assert.isAtMost(line.length, 100, `${what}: ${line}`)
    assert.notInclude(text, "--wizard", what)
    assert.notInclude(text, "main.js", what)
    assert.notInclude(text, "A true or false value", what)
    assert.include(text, "EXAMPLES", what)
  }

  it("the overview lists every command and the options every command takes, with examples", async () => {
    for (const args of [["--help"], ["-h"], ["--local", "--help"]]) {
      const result = await local(args.slice(args[0] === "--local" ? 1 : 0))
      expectCode(result, 0)
      readable(result.stdout, args.join(" "))
      assert.include(result.stdout, "hf-sandbox [--local] [--json] [-q] COMMAND")
      for (const name of ["create", "exec", "spawn", "process", "cp", "ls", "logs", "kill", "run"]) {
        assert.match(result.stdout, new RegExp(`^  ${name} +\\S`, "m"), name)
      }
      for (const flag of ["--local", "--json", "--quiet", "--help", "--version"]) assert.include(result.stdout, flag)
    }
    const processes = await local(["process", "--help"])
    expectCode(processes, 0)
    readable(processes.stdout, "process --help")
    for (const name of ["ls", "kill", "logs"]) assert.match(processes.stdout, new RegExp(`^  ${name} +\\S`, "m"))
  })

  it("each command's help names hf-sandbox, describes every option and argument, and ends with examples", async () => {
    for (const leaf of leaves) {
      const result = await local([...leaf.split(" "), "--help"])
      expectCode(result, 0)
      const text = result.stdout
      readable(text, leaf)
      assert.include(text, `$ hf-sandbox ${leaf} `, leaf)
      assert.include(text.slice(text.indexOf("\nEXAMPLES\n")), `hf-sandbox ${leaf} `, leaf)
      // Every option and argument heading (unindented, after OPTIONS/ARGUMENTS) is followed by its description.
      const lines = text.slice(text.indexOf("\nARGUMENTS") + 1, text.indexOf("\nEXAMPLES")).split("\n")
      lines.forEach((line, i) => {
        if (!/^(<|-|\()/.test(line)) return
        const next = lines.slice(i + 1).find((l) => l !== "")
        assert.match(next ?? "", /^ {2}\S/, `${leaf}: ${line} has a description`)
      })
    }
  })

  it("an unknown option is reported as one, wherever it is; --wizard is one of them", async () => {
    const cases = [
      ["--wizard"],
      ["exec", "--wizard", "local-0123456789ab", "--", "true"],
      ["--completions", "bash"],
      ["ls", "--bogus"],
      ["--bogus", "ls"],
      ["cp", "--bogus", "a", "b"],
      ["logs", "--tail", "5", "--bogus", "local-0123456789ab"],
      ["process", "ls", "--bogus", "local-0123456789ab"],
      ["kill", "--bogus", "local-0123456789ab"]
    ]
    for (const args of cases) {
      const result = await local(args)
      expectCode(result, 2)
      const flag = args.find((a) => a.startsWith("--") && a !== "--tail" && a !== "--")!
      assert.include(result.stderr, `unknown option ${flag}`, args.join(" "))
      assert.notInclude(result.stderr, "Received unknown argument", args.join(" "))
    }
  })
})

// ---------------------------------------------------------------------------
// HF Jobs (emulated Hub)
// ---------------------------------------------------------------------------

describe("hf-sandbox CLI, HF Jobs (emulated Hub)", () => {
  const token = () => Redacted.value(emulator.token)

  it("create leaves the job running; exec attaches, streams and exits with the command's code; kill cancels it", async () => {
    const created = await hf(["create", "--flavor", "cpu-upgrade", "--timeout", "30m", "-e", "MODE=test"])
    expectCode(created, 0)
    const id = created.stdout.trim()
    assert.include(created.stderr, "10m")
    const record = await job(id)
    // The command has ended and released what it held: the job was left running, not cancelled.
    assert.strictEqual(record.stage, "RUNNING", "the job outlives the CLI")
    assert.strictEqual(record.cancelRequests, 0)
    const spec = record.spec as { flavor: string; timeoutSeconds: number; environment: Record<string, string> }
    assert.strictEqual(spec.flavor, "cpu-upgrade")
    assert.strictEqual(spec.timeoutSeconds, 1800)
    assert.strictEqual(spec.environment.MODE, "test")

    const ok = await hf(["exec", id, "--", "sh", "-c", 'echo "mode=$MODE"; echo warn >&2; exit 3'])
    expectCode(ok, 3)
    assert.strictEqual(ok.stdout, "mode=test\n")
    assert.strictEqual(ok.stderr, "warn\n")
    expectCode(await hf(["exec", "--timeout", "1s", id, "--", "sleep", "30"]), 124)

    const listed = await hf(["ls", "--json"])
    assert.deepInclude(
      (JSON.parse(listed.stdout) as Array<{ id: string; stage: string }>).map((s) => [s.id, s.stage]),
      [id, "RUNNING"]
    )
    const killed = await hf(["kill", id])
    expectCode(killed, 0)
    await until(async () => (await job(id)).stage === "CANCELED")
    for (const r of [created, ok, listed, killed]) assert.notInclude(r.stdout + r.stderr, token())
  })

  it("secrets travel as job secrets (a bare NAME from the environment) and are never printed", async () => {
    const result = await cli(
      ["create", "--json", "--transport", "proxy", "-s", "API_KEY", "-s", "OTHER=inline-value"],
      {
        hf: true,
        env: { API_KEY: "from-the-env-1234" }
      }
    )
    expectCode(result, 0)
    const { id } = JSON.parse(result.stdout) as { id: string }
    const record = await job(id)
    assert.strictEqual(record.secrets.API_KEY, "from-the-env-1234")
    assert.strictEqual(record.secrets.OTHER, "inline-value")
    const visible = JSON.stringify((record.spec as { environment: unknown }).environment)
    assert.notInclude(visible, "from-the-env-1234")
    assert.notInclude(visible, "inline-value")
    assert.notInclude(result.stdout + result.stderr, "from-the-env-1234")
    const inside = await hf(["exec", id, "--", "printenv API_KEY"])
    assert.strictEqual(inside.stdout, "from-the-env-1234\n")
    expectCode(await hf(["kill", id]), 0)
  })

  it("cp both ways over the Jobs proxy, a file and a directory; kill --all cancels every job", async () => {
    const first = await createHf("--transport", "proxy")
    const second = await createHf()
    const src = path.join(work, "hf-src")
    fs.mkdirSync(path.join(src, "nested"), { recursive: true })
    fs.writeFileSync(path.join(src, "x.txt"), "x-ray")
    fs.writeFileSync(path.join(src, "nested", "y.txt"), "yankee")
    expectCode(await hf(["cp", path.join(src, "x.txt"), `${first}:in/x.txt`]), 0)
    expectCode(await hf(["cp", src, `${first}:in/tree`]), 0)
    const seen = await hf(["exec", first, "--", "cat in/x.txt in/tree/nested/y.txt"])
    assert.strictEqual(seen.stdout, "x-rayyankee")
    const back = path.join(work, "hf-back")
    expectCode(await hf(["cp", `${first}:in/tree`, back]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "nested", "y.txt"), "utf8"), "yankee")
    expectCode(await hf(["cp", `${first}:in/x.txt`, path.join(back, "copy.txt")]), 0)
    assert.strictEqual(fs.readFileSync(path.join(back, "copy.txt"), "utf8"), "x-ray")

    const killed = await hf(["kill", "--all", "-q"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), [first, second].sort())
    for (const id of [first, second]) await until(async () => (await job(id)).stage === "CANCELED")
    const listed = await hf(["ls", "-q"])
    assert.strictEqual(listed.stdout, "")
  })

  it("ls and kill --all see sandboxes on every page of the Hub's listing", async () => {
    const post = (labels: Record<string, string>) =>
      fetch(`${emulator.url}/api/jobs/${emulator.user}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
        body: JSON.stringify({ dockerImage: "python:3.12", command: ["sleep", "60"], labels })
      }).then((r) => r.json() as Promise<{ id: string }>)
    // Jobs that carry the sandbox labels are listed as sandboxes; they need no server to be killed.
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) {
      const nonce = `${i}`.padStart(32, "0")
      ids.push((await post({ "hf-sandbox": "1", "hf-sandbox-mode": "dedicated", "hf-sandbox-nonce": nonce })).id)
    }
    for (let i = 0; i < 3; i++) await post({ other: "job" })
    const listed = await hf(["ls", "-q"])
    expectCode(listed, 0)
    assert.deepStrictEqual(listed.stdout.trim().split("\n").sort(), ids.slice().sort())
    const killed = await hf(["kill", "--all", "-q"])
    expectCode(killed, 0)
    assert.deepStrictEqual(killed.stdout.trim().split("\n").sort(), ids.slice().sort())
    for (const id of ids) assert.strictEqual((await job(id)).stage, "CANCELED")
    const others = (await Effect.runPromise(emulator.jobs)).filter(
      (j) => (j.spec as { labels?: Record<string, string> }).labels?.other === "job"
    )
    for (const other of others) {
      if (!TERMINAL.includes(other.stage)) {
        await fetch(`${emulator.url}/api/jobs/${emulator.user}/${other.id}/cancel`, {
          method: "POST",
          headers: { authorization: `Bearer ${token()}` }
        })
      }
    }
  })

  it("run: a job that ends with the command (code and output), and on Ctrl-C too", async () => {
    const result = await hf(["run", "--transport", "proxy", "--", "echo job says hi; exit 9"])
    expectCode(result, 9)
    assert.strictEqual(result.stdout, "job says hi\n")
    const jobs = await Effect.runPromise(emulator.jobs)
    // The release asks the server to shut down before it cancels the job: it may complete first.
    await until(async () => ["CANCELED", "COMPLETED"].includes((await job(jobs.at(-1)!.id)).stage))

    // Ctrl-C is an interruption of the run (the local Ctrl-C test shows the program's signal handling).
    const running = startInProcess(["run", "--", "echo ready; sleep 30"], { hf: true })
    // A bound, not a race: a start through a quick tunnel can take long on a loaded machine (the other
    // test file may be starting twenty sandboxes at the same moment).
    await until(() => running.stdout().includes("ready"), 60_000)
    expectCode(await running.interrupt(), 130)
    const last = (await Effect.runPromise(emulator.jobs)).at(-1)!
    await until(async () => ["CANCELED", "COMPLETED"].includes((await job(last.id)).stage))
  }, 150_000)

  it("process logs -f shows a background process's output live through the quick tunnel", async () => {
    const id = await createHf() // the default transport: a quick tunnel
    // The process waits for a file the test writes only once the follower printed the first line, so an
    // edge that holds the stream until it ends would show nothing, ever.
    const spawned = await hf([
      "spawn",
      "-q",
      id,
      "--",
      "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second"
    ])
    expectCode(spawned, 0)
    const follower = startInProcess(["process", "logs", "-f", id, spawned.stdout.trim()], { hf: true })
    try {
      await until(() => follower.stdout().includes("first"), 30_000)
      expectCode(await hf(["exec", id, "--", "touch go"]), 0)
      const followed = await follower.done
      expectCode(followed, 0)
      assert.strictEqual(followed.stdout, "first\nsecond\n")
    } finally {
      await follower.interrupt()
      expectCode(await hf(["kill", id]), 0)
    }
  })

  it("run and create send the original's two anonymous telemetry events; none with an opt-out set", async () => {
    const pings = async () => await Effect.runPromise(emulator.telemetry)
    const before = (await pings()).length
    expectCode(await hf(["run", "--transport", "proxy", "--", "true"]), 0)
    const sent = (await pings()).slice(before)
    assert.deepStrictEqual(
      sent.map((p) => p.path),
      ["/api/telemetry/hf-sandbox/create", "/api/telemetry/hf-sandbox/terminate"]
    )
    assert.match(sent[0]!.userAgent, /flavor\/cpu-basic; timeout\/none; forward_hf_token\/false$/)
    assert.match(sent[1]!.userAgent, /reason\/scope$/)
    const session = /session_id\/([0-9a-f]+)/.exec(sent[0]!.userAgent)?.[1]
    assert.include(sent[1]!.userAgent, `session_id/${session}`)
    for (const ping of sent) {
      assert.isUndefined(ping.authorization)
      assert.notInclude(ping.userAgent, token())
    }
    const id = await createHf("--transport", "proxy")
    assert.deepStrictEqual(
      (await pings()).slice(before + 2).map((p) => p.path),
      ["/api/telemetry/hf-sandbox/create"]
    )
    expectCode(await hf(["kill", id]), 0)
    // A telemetry endpoint that never answers or drops the connection fails nothing.
    for (const fault of ["hang", "reset"] as const) {
      emulator.faults.telemetry = fault
      const count = (await pings()).length
      const result = await hf(["run", "--transport", "proxy", "--", "echo still-works"])
      emulator.faults.telemetry = undefined
      expectCode(result, 0)
      assert.strictEqual(result.stdout, "still-works\n")
      assert.strictEqual(result.stderr, "")
      assert.isAtLeast((await pings()).length, count + 1)
    }
    for (const optOut of [{ HF_HUB_DISABLE_TELEMETRY: "1" }, { DO_NOT_TRACK: "1" }]) {
      const count = (await pings()).length
      expectCode(await cli(["run", "--transport", "proxy", "--", "true"], { hf: true, env: optOut }), 0)
      assert.strictEqual((await pings()).length, count, JSON.stringify(optOut))
    }
  })

  it("whoami is asked once per token across commands, cached 0600 under a hash of the token", async () => {
    const fresh = fs.mkdtempSync(path.join(work, "state-"))
    const whoamis = async () => (await Effect.runPromise(emulator.requests)).filter((r) => r.route === "whoami").length
    const before = await whoamis()
    for (let i = 0; i < 3; i++)
      expectCode(await cli(["ls", "-q"], { hf: true, env: { HF_SANDBOX_STATE_DIR: fresh } }), 0)
    assert.strictEqual((await whoamis()) - before, 1, "one whoami for three commands")
    const dir = path.join(fresh, "namespaces")
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700)
    const files = fs.readdirSync(dir)
    assert.strictEqual(files.length, 1)
    assert.match(files[0]!, /^[0-9a-f]{64}\.json$/)
    assert.strictEqual(fs.statSync(path.join(dir, files[0]!)).mode & 0o777, 0o600)
    const text = fs.readFileSync(path.join(dir, files[0]!), "utf8")
    assert.notInclude(text + files[0], token())
    assert.strictEqual((JSON.parse(text) as { namespace: string }).namespace, emulator.user)
  })

  it("NAMESPACE/ID wherever an id is taken; a malformed id or label fails before any request", async () => {
    const id = await createHf("--transport", "proxy", "--label", "team=ml", "-l", "flag")
    const spec = (await job(id)).spec as { labels: Record<string, string> }
    assert.strictEqual(spec.labels.team, "ml")
    assert.strictEqual(spec.labels.flag, "")
    const ref = `${emulator.user}/${id}`
    const ok = await hf(["exec", ref, "--", "echo via-ref"])
    expectCode(ok, 0)
    assert.strictEqual(ok.stdout, "via-ref\n")
    fs.writeFileSync(path.join(work, "ref.txt"), "by reference")
    expectCode(await hf(["cp", path.join(work, "ref.txt"), `${ref}:ref.txt`]), 0)
    assert.strictEqual((await hf(["exec", id, "--", "cat ref.txt"])).stdout, "by reference")
    const logs = await hf(["logs", "--tail", "3", ref])
    expectCode(logs, 0)

    const before = (await Effect.runPromise(emulator.requests)).length
    const jobsBefore = (await Effect.runPromise(emulator.jobs)).length
    const bad = await hf(["exec", "../../x", "--", "true"])
    expectCode(bad, 125)
    assert.include(bad.stderr, "24 hex digits")
    const badLogs = await hf(["logs", "alice/../x"])
    expectCode(badLogs, 1)
    assert.include(badLogs.stderr, "24 hex digits")
    const badLabel = await hf(["create", "--label", "bad key=x"])
    expectCode(badLabel, 2)
    assert.include(badLabel.stderr, "--label")
    assert.strictEqual((await Effect.runPromise(emulator.requests)).length, before, "no Hub request at all")
    assert.strictEqual((await Effect.runPromise(emulator.jobs)).length, jobsBefore)

    expectCode(await hf(["kill", ref]), 0)
    await until(async () => (await job(id)).stage === "CANCELED")
  })

  it("logs prints the job's log; an unknown id fails clearly", async () => {
    const id = await createHf("--transport", "proxy")
    const logs = await hf(["logs", "--tail", "5", id])
    expectCode(logs, 0)
    assert.isAtMost(logs.stdout.trim().split("\n").length, 5)
    assert.include(logs.stdout, '"event":"listening"')
    expectCode(await hf(["kill", id]), 0)
    const unknown = await hf(["exec", "0123456789abcdef01234567", "--", "true"])
    expectCode(unknown, 125)
    assert.include(unknown.stderr, "cannot attach to sandbox 0123456789abcdef01234567")
  })
})

// ---------------------------------------------------------------------------
// The library side of `create`: Sandbox.make({ detach: true })
// ---------------------------------------------------------------------------

describe("Sandbox.make({ detach: true })", () => {
  const localLive = (options: LocalSandbox.Options = {}) =>
    LocalSandbox.layer({ stateDir, ...options }).pipe(
      Layer.provideMerge(NodeContext.layer),
      Layer.merge(NodeHttpClient.layerUndici)
    )
  const hfLive = () =>
    HfJobs.layer({ token: emulator.token, endpoint: emulator.url, publicDns: false }).pipe(
      Layer.provideMerge(NodeContext.layer),
      Layer.merge(
        Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emulator))).pipe(
          Layer.provide(NodeHttpClient.layerUndici)
        )
      )
    )

  it("local: following the log of a live detached sandbox waits for new lines and ends when it does", async () => {
    const id = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true, timeout: "1500 millis" })
      return sb.id
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    const { pid } = stateOf(id)
    localPids.add(pid)
    const lines = await Effect.runPromise(
      LocalSandbox.logs(id, { stateDir, follow: true }).pipe(Stream.runCollect, Effect.timeout("15 seconds"))
    )
    assert.match(Array.from(lines).join("\n"), /lifetime of 1\.5s reached/)
    assert.deepStrictEqual(await waitGone([pid]), [])
    // The server cannot remove its own state file; listing cleans what is stale.
    assert.deepStrictEqual(await Effect.runPromise(LocalSandbox.list({ stateDir })), [])
  })

  it("local: closing the scope only detaches; connect attaches; terminate stops it and removes its files", async () => {
    const made = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true })
      yield* sb.files.write("note.txt", "kept")
      return { id: sb.id, workdir: sb.details.workdir as string }
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    const { pid } = stateOf(made.id)
    localPids.add(pid)
    assert.isTrue(isAlive(pid), "the scope closed, the server lives on")
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(made.id)
      assert.strictEqual(yield* sb.files.readText("note.txt"), "kept")
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.isTrue(isAlive(pid), "a connection's scope only detaches too")
    assert.deepStrictEqual(
      (await Effect.runPromise(LocalSandbox.list({ stateDir }))).map((s) => s.id),
      [made.id]
    )
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(made.id)
      yield* sb.terminate
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.deepStrictEqual(await waitGone([pid]), [])
    assert.isFalse(fs.existsSync(made.workdir), "the working directory is removed")

    // terminate on the sandbox make returned stops it just the same.
    const pid2 = await Effect.gen(function* () {
      const sb = yield* Sandbox.make({ detach: true })
      const serverPid = sb.details.pid as number
      yield* sb.terminate
      return serverPid
    }).pipe(Effect.scoped, Effect.provide(localLive()), Effect.runPromise)
    assert.deepStrictEqual(await waitGone([pid2]), [])
  })

  it("local: a failed start leaves nothing: no server, no state file, no log, no working directory", async () => {
    const pidFile = path.join(work, "fake-server.pid")
    const script = path.join(work, "fake-server.py")
    fs.writeFileSync(
      script,
      [
        "import json, os, time",
        `open(${JSON.stringify(pidFile)}, "w").write(str(os.getpid()))`,
        'print(json.dumps({"event": "listening", "host": "127.0.0.1", "port": 9, "pid": os.getpid(), "version": "0", "protocol": 1}), flush=True)',
        "time.sleep(60)"
      ].join("\n")
    )
    const tempDir = fs.mkdtempSync(path.join(work, "tmp-"))
    const failed = await Sandbox.make({ detach: true, startTimeout: "1 second" }).pipe(
      Effect.scoped,
      Effect.flip,
      Effect.provide(localLive({ serverScript: script, tempDir })),
      Effect.runPromise
    )
    assert.strictEqual(failed._tag, "StartError")
    // The pid it wrote if it got that far (a loaded machine may not run its first line within 1 s), and
    // no process left running its script either way.
    if (fs.existsSync(pidFile)) assert.deepStrictEqual(await waitGone([Number(fs.readFileSync(pidFile, "utf8"))]), [])
    assert.deepStrictEqual(await waitNoneWithArg(script), [])
    assert.deepStrictEqual(stateFiles(), [])
    assert.deepStrictEqual(fs.readdirSync(tempDir), [])

    const missing = await Sandbox.make({ detach: true }).pipe(
      Effect.scoped,
      Effect.flip,
      Effect.provide(localLive({ python: path.join(work, "no-python-here") })),
      Effect.runPromise
    )
    assert.strictEqual(missing._tag, "StartError")
    assert.deepStrictEqual(stateFiles(), [])
  })

  it("HF Jobs: the job keeps running after the scope closes; terminate after connect cancels it", async () => {
    const id = await Sandbox.make({ detach: true, transport: "proxy" }).pipe(
      Effect.map((sb) => sb.id),
      Effect.scoped,
      Effect.provide(hfLive()),
      Effect.runPromise
    )
    // Its scope has closed: a release that cancelled the job would have done so by now.
    assert.strictEqual((await job(id)).stage, "RUNNING")
    assert.strictEqual((await job(id)).cancelRequests, 0)
    await Effect.gen(function* () {
      const sb = yield* Sandbox.connect(id)
      assert.strictEqual((yield* sb.exec("echo still here")).stdout, "still here\n")
      yield* sb.terminate
    }).pipe(Effect.scoped, Effect.provide(hfLive()), Effect.runPromise)
    await until(async () => ["CANCELED", "COMPLETED"].includes((await job(id)).stage))
  })
})

describe("hf-sandbox CLI, credentials", () => {
  it("finds the token as the library does: a blank HF_TOKEN is unset, the token file is read, a 401 names it", async () => {
    const home = path.join(work, "hf-home-credentials")
    fs.mkdirSync(home, { recursive: true })
    fs.writeFileSync(path.join(home, "token"), `${Redacted.value(emulator.token)}\r\n`)
    const listed = await cli(["ls", "--json"], { hf: true, env: { HF_TOKEN: " ", HF_HOME: home } })
    expectCode(listed, 0)

    fs.writeFileSync(path.join(home, "token"), "hf_wrong_0000000000000000000000")
    const refused = await cli(["ls"], { hf: true, env: { HF_TOKEN: "", HF_HOME: home } })
    assert.notStrictEqual(refused.code, 0)
    assert.include(refused.stderr, `token file ${path.join(home, "token")}`)
    assert.include(refused.stderr, "hf auth login")
    assert.notInclude(refused.stderr, "hf_wrong_0000000000000000000000")
  })
})
