/**
 * Guaranteed termination, proven by pid: whatever way a sandbox's scope ends, the server and every
 * process it started are gone, and its working directory with them.
 */
import * as ChildProcess from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as TransferJournal from "../src/internal/files/journal.js"
import * as OwnedDirs from "../src/internal/local/ownedDirs.js"
import { libDir } from "./support/library.js"
import { assertGone, eventually, isAlive, localLayer } from "./support/local.js"
import { waitNoneWithArg } from "./support/processes.js"

const Live = localLayer()

/** Reads a pid a command wrote into a file of the sandbox, waiting until it is there. */
const readPid = (sb: Sandbox.Sandbox, file: string) =>
  eventually(
    sb.files
      .readText(file)
      .pipe(
        Effect.flatMap((text) =>
          /^\d+\s*$/.test(text) ? Effect.succeed(Number(text)) : Effect.fail(new Error(`no pid in ${file} yet`))
        )
      )
  )

/** Starts a long command with a child of its own and returns the pids of the shell and the child. */
const startLongCommand = (sb: Sandbox.Sandbox) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(sb.exec("sleep 60 & echo $! > child.pid; echo $$ > shell.pid; wait"))
    const child = yield* readPid(sb, "child.pid")
    const shell = yield* readPid(sb, "shell.pid")
    return { fiber, pids: [shell, child] }
  })

const serverPid = (sb: Sandbox.Sandbox) => sb.details.pid as number
const workdir = (sb: Sandbox.Sandbox) => sb.details.workdir as string

describe("lifecycle", () => {
  it.live(
    "closing the scope normally stops the server, its commands and background processes, and removes the workdir",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const sb = yield* Sandbox.make().pipe(Scope.extend(scope))
        const { pids } = yield* startLongCommand(sb)
        const background = yield* sb.spawn(["sleep", "60"])
        pids.push(background.pid)
        assert.isTrue(isAlive(serverPid(sb)))
        assert.isTrue(pids.every(isAlive))
        yield* Scope.close(scope, Exit.void)
        yield* assertGone([serverPid(sb), ...pids])
        assert.isFalse(fs.existsSync(workdir(sb)))
      }).pipe(Effect.provide(Live))
  )

  it.live("a failure inside the scope still stops everything", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<{ server: number; pids: Array<number>; dir: string }>()
      const exit = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        const { pids } = yield* startLongCommand(sb)
        yield* Deferred.succeed(seen, { server: serverPid(sb), pids, dir: workdir(sb) })
        return yield* Effect.fail("boom")
      }).pipe(Effect.scoped, Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      const { server, pids, dir } = yield* Deferred.await(seen)
      yield* assertGone([server, ...pids])
      assert.isFalse(fs.existsSync(dir))
    }).pipe(Effect.provide(Live))
  )

  it.live("interrupting the fiber in the middle of a long exec stops everything", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<{ server: number; pids: Array<number>; dir: string }>()
      const fiber = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        const { fiber, pids } = yield* startLongCommand(sb)
        yield* Deferred.succeed(seen, { server: serverPid(sb), pids, dir: workdir(sb) })
        return yield* Fiber.join(fiber)
      }).pipe(Effect.scoped, Effect.fork)
      const { server, pids, dir } = yield* Deferred.await(seen)
      assert.isTrue([server, ...pids].every(isAlive))
      yield* Fiber.interrupt(fiber)
      yield* assertGone([server, ...pids])
      assert.isFalse(fs.existsSync(dir))
    }).pipe(Effect.provide(Live))
  )

  it.live("interrupting one exec kills only that command, and the sandbox keeps working", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const { fiber, pids } = yield* startLongCommand(sb)
      yield* Fiber.interrupt(fiber)
      yield* assertGone(pids)
      const r = yield* sb.exec("echo still here")
      assert.strictEqual(r.stdout, "still here\n")
    }).pipe(Effect.scoped, Effect.provide(Live))
  )

  it.live(
    "terminate is idempotent, later operations fail with TerminatedError, and the scope's release is harmless",
    () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        yield* sb.terminate
        yield* sb.terminate
        yield* assertGone([serverPid(sb)])
        const error = yield* Effect.flip(sb.exec("true"))
        assert.strictEqual(error._tag, "TerminatedError")
        assert.include(error.message, sb.id)
      }).pipe(Effect.scoped, Effect.provide(Live))
  )

  it.live("the local provider honours lifetime: the sandbox ends at its lifetime even while a process runs", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ lifetime: "1 second" })
      const proc = yield* sb.spawn(["sleep", "30"])
      yield* assertGone([serverPid(sb), proc.pid], "10 seconds")
      const error = yield* Effect.flip(sb.exec("true"))
      assert.strictEqual(error._tag, "ConnectionLostError")
    }).pipe(Effect.scoped, Effect.provide(Live))
  )

  it.live("a server that survives SIGTERM is SIGKILLed within the stop bound", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-test-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      // Wraps the real server but ignores SIGTERM, as a wedged server would.
      const stubborn = path.join(dir, "stubborn.py")
      fs.writeFileSync(
        stubborn,
        [
          "import _signal, runpy, sys",
          `sys.argv[0] = ${JSON.stringify(path.resolve("rpc-server/sbx_server"))}`,
          // The C module's: the server installs its handlers through it (signal.signal calls it too).
          "_orig = _signal.signal",
          "_signal.signal = lambda s, h: _orig(s, _signal.SIG_IGN) if s == _signal.SIGTERM else _orig(s, h)",
          "runpy.run_path(sys.argv[0], run_name='__main__')"
        ].join("\n")
      )
      const layer = localLayer({ serverScript: stubborn, stopTimeout: "300 millis" })
      const pid = yield* Sandbox.make().pipe(Effect.map(serverPid), Effect.scoped, Effect.provide(layer))
      yield* assertGone([pid], "5 seconds")
    }).pipe(Effect.scoped)
  )
})

describe("start failures", () => {
  /**
   * The mute server is gone: the pid it wrote, if it got that far (a loaded machine may not even run its
   * first line before a short startTimeout), and any process still running its script.
   */
  const assertServerGone = (root: string, script: string) =>
    Effect.gen(function* () {
      const pidFile = path.join(root, "pid")
      if (fs.existsSync(pidFile)) yield* assertGone([Number(fs.readFileSync(pidFile, "utf8"))])
      assert.deepStrictEqual(yield* Effect.promise(() => waitNoneWithArg(script)), [])
    })

  const withTempRoot = <A, E>(f: (root: string) => Effect.Effect<A, E>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-root-"))),
      f,
      (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
    )

  it.live("a server that exits at once fails with StartError carrying its stderr, and leaves nothing", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        const script = path.join(root, "crash.py")
        fs.writeFileSync(script, "import sys\nsys.stderr.write('boom: the server cannot start\\n')\nsys.exit(3)\n")
        const error = yield* Sandbox.make().pipe(
          Effect.scoped,
          Effect.provide(localLayer({ serverScript: script, tempDir: root })),
          Effect.flip
        )
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "ServerExited")
        assert.include(error.stderrTail ?? "", "boom: the server cannot start")
        assert.include(error.message, "exit code 3")
        // Only the script itself is left in the root: the sandbox's working directory was removed.
        assert.deepStrictEqual(fs.readdirSync(root), ["crash.py"])
      })
    )
  )

  it.live("a missing python3 on PATH fails with a StartError that says what to do", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        const error = yield* Sandbox.make({ env: { PATH: "/nonexistent" } }).pipe(
          Effect.scoped,
          Effect.provide(localLayer({ tempDir: root })),
          Effect.flip
        )
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "SpawnFailed")
        assert.include(error.message, "python3")
        assert.include(error.message, "Install Python")
        assert.deepStrictEqual(fs.readdirSync(root), [])
      })
    )
  )

  it.live("a server that never gets ready fails with a Timeout after startTimeout, and is killed", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        const script = path.join(root, "mute.py")
        fs.writeFileSync(
          script,
          `import os, time\nopen(${JSON.stringify(path.join(root, "pid"))}, "w").write(str(os.getpid()))\ntime.sleep(60)\n`
        )
        const error = yield* Sandbox.make({ startTimeout: "1 second" }).pipe(
          Effect.scoped,
          Effect.provide(localLayer({ serverScript: script, tempDir: root })),
          Effect.flip
        )
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "Timeout")
        yield* assertServerGone(root, script)
      })
    )
  )

  it.live("a failed start inside a long-lived scope is released at once", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        const script = path.join(root, "mute.py")
        fs.writeFileSync(
          script,
          `import os, time\nopen(${JSON.stringify(path.join(root, "pid"))}, "w").write(str(os.getpid()))\ntime.sleep(60)\n`
        )
        const scope = yield* Scope.make()
        const exit = yield* Sandbox.make({ startTimeout: "500 millis" }).pipe(
          Scope.extend(scope),
          Effect.provide(localLayer({ serverScript: script, tempDir: root })),
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(exit))
        // The caller's scope is still open, yet the half-started server is already gone.
        yield* assertServerGone(root, script)
        yield* Scope.close(scope, Exit.void)
      })
    )
  )
})

describe("layer", () => {
  it.live("Sandbox.layer shares one sandbox across a program and tears it down with the layer", () =>
    Effect.gen(function* () {
      const ids = yield* Effect.gen(function* () {
        const a = yield* Sandbox.Sandbox
        yield* a.files.write("shared.txt", "one sandbox")
        const b = yield* Sandbox.Sandbox
        return { same: a.id === b.id, text: yield* b.files.readText("shared.txt"), pid: serverPid(b) }
      }).pipe(Effect.provide(Sandbox.layer().pipe(Layer.provide(Live))))
      assert.isTrue(ids.same)
      assert.strictEqual(ids.text, "one sandbox")
      yield* assertGone([ids.pid])
    })
  )
})

/** Reads the pids that the commands of a sandbox append to `file`, once there are `count` of them. */
const readPids = (sb: Sandbox.Sandbox, file: string, count: number) =>
  eventually(
    sb.files.readText(file).pipe(
      Effect.flatMap((text) => {
        const pids = text
          .split("\n")
          .filter((line) => /^\d+$/.test(line))
          .map(Number)
        return pids.length >= count ? Effect.succeed(pids) : Effect.fail(new Error(`${pids.length} pids so far`))
      })
    )
  )

/** A family that tries to escape: a child with children of its own, and a `setsid` escapee with one. */
const ESCAPING_FAMILY = [
  "sh -c 'sleep 300 & echo $! >> pids; sleep 300 & echo $! >> pids; wait' &",
  "setsid sh -c 'echo $$ >> pids; sleep 300 & echo $! >> pids; wait' &",
  "echo $$ >> pids",
  "wait"
].join("\n")
const FAMILY_SIZE = 5

describe.skipIf(process.platform !== "linux")(
  "a server that dies by any means (Linux: a subreaper supervises it)",
  () => {
    it.live("kill -9 of the server leaves no process and no directory, and later calls say why", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        yield* sb.spawn(["sh", "-c", ESCAPING_FAMILY])
        const pids = yield* readPids(sb, "pids", FAMILY_SIZE)
        assert.isTrue(pids.every(isAlive))
        // The server itself: under its supervisor (`serverPid`) where there is one.
        const server = (sb.details.serverPid ?? sb.details.pid) as number
        process.kill(server, "SIGKILL")
        yield* assertGone([server, ...pids], "10 seconds")
        yield* eventually(
          Effect.suspend(() =>
            fs.existsSync(workdir(sb)) ? Effect.fail(new Error("workdir still there")) : Effect.void
          )
        )
        const error = yield* Effect.flip(sb.exec("true"))
        assert.strictEqual(error._tag, "ConnectionLostError")
        assert.include(error.message, "the sandbox server exited (signal 9)")
        assert.notInclude(error.message, "Transport error")
        // Reads go over a socket of their own locally: they say the same.
        const readError = yield* Effect.flip(sb.files.readText("pids"))
        assert.include(readError.message, "the sandbox server exited (signal 9)")
      }).pipe(Effect.scoped, Effect.provide(Live))
    )

    it.live("kill -9 of the server in the middle of an upload leaves the old file whole and no temporary file", () =>
      Effect.acquireUseRelease(
        // Outside the sandbox's directory: the supervisor's removal of that directory does not reach it.
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sbx-upload-crash-"))),
        (outside) =>
          Effect.gen(function* () {
            const dest = path.join(outside, "data.bin")
            fs.writeFileSync(dest, "the old content")
            const sb = yield* Sandbox.make()
            // 100 KiB in ranges of 64 KiB, then nothing more: the first range is written, the second
            // request is open mid-body when the server dies.
            const source = Stream.make(new Uint8Array(100 * 1024).fill(7)).pipe(Stream.concat(Stream.never))
            const upload = yield* Effect.fork(sb.files.write(dest, source, { rangeSize: 64 * 1024, parallelism: 1 }))
            const parts = () => fs.readdirSync(outside).filter((name) => name.endsWith(".part"))
            yield* eventually(
              Effect.suspend(() => {
                const part = parts()[0]
                return part !== undefined && fs.statSync(path.join(outside, part)).size >= 64 * 1024
                  ? Effect.void
                  : Effect.fail(new Error("no temporary file with the first range yet"))
              })
            )
            const server = sb.details.serverPid as number
            process.kill(server, "SIGKILL")
            yield* assertGone([server, serverPid(sb)], "10 seconds")
            yield* Fiber.interrupt(upload)
            // The supervisor (gone now, after its cleanup) removed what the server was writing.
            assert.deepStrictEqual(parts(), [])
            assert.strictEqual(fs.readFileSync(dest, "utf8"), "the old content")
          }).pipe(Effect.scoped, Effect.provide(Live)),
        (outside) => Effect.sync(() => fs.rmSync(outside, { recursive: true, force: true }))
      )
    )
  }
)

describe.skipIf(process.platform !== "linux")("commands that leave their group", () => {
  it.live("an exec's timeout kills what its command started with setsid, too", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const fiber = yield* Effect.fork(
        sb.exec("setsid sh -c 'echo $$ >> pids; sleep 300 & echo $! >> pids; wait' & wait", { timeout: "2 seconds" })
      )
      const pids = yield* readPids(sb, "pids", 2)
      const result = yield* Fiber.join(fiber)
      assert.isTrue(result.timedOut)
      yield* assertGone(pids)
    }).pipe(Effect.scoped, Effect.provide(Live))
  )
})

describe.skipIf(process.platform !== "linux")("what a crash leaves behind", () => {
  const withTempRoot = <A, E, R>(f: (root: string) => Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-crash-"))),
      f,
      (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
    )

  it.live("a client killed with SIGKILL leaves no process and no working directory", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        // A real client in a process of its own, killed the hard way once its sandbox runs a command. It
        // loads the run's compiled library natively, as a user's built program would: through tsx as a
        // loader it paid seconds of CPU to transform the library's modules one by one.
        const lib = (name: string) => JSON.stringify(pathToFileURL(path.join(libDir, name)).href)
        const script = [
          `import * as NodeContext from "@effect/platform-node/NodeContext"`,
          `import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"`,
          `import * as Effect from "effect/Effect"`,
          `import * as Layer from "effect/Layer"`,
          `import * as LocalSandbox from ${lib("LocalSandbox.js")}`,
          `import * as Sandbox from ${lib("Sandbox.js")}`,
          `const layer = LocalSandbox.layer({ tempDir: ${JSON.stringify(root)} }).pipe(`,
          `  Layer.provideMerge(NodeContext.layer), Layer.merge(NodeHttpClient.layerUndici))`,
          `Effect.gen(function* () {`,
          `  const sb = yield* Sandbox.make()`,
          `  const p = yield* sb.spawn(["sleep", "300"])`,
          `  console.log(JSON.stringify({ workdir: sb.details.workdir, pids: [sb.details.pid, p.pid] }))`,
          `  yield* Effect.never`,
          `}).pipe(Effect.scoped, Effect.provide(layer), Effect.runPromise)`
        ].join("\n")
        // Node itself, not a wrapper process: the pid killed is the client's.
        const child = ChildProcess.spawn(process.execPath, ["--input-type=module", "-e", script], {
          cwd: path.resolve("."),
          stdio: ["ignore", "pipe", "inherit"]
        })
        const info = yield* Effect.async<{ workdir: string; pids: Array<number> }, Error>((resume) => {
          let out = ""
          child.stdout!.on("data", (chunk: Buffer) => {
            out += chunk.toString("utf8")
            if (out.includes("\n")) resume(Effect.succeed(JSON.parse(out.slice(0, out.indexOf("\n")))))
          })
          child.once("exit", (code) =>
            resume(Effect.fail(new Error(`the client exited (${code}) before its sandbox ran`)))
          )
        }).pipe(Effect.timeout("60 seconds"))
        assert.isTrue(fs.existsSync(info.workdir))
        child.kill("SIGKILL")
        yield* assertGone([child.pid!, ...info.pids], "10 seconds")
        yield* eventually(
          Effect.suspend(() =>
            fs.existsSync(info.workdir) || fs.existsSync(`${info.workdir}.owner`)
              ? Effect.fail(new Error("workdir or its owner marker still there"))
              : Effect.void
          )
        )
      })
    )
  )

  it.live("leftovers whose owner is gone are swept by the next make and by list, a live sandbox's never", () =>
    withTempRoot((root) =>
      Effect.gen(function* () {
        // What a client and its server killed together leave: a working directory and its owner marker.
        const dead = ChildProcess.spawnSync("true").pid
        const leftover = (name: string) => {
          const dir = path.join(root, name)
          fs.mkdirSync(path.join(dir, "data"), { recursive: true })
          fs.writeFileSync(path.join(dir, "data", "file"), "left behind")
          OwnedDirs.claim(dir, dead)
          return dir
        }
        const first = leftover("hf-sandbox-left01")
        const unmarked = path.join(root, "hf-sandbox-nomark")
        fs.mkdirSync(unmarked)
        // Its server was writing a file elsewhere: the journal lists the temporary file, and a link to a file
        // that is not one of the server's temporary files (which must survive).
        const elsewhere = fs.mkdtempSync(path.join(root, "elsewhere-"))
        const part = path.join(elsewhere, ".data.bin.hf-sandbox-0123456789abcdef.part")
        const other = path.join(elsewhere, "keep.txt")
        fs.writeFileSync(part, "half a file")
        fs.writeFileSync(other, "not ours")
        fs.mkdirSync(TransferJournal.journalPath(first))
        fs.symlinkSync(part, path.join(TransferJournal.journalPath(first), "a".repeat(40)))
        fs.symlinkSync(other, path.join(TransferJournal.journalPath(first), "b".repeat(40)))
        const layer = localLayer({ tempDir: root })
        const live = yield* Sandbox.make().pipe(Effect.map(workdir), Effect.provide(layer))
        assert.isFalse(fs.existsSync(first))
        assert.isFalse(fs.existsSync(OwnedDirs.markerPath(first)))
        assert.isFalse(fs.existsSync(part))
        assert.isFalse(fs.existsSync(TransferJournal.journalPath(first)))
        assert.strictEqual(fs.readFileSync(other, "utf8"), "not ours")

        const second = leftover("hf-sandbox-left02")
        yield* LocalSandbox.list({ tempDir: root })
        assert.isFalse(fs.existsSync(second))
        // The live sandbox and a directory with no marker are left alone.
        assert.isTrue(fs.existsSync(live))
        assert.isTrue(fs.existsSync(unmarked))
      }).pipe(Effect.scoped)
    )
  )
})
