/**
 * The Sandbox API against a real local server over real loopback HTTP: the quick-start flow, bad
 * input and its typed errors, byte-exact data, and timeouts that kill whole process groups.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import { BadRequestError } from "hf-sandbox/SandboxError"
import * as Wire from "../src/internal/wire/client.js"
import { assertGone, localLayer } from "./support/local.js"
import { retained } from "./support/memory.js"

const Live = localLayer()
const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(Live))

layer(SharedSandbox, { excludeTestServices: true })("Sandbox (shared local sandbox)", (it) => {
  describe("quick-start flow", () => {
    it.effect("runs python, a shell pipeline, and round-trips a file", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        assert.strictEqual(sb.provider, "local")
        assert.match(sb.id, /^local-[0-9a-f]{12}$/)

        const py = yield* sb.exec(["python3", "-c", "print(1+1)"])
        assert.deepInclude(py, { exitCode: 0, signal: null, timedOut: false, stdout: "2\n", stderr: "" })
        assert.isAtLeast(py.durationMs, 0)

        const pipeline = yield* sb.exec("printf 'b\\na\\nc\\n' | sort | head -n 2")
        assert.strictEqual(pipeline.stdout, "a\nb\n")

        yield* sb.files.write("notes/hello.txt", "hello")
        assert.strictEqual(yield* sb.files.readText("notes/hello.txt"), "hello")
        assert.isTrue(yield* sb.files.exists("notes/hello.txt"))
        assert.isFalse(yield* sb.files.exists("notes/nope.txt"))
      })
    )

    it.effect("a non-zero exit is a result, with stderr kept apart from stdout", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const r = yield* sb.exec("echo out; echo err >&2; exit 7")
        assert.deepInclude(r, { exitCode: 7, stdout: "out\n", stderr: "err\n", timedOut: false })
      })
    )

    it.effect("cwd, env and stdin reach the command", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.mkdir("work/dir")
        const r = yield* sb.exec(["sh", "-c", 'pwd; echo "$GREETING"; cat'], {
          cwd: "work/dir",
          env: { GREETING: "hi" },
          stdin: "from stdin"
        })
        assert.match(r.stdout, /\/work\/dir\nhi\nfrom stdin$/)
        const bytes = yield* sb.exec(["od", "-An", "-tx1"], { stdin: new Uint8Array([0, 255, 10]) })
        assert.strictEqual(bytes.stdout.trim(), "00 ff 0a")
      })
    )

    it.effect("the sandbox token never reaches a command's environment", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const r = yield* sb.exec("env")
        assert.notInclude(r.stdout, "SBX_TOKEN")
        assert.notInclude(r.stdout, "HF_SANDBOX_TOKEN")
      })
    )
  })

  describe("bad input gets typed errors", () => {
    it.effect("a wrong token is an AuthError", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const wire = yield* Wire.make({
          baseUrl: `http://127.0.0.1:${sb.details.port}`,
          token: Redacted.make("not-the-token")
        })
        const error = yield* Effect.flip(Effect.scoped(wire.openRead("anything")))
        assert.strictEqual(error._tag, "AuthError")
        assert.notInclude(error.message, "not-the-token")
      })
    )

    it.effect("a missing file is a FileNotFoundError naming the path", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const error = yield* Effect.flip(sb.files.read("does/not/exist.txt"))
        assert.strictEqual(error._tag, "FileNotFoundError")
        assert.include(error.message, "does/not/exist.txt")
      })
    )

    it.effect("reading a directory is an IsDirectoryError", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.mkdir("a-directory")
        const error = yield* Effect.flip(sb.files.read("a-directory"))
        assert.strictEqual(error._tag, "IsDirectoryError")
      })
    )

    it.effect("an argv command that does not exist is a CommandNotFoundError; in a shell it is exit 127", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const error = yield* Effect.flip(sb.exec(["no-such-command-xyz", "--flag"]))
        assert.strictEqual(error._tag, "CommandNotFoundError")
        assert.include(error.message, "no-such-command-xyz")
        const r = yield* sb.exec("no-such-command-xyz")
        assert.strictEqual(r.exitCode, 127)
        assert.include(r.stderr, "no-such-command-xyz")
      })
    )

    it.effect("a missing working directory is a BadRequestError", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const error = yield* Effect.flip(sb.exec("true", { cwd: "/no/such/dir" }))
        assert.strictEqual(error._tag, "BadRequestError")
        assert.include(error.message, "/no/such/dir")
      })
    )
  })

  describe("bytes", () => {
    it.effect("non-UTF-8 output does not break exec", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const r = yield* sb.exec(["printf", "ok \\377\\376 still ok\\n"])
        assert.strictEqual(r.exitCode, 0)
        assert.strictEqual(r.stdout, "ok \uFFFD\uFFFD still ok\n")
      })
    )

    it.effect("multi-byte characters survive chunk boundaries", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        // 100k three-byte characters: many 32 KiB chunks, most of them splitting a character.
        const r = yield* sb.exec(["python3", "-c", "import sys; sys.stdout.write('\u20ac' * 100000)"])
        assert.strictEqual(r.stdout.length, 100000)
        assert.isTrue(/^\u20ac+$/.test(r.stdout))
      })
    )

    it.effect("10 MiB of random bytes round-trip exactly", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const data = new Uint8Array(randomBytes(10 * 1024 * 1024))
        yield* sb.files.write("random.bin", data)
        const back = yield* sb.files.read("random.bin")
        assert.strictEqual(back.length, data.length)
        assert.isTrue(Buffer.from(back).equals(Buffer.from(data)))
        const info = yield* sb.files.stat("random.bin")
        assert.deepInclude(info, { type: "file", size: data.length, name: "random.bin" })
      })
    )

    it.effect("captured output is capped at maxOutputBytes and says so", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const r = yield* sb.exec(["python3", "-c", "print('x' * 100000)"], { maxOutputBytes: 1000 })
        assert.strictEqual(r.stdout.length, 1000)
        assert.isTrue(r.truncated)
        assert.strictEqual(r.exitCode, 0)
      })
    )
  })

  describe("execStream", () => {
    it.effect("streams Start, raw output bytes of both streams, then Exit", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const events = Array.from(
          yield* Stream.runCollect(sb.execStream("printf 'a\\377'; printf 'e' >&2; sleep 0.05; printf 'b'; exit 3"))
        )
        assert.strictEqual(events[0]?._tag, "Start")
        assert.deepInclude(events[events.length - 1], { _tag: "Exit", exitCode: 3, timedOut: false })
        const bytes = (tag: string) =>
          Buffer.concat(events.flatMap((e) => (e._tag === tag && "data" in e ? [e.data] : [])))
        assert.isTrue(bytes("Stdout").equals(Buffer.from([0x61, 0xff, 0x62])))
        assert.strictEqual(bytes("Stderr").toString(), "e")
      })
    )

    it.effect("a consumer that stops early kills the remote command", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const first = yield* Stream.runCollect(
          sb.execStream("echo $$ > chatty.pid; while true; do echo chatter; done").pipe(
            Stream.filter((e) => e._tag === "Stdout"),
            Stream.take(1)
          )
        )
        assert.strictEqual(first.length, 1)
        const pid = Number((yield* sb.files.readText("chatty.pid")).trim())
        yield* assertGone([pid])
      })
    )

    // CPU-bound (about 6 s on a quiet 2-core machine): the bound below only stops a hang.
    it.effect(
      "a slow consumer holds the producer back (back-pressure), and 64 MiB stream through",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          // Four times the memory bound below (a client that piled the output up could not pass), twice the
          // bound on how far ahead the command may get. The client was measured holding 1.7-2.5 MiB more.
          const size = 64 * 1024 * 1024
          let pid = 0
          let consumed = 0
          let producedWhileSlow = 0
          const before = yield* retained
          let growth = 0
          let nextLook = 8 * 1024 * 1024
          const total = yield* sb.execStream(["head", "-c", String(size), "/dev/zero"]).pipe(
            Stream.tap((e) =>
              Effect.gen(function* () {
                if (e._tag === "Start") pid = e.pid
                if (e._tag !== "Stdout") return
                consumed += e.data.length
                // Read slowly for the first ~1 MiB, then see how far ahead the command got.
                if (consumed < 1024 * 1024) yield* Effect.sleep("15 millis")
                else if (producedWhileSlow === 0 && process.platform === "linux") {
                  const io = fs.readFileSync(`/proc/${pid}/io`, "utf8")
                  producedWhileSlow = Number(/wchar: (\d+)/.exec(io)?.[1] ?? 0)
                }
              })
            ),
            Stream.tap((e) => {
              // Every 8 MiB, what the client holds: a client that piled output up would show it growing.
              if (e._tag !== "Stdout" || consumed < nextLook) return Effect.void
              nextLook += 8 * 1024 * 1024
              return Effect.map(retained, (now) => {
                growth = Math.max(growth, now - before)
              })
            }),
            Stream.runFold(0, (sum, e) => (e._tag === "Stdout" ? sum + e.data.length : sum))
          )
          assert.strictEqual(total, size)
          assert.isBelow(growth, 16 * 1024 * 1024, `the client's memory grew by ${growth} bytes`)
          if (process.platform === "linux") {
            // Pipes, socket buffers and one server chunk may hold a few MiB (3.7 MiB measured); an unbounded
            // client would let the command finish all 64 MiB while the consumer read its first megabyte.
            assert.isAbove(producedWhileSlow, 0, "the command's write count was read")
            assert.isBelow(producedWhileSlow, 32 * 1024 * 1024, `the command wrote ${producedWhileSlow} bytes ahead`)
          }
        }),
      180_000
    )
  })

  describe("background processes", () => {
    it.effect("spawn, follow output, kill the whole group, wait shows the signal", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const proc = yield* sb.spawn("sleep 30 & echo child $!; while true; do echo tick; sleep 0.05; done", {
          tag: "ticker"
        })
        assert.match(proc.id, /^p-\d+$/)
        const early = yield* proc.output({ follow: true }).pipe(
          Stream.filter((e) => e._tag === "Stdout"),
          Stream.map((e) => ("text" in e ? e.text : "")),
          Stream.takeUntil((text) => text.includes("tick")),
          Stream.runCollect
        )
        const child = Number(/child (\d+)/.exec(Array.from(early).join(""))?.[1])
        assert.isTrue(child > 0)
        const listed = (yield* sb.processes).find((p) => p.id === proc.id)
        assert.deepInclude(listed, { running: true, tag: "ticker", pid: proc.pid })

        assert.isTrue(yield* proc.kill("SIGTERM"))
        const exit = yield* proc.wait
        assert.deepInclude(exit, { exitCode: null, signal: 15, timedOut: false })
        yield* assertGone([proc.pid, child])
        assert.isFalse(yield* proc.kill())
        // Late readers still get the buffered output, then the exit.
        const replay = Array.from(yield* Stream.runCollect(proc.output()))
        assert.isTrue(replay.some((e) => e._tag === "Stdout"))
        assert.deepInclude(replay[replay.length - 1], { _tag: "Exit", signal: 15 })
      })
    )

    it.effect("an unknown process id or pid is a ProcessNotFoundError, never a silent success", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        // The wire client addresses processes by id; the local server's token is in its initial environment.
        const token = fs
          .readFileSync(`/proc/${sb.details.pid}/environ`, "utf8")
          .split("\0")
          .find((entry) => entry.startsWith("SBX_TOKEN="))!
          .slice("SBX_TOKEN=".length)
        const wire = yield* Wire.make({ baseUrl: `http://127.0.0.1:${sb.details.port}`, token: Redacted.make(token) })
        for (const id of ["p-999999", "2147483"]) {
          const error = yield* Effect.flip(wire.kill(id, "KILL"))
          assert.strictEqual(error._tag, "ProcessNotFoundError")
          assert.include(error.message, id)
        }
        // A listed process can also be addressed by its OS pid.
        const proc = yield* sb.spawn(["sleep", "30"])
        assert.isTrue(yield* wire.kill(String(proc.pid), "KILL"))
        assert.deepInclude(yield* proc.wait, { signal: 9 })
      })
    )

    it.effect("a process is found again by its id or pid, with a handle that follows and kills it", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const started = yield* sb.spawn("echo ready; sleep 30", { tag: "found-again" })
        const byId = yield* sb.process(started.id)
        const byPid = yield* sb.process(started.pid)
        assert.strictEqual(byId.pid, started.pid)
        assert.strictEqual(byPid.id, started.id)
        const first = yield* byPid.output({ follow: true }).pipe(
          Stream.filter((e) => e._tag === "Stdout"),
          Stream.take(1),
          Stream.runCollect
        )
        assert.include(Array.from(first).map((e) => ("text" in e ? e.text : ""))[0], "ready")
        assert.isTrue(yield* byId.kill("SIGTERM"))
        assert.deepInclude(yield* started.wait, { signal: 15 })
        // An exited process is still listed, so it is still found; one never started is not.
        assert.deepInclude(yield* (yield* sb.process(started.id)).wait, { signal: 15 })
        for (const missing of ["p-999999", 2147483] as const) {
          const error = yield* Effect.flip(sb.process(missing))
          assert.strictEqual(error._tag, "ProcessNotFoundError")
          assert.include(error.message, String(missing))
        }
      })
    )

    it.effect("spawnScoped kills the process when its scope closes", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const pid = yield* sb.spawnScoped(["sleep", "60"]).pipe(
          Effect.map((p) => p.pid),
          Effect.scoped
        )
        yield* assertGone([pid])
      })
    )
  })

  describe("logs", () => {
    it.effect("the local sandbox's log is its server's output, and a snapshot ends", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const lines = yield* Stream.runCollect(sb.logs({ tail: 5 }))
        assert.isAtMost(lines.length, 5)
        assert.strictEqual(Chunk.size(yield* Stream.runCollect(sb.logs({ tail: 0 }))), 0, "the last 0 lines are none")
      })
    )
  })

  describe("timeouts", () => {
    it.effect("an exec timeout kills the command and its children, and keeps partial output", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const r = yield* sb.exec("sleep 30 & echo $!; echo started; sleep 30", { timeout: "2 seconds" })
        assert.deepInclude(r, { timedOut: true, exitCode: null, signal: 9 })
        const [child] = r.stdout.split("\n")
        assert.include(r.stdout, "started")
        yield* assertGone([Number(child)])
      })
    )
  })

  describe("files", () => {
    it.effect("stat, list, mode and remove behave as documented", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("tree/b.sh", "#!/bin/sh\necho hi\n", { mode: 0o755 })
        yield* sb.files.write("tree/a.txt", "a")
        const entries = yield* sb.files.list("tree")
        assert.deepStrictEqual(
          entries.map((e) => [e.name, e.type, e.mode]),
          [
            ["a.txt", "file", 0o644],
            ["b.sh", "file", 0o755]
          ]
        )
        assert.strictEqual((yield* sb.exec("./tree/b.sh")).stdout, "hi\n")
        const notEmpty = yield* Effect.flip(sb.files.remove("tree"))
        assert.strictEqual(notEmpty._tag, "IsDirectoryError")
        yield* sb.files.remove("tree", { recursive: true })
        assert.isFalse(yield* sb.files.exists("tree"))
      })
    )

    it.effect("mkdir over a file is a BadRequestError that says so", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("plain-file", "x")
        const error = yield* Effect.flip(sb.files.mkdir("plain-file"))
        assert.strictEqual(error._tag, "BadRequestError")
        assert.include(error.message, "already_exists")
      })
    )

    it.effect("upload, download and readStream move files byte-exact, streamed", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-transfer-"))
        const source = path.join(dir, "source.bin")
        const data = randomBytes(10 * 1024 * 1024 + 7)
        fs.writeFileSync(source, data)
        yield* sb.files.upload(source, "transfer/up.bin", { mode: 0o600 })
        assert.deepInclude(yield* sb.files.stat("transfer/up.bin"), { size: data.length, mode: 0o600 })
        const streamed = yield* Stream.runCollect(sb.files.readStream("transfer/up.bin"))
        assert.isTrue(Buffer.concat(Array.from(streamed)).equals(data))
        const target = path.join(dir, "nested/down.bin")
        yield* sb.files.download("transfer/up.bin", target)
        assert.isTrue(fs.readFileSync(target).equals(data))
        assert.deepStrictEqual(fs.readdirSync(path.dirname(target)), ["down.bin"])

        const missing = yield* Effect.flip(sb.files.download("transfer/nope.bin", path.join(dir, "nope.bin")))
        assert.strictEqual(missing._tag, "FileNotFoundError")
        assert.deepStrictEqual(fs.readdirSync(dir).sort(), ["nested", "source.bin"])
        const noLocal = yield* Effect.flip(sb.files.upload(path.join(dir, "absent.bin"), "x.bin"))
        assert.strictEqual(noLocal._tag, "LocalFileError")
        fs.rmSync(dir, { recursive: true, force: true })
      })
    )

    it.effect("write takes a Stream, sent as it is produced", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const parts = Array.from({ length: 50 }, (_, i) => randomBytes(100_000 + i))
        yield* sb.files.write("streamed/parts.bin", Stream.fromIterable(parts.map((p) => new Uint8Array(p))))
        const back = yield* sb.files.read("streamed/parts.bin")
        assert.isTrue(Buffer.from(back).equals(Buffer.concat(parts)))
        // A failing source fails the write with its own error.
        const failing = Stream.concat(
          Stream.make(new Uint8Array([1, 2, 3])),
          Stream.fail(new BadRequestError({ operation: "source", status: 0, detail: "the source broke" }))
        )
        const error = yield* Effect.flip(sb.files.write("streamed/broken.bin", failing))
        assert.strictEqual(error._tag, "BadRequestError")
        assert.include(error.message, "the source broke")
      })
    )

    it.effect("rename and chmod", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("moving/a.sh", "#!/bin/sh\necho moved\n")
        yield* sb.files.rename("moving/a.sh", "moved/deeper/b.sh")
        assert.isFalse(yield* sb.files.exists("moving/a.sh"))
        yield* sb.files.chmod("moved/deeper/b.sh", 0o750)
        assert.strictEqual((yield* sb.files.stat("moved/deeper/b.sh")).mode, 0o750)
        assert.strictEqual((yield* sb.exec("./moved/deeper/b.sh")).stdout, "moved\n")
        const missing = yield* Effect.flip(sb.files.rename("nope", "elsewhere"))
        assert.strictEqual(missing._tag, "FileNotFoundError")
      })
    )

    it.effect("overwriting a file with a shorter one leaves no stale tail", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("over.txt", "a long first version")
        yield* sb.files.write("over.txt", "short")
        assert.strictEqual(yield* sb.files.readText("over.txt"), "short")
      })
    )
  })
})
