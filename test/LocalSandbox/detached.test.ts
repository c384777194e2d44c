/**
 * Detached local sandboxes (what `hf-sandbox create --local` makes) when their server dies outright, and
 * what the by-id operations (`kill`, `logs`, `connect`; `hf-sandbox kill|logs|exec --local`) say when
 * there is no such sandbox.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import { assertGone, eventually, isAlive, localLayer } from "../support/local.js"

let root: string
let stateDir: string
let tempDir: string

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-detached-test-"))
  stateDir = path.join(root, "state")
  tempDir = path.join(root, "tmp")
  fs.mkdirSync(tempDir)
})

afterAll(async () => {
  // Whatever a failed test left running is stopped, with its files.
  for (const info of await Effect.runPromise(LocalSandbox.list({ stateDir, tempDir }))) {
    await Effect.runPromise(LocalSandbox.kill(info.id, { stateDir, stopTimeout: "1 second" }))
  }
  fs.rmSync(root, { recursive: true, force: true })
})

const live = () => localLayer({ stateDir, tempDir })

describe("by-id operations on a local sandbox that does not exist", () => {
  const missing = "local-0123456789ab"

  it.effect("kill says it could not kill it, never that a sandbox did not start", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(LocalSandbox.kill(missing, { stateDir }))
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.during, `kill sandbox ${missing}`)
      assert.strictEqual(
        error.message,
        `Could not kill sandbox ${missing} on the local provider (NotReady): no local sandbox ${missing} in ${stateDir}`
      )
      const bad = yield* Effect.flip(LocalSandbox.kill("nope", { stateDir }))
      assert.include(bad.message, `Could not kill sandbox nope on the local provider`)
      assert.include(bad.message, `"nope" is not a local sandbox id (they look like local-1a2b3c4d5e6f)`)
      assert.notInclude(bad.message, "did not start")
    })
  )

  it.effect("logs says it could not read the log", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Stream.runDrain(LocalSandbox.logs(missing, { stateDir })))
      assert.strictEqual(error.during, `read the log of sandbox ${missing}`)
      assert.strictEqual(
        error.message,
        `Could not read the log of sandbox ${missing} on the local provider (NotReady): no local sandbox ${missing} in ${stateDir}`
      )
    })
  )

  it.effect("connect says it could not attach, from the provider itself too", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Effect.scoped(Sandbox.connect(missing)))
      assert.strictEqual(error._tag, "StartError")
      assert.include(error.message, `Could not attach to sandbox ${missing} on the local provider (NotReady): `)
      assert.notInclude(error.message, "did not start")
      const provider = yield* LocalSandbox.make({ stateDir })
      const direct = yield* Effect.flip(Effect.scoped(provider.connect!(missing, {} as never)))
      assert.strictEqual(direct.during, `attach to sandbox ${missing}`)
    }).pipe(Effect.provide(live()))
  )
})

/** The pids a command appended to `file` in the sandbox's working directory, once there are `count`. */
const pidsIn = (file: string, count: number) =>
  eventually(
    Effect.suspend(() => {
      const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : ""
      const pids = text
        .split("\n")
        .filter((line) => /^\d+$/.test(line))
        .map(Number)
      return pids.length >= count ? Effect.succeed(pids) : Effect.fail(new Error(`${pids.length} pids so far`))
    })
  )

describe.skipIf(process.platform !== "linux")("a detached local sandbox whose server is killed with SIGKILL", () => {
  it.live("leaves no process and no directory, and list, connect and make see that it is gone", () =>
    Effect.gen(function* () {
      // What `hf-sandbox create --local` makes: a sandbox left running when its maker's scope closes.
      const made = yield* Effect.scoped(
        Effect.gen(function* () {
          const sb = yield* Sandbox.make({ detach: true })
          return { id: sb.id, details: sb.details }
        })
      )
      const workdir = made.details.workdir as string
      const supervisor = made.details.pid as number
      const server = made.details.serverPid as number
      assert.isTrue(isAlive(server) && server !== supervisor)
      // A command runs in it (a background one and one attached to a connection), each with a child that
      // left its process group.
      const command = yield* Effect.fork(
        Effect.scoped(
          Effect.gen(function* () {
            const sb = yield* Sandbox.connect(made.id)
            yield* sb.spawn(["sh", "-c", "echo $$ >> pids; setsid sleep 300 & echo $! >> pids; wait"])
            return yield* Effect.either(sb.exec(["sh", "-c", "echo $$ >> pids; sleep 300 & echo $! >> pids; wait"]))
          })
        )
      )
      const pids = yield* pidsIn(path.join(workdir, "pids"), 4)
      assert.isTrue(pids.every(isAlive))

      process.kill(server, "SIGKILL")
      yield* assertGone([server, ...pids, supervisor], "10 seconds")
      assert.isFalse(fs.existsSync(workdir), "the working directory is removed")
      // The command's caller learns why its command ended.
      const outcome = yield* Fiber.join(command)
      assert.strictEqual(outcome._tag, "Left")
      if (outcome._tag === "Left") {
        assert.strictEqual(outcome.left._tag, "ConnectionLostError")
        assert.include(outcome.left.message, "the sandbox server exited (signal 9)")
      }

      // Its log says how it ended (and the supervisor ended cleanly: it once crashed re-raising SIGKILL).
      const log = fs.readFileSync(path.join(stateDir, `${made.id}.log`), "utf8")
      assert.include(log, "supervisor: the server was killed by signal 9")
      assert.notInclude(log, "Traceback")
      // The next `ls --local` shows the truth, and removes what the sandbox left in the state directory.
      assert.deepStrictEqual(yield* LocalSandbox.list({ stateDir, tempDir }), [])
      assert.deepStrictEqual(
        fs.readdirSync(stateDir).filter((name) => name.startsWith(made.id)),
        []
      )
      const attach = yield* Effect.flip(Effect.scoped(Sandbox.connect(made.id)))
      assert.include(attach.message, `no local sandbox ${made.id}`)
      // And a new sandbox starts as usual, next to nothing left of the old one.
      const next = yield* Effect.scoped(Effect.flatMap(Sandbox.make(), (sb) => sb.exec("ls -A")))
      assert.strictEqual(next.exitCode, 0)
      assert.deepStrictEqual(fs.readdirSync(tempDir), [])
    }).pipe(Effect.provide(live()))
  )
})

/** A sandbox's state file, as JSON. */
const stateFile = (id: string) => path.join(stateDir, `${id}.json`)
const readState = (id: string): Record<string, unknown> => JSON.parse(fs.readFileSync(stateFile(id), "utf8"))

const ids = (sandboxes: ReadonlyArray<LocalSandbox.DetachedInfo>) => sandboxes.map((s) => s.id)

/** A detached sandbox made as `hf-sandbox create --local` makes one: left running when the scope closes. */
const makeDetached = Effect.scoped(
  Effect.map(Sandbox.make({ detach: true }), (sb) => ({ id: sb.id, details: sb.details }))
)

describe("a detached local sandbox's state file", () => {
  // A lost request waits for the news of the server's exit only while the server is not seen running, so
  // whoever attaches needs the server's own pid: the supervisor's (`pid`) says nothing of the server's.
  it.live("records its server process, which attaching gives back; ls and kill work as before", () =>
    Effect.gen(function* () {
      const made = yield* makeDetached
      const server = made.details.serverPid as number
      assert.isTrue(isAlive(server))
      const state = readState(made.id)
      assert.strictEqual(state.serverPid, server)
      if (process.platform === "linux") {
        assert.notStrictEqual(state.serverPid, state.pid, "the server is the supervisor's child")
        assert.isString(state.serverStartTime)
      }
      const attached = yield* Effect.scoped(
        Effect.map(Sandbox.connect(made.id), (sb) => ({ serverPid: sb.details.serverPid, pid: sb.details.pid }))
      )
      assert.deepStrictEqual(attached, { serverPid: server, pid: made.details.pid })

      const listed = (yield* LocalSandbox.list({ stateDir, tempDir })).find((s) => s.id === made.id)
      assert.strictEqual(listed?.pid, made.details.pid)
      yield* LocalSandbox.kill(made.id, { stateDir, stopTimeout: "2 seconds" })
      yield* assertGone([server, made.details.pid as number])
      assert.isFalse(fs.existsSync(stateFile(made.id)))
    }).pipe(Effect.provide(live()))
  )

  // The news of a killed server's exit comes from its supervisor (Linux).
  it.live.skipIf(process.platform !== "linux")(
    "written before the server's pid was recorded, still attaches, and a killed server is explained",
    () =>
      Effect.gen(function* () {
        const made = yield* makeDetached
        const { serverPid: _, serverStartTime: __, ...older } = readState(made.id)
        fs.writeFileSync(stateFile(made.id), `${JSON.stringify(older)}\n`, { mode: 0o600 })
        assert.include(ids(yield* LocalSandbox.list({ stateDir, tempDir })), made.id)

        const server = made.details.serverPid as number
        const seen = yield* Effect.scoped(
          Effect.gen(function* () {
            const sb = yield* Sandbox.connect(made.id)
            const out = (yield* sb.exec(["echo", "hi"])).stdout
            process.kill(server, "SIGKILL")
            yield* assertGone([server, made.details.pid as number], "10 seconds")
            const lost = yield* Effect.flip(sb.exec(["echo", "hi"]))
            return { serverPid: sb.details.serverPid, out, lost: lost.message }
          })
        )
        assert.strictEqual(seen.serverPid, undefined)
        assert.strictEqual(seen.out, "hi\n")
        assert.include(seen.lost, "the sandbox server exited (signal 9)")
        assert.notInclude(ids(yield* LocalSandbox.list({ stateDir, tempDir })), made.id)
        assert.isFalse(fs.existsSync(stateFile(made.id)))
      }).pipe(Effect.provide(live()))
  )
})
