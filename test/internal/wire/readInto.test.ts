/**
 * Stdin read from a file descriptor straight into the feed's parts (what `hf-sandbox exec -i` does with
 * its own stdin): a pipe that is non-blocking (as fd 0 is once anything touched `process.stdin`), a pipe
 * that pauses while a part is flushed, a regular file, and a command that stops reading.
 */
import { spawn as spawnChild } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as ReadInto from "../../../src/internal/wire/readInto.js"
import * as Stdin from "../../../src/internal/wire/stdin.js"
import { eventually, localLayer } from "../../support/local.js"

const Local = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

/** A temporary directory for the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-stdin-fd-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/**
 * A FIFO in `dir`: its read end, opened non-blocking, and its write end (opened before anything reads,
 * so that the reader does not see the end of input first), for the caller to close.
 */
const fifo = (dir: string) =>
  Effect.gen(function* () {
    const file = path.join(dir, "fifo")
    yield* Effect.promise(
      () => new Promise<void>((resolve) => spawnChild("mkfifo", [file]).once("exit", () => resolve()))
    )
    // The read end is the stream's to close (see fromFd).
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    return { fd, writer: fs.openSync(file, fs.constants.O_WRONLY) }
  })

/** A host command writing into `writer` (which is closed here: the command holds its own), killed with the scope. */
const writing = (command: string, args: ReadonlyArray<string>, writer: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawnChild(command, args, { stdio: ["ignore", writer, "ignore"] })
      fs.closeSync(writer)
      return child
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

const fdStream = (fd: number) =>
  ReadInto.fromFd(
    fd,
    () => fs.createReadStream("", { fd, autoClose: false }),
    (cause) => new Error(String(cause))
  )

const outputText = (process: Sandbox.Process<unknown>) =>
  process.output().pipe(
    Stream.filterMap((event) => (event._tag === "Stdout" ? Option.some(event.text) : Option.none())),
    Stream.runCollect,
    Effect.map((chunks) => [...chunks].join(""))
  )

layer(Local, { excludeTestServices: true, timeout: "60 seconds" })("stdin read from a descriptor", (it) => {
  it.effect("a FIFO and a regular file, over several parts: every byte, in order", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const dir = yield* tempDir
      const data = randomBytes(2 * Stdin.PART_BYTES + 12_345)
      const file = path.join(dir, "data")
      fs.writeFileSync(file, data)
      const pipe = yield* fifo(dir)
      assert.isDefined(ReadInto.readIntoOf(fdStream(pipe.fd)))
      yield* writing("cat", [file], pipe.writer)
      const viaPipe = yield* sb.exec(["sha256sum"], { stdin: fdStream(pipe.fd) })
      assert.strictEqual(viaPipe.stdout.split(" ")[0], sha256(data))
      const fd = fs.openSync(file, fs.constants.O_RDONLY)
      assert.isDefined(ReadInto.readIntoOf(fdStream(fd)))
      const viaFile = yield* sb.exec(["sha256sum"], { stdin: fdStream(fd) })
      assert.strictEqual(viaFile.stdout.split(" ")[0], sha256(data))
    }).pipe(Effect.scoped)
  )

  it.effect("a fill reads on until its region is full, the input ends, or it is cut (the source paused)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const data = randomBytes(4 * 1024 * 1024 + 10)
      const file = path.join(dir, "data")
      fs.writeFileSync(file, data)
      const pipe = yield* fifo(dir)
      const reader = yield* ReadInto.readIntoOf(fdStream(pipe.fd))!
      // A pipe gives at most 64 KiB per read: one fill is many reads, and it returns only with all 4 MiB.
      yield* writing("cat", [file], pipe.writer)
      const region = new Uint8Array(4 * 1024 * 1024 + 5)
      const whole = yield* reader.fill(region, 5, 4 * 1024 * 1024)
      assert.deepStrictEqual(whole, { n: 4 * 1024 * 1024, ended: false })
      assert.strictEqual(sha256(region.subarray(5)), sha256(data.subarray(0, 4 * 1024 * 1024)))
      const rest = new Uint8Array(1024)
      const last = yield* reader.fill(rest, 0, 1024)
      assert.deepStrictEqual(last, { n: 10, ended: true })
      assert.strictEqual(sha256(rest.subarray(0, 10)), sha256(data.subarray(4 * 1024 * 1024)))
    }).pipe(Effect.scoped)
  )

  it.effect("a cut fill returns what it holds; the bytes after it go to the next fill", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const pipe = yield* fifo(dir)
      const reader = yield* ReadInto.readIntoOf(fdStream(pipe.fd))!
      assert.strictEqual(reader.pending(), 0)
      const first = new Uint8Array(1024)
      fs.writeSync(pipe.writer, "one\n")
      const filling = yield* Effect.fork(reader.fill(first, 0, first.length))
      yield* eventually(
        Effect.filterOrFail(
          Effect.sync(() => reader.pending()),
          (n) => n === 4,
          (n) => new Error(`pending ${n}`)
        )
      )
      reader.cut()
      assert.deepStrictEqual(yield* Fiber.join(filling), { n: 4, ended: false })
      assert.strictEqual(Buffer.from(first.subarray(0, 4)).toString(), "one\n")
      fs.writeSync(pipe.writer, "two\n")
      fs.closeSync(pipe.writer)
      const second = new Uint8Array(1024)
      assert.deepStrictEqual(yield* reader.fill(second, 0, second.length), { n: 4, ended: true })
      assert.strictEqual(Buffer.from(second.subarray(0, 4)).toString(), "two\n")
      assert.deepStrictEqual(yield* reader.fill(second, 0, second.length), { n: 0, ended: true })
    }).pipe(Effect.scoped)
  )

  it.effect("a pipe that pauses: its bytes are sent as they come, and those read during a flush follow", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const dir = yield* tempDir
      const pipe = yield* fifo(dir)
      const writer = pipe.writer
      const p = yield* sb.spawn(["sh", "-c", 'read a; echo "got $a"; read b; echo "got $b"'], {
        stdin: fdStream(pipe.fd)
      })
      fs.writeSync(writer, "one\n")
      // Only a flush of the part can have brought the first line; the feed reads on meanwhile.
      yield* eventually(
        Effect.filterOrFail(
          outputText(p),
          (out) => out === "got one\n",
          (out) => new Error(`output so far: ${out}`)
        )
      )
      fs.writeSync(writer, "two\n")
      fs.closeSync(writer)
      assert.strictEqual((yield* p.wait).exitCode, 0)
      assert.strictEqual(yield* outputText(p), "got one\ngot two\n")
    }).pipe(Effect.scoped)
  )

  it.effect("a command that stops reading ends the feed quietly while the pipe still has more", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const dir = yield* tempDir
      const pipe = yield* fifo(dir)
      yield* writing("yes", [], pipe.writer)
      const result = yield* sb.exec(["head", "-c", "10"], { stdin: fdStream(pipe.fd) })
      assert.strictEqual(result.exitCode, 0)
      assert.strictEqual(result.stdout, "y\ny\ny\ny\ny\n")
    }).pipe(Effect.scoped)
  )
})
