/**
 * Bad file input through the public API, against a real local server: every case is one typed error
 * whose message names the offending path (or says what is wrong and what to do), and none of them
 * leaves a partial file or directory behind — neither in the sandbox nor on this machine.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { TransferProgress } from "hf-sandbox/Files"
import * as Sandbox from "hf-sandbox/Sandbox"
import { BadRequestError, type OperationError } from "hf-sandbox/SandboxError"
import { localLayer } from "../support/local.js"

const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const isRoot = process.getuid?.() === 0

/** A fresh directory on this machine, removed when the test's scope closes. */
const localDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-files-errors-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Every entry under `dir` on this machine, relative and sorted (to prove nothing was left behind). */
const localTree = (dir: string): Array<string> =>
  (fs.readdirSync(dir, { recursive: true }) as Array<string>).map(String).sort()

/** The names in a sandbox directory. */
const names = (sb: Sandbox.Sandbox, dir: string) =>
  Effect.map(sb.files.list(dir), (entries) => entries.map((e) => e.name))

/** A fresh, empty directory in the sandbox for one test (relative to the sandbox's working directory). */
const scratch = (sb: Sandbox.Sandbox, label: string) =>
  Effect.gen(function* () {
    const dir = `${label}-${randomBytes(4).toString("hex")}`
    yield* sb.files.mkdir(dir)
    const absolute = (yield* sb.files.stat(dir)).path
    return { dir, absolute }
  })

/** The error `effect` fails with; a success fails the test with what it returned. */
const failure = <A>(effect: Effect.Effect<A, OperationError>) =>
  Effect.flip(effect).pipe(
    Effect.catchAll((value) => Effect.dieMessage(`expected a failure, got a success: ${String(value)}`))
  )

/** The server's code of an error, when it has one. */
const codeOf = (error: OperationError) => ("code" in error ? error.code : undefined)

layer(SharedSandbox, { excludeTestServices: true })("files: bad input gets typed errors and leaves nothing", (it) => {
  describe("paths", () => {
    it.effect("a relative path resolves against the sandbox's working directory, as documented", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const home = (yield* sb.files.stat(".")).path
        assert.isTrue(path.isAbsolute(home))
        const { dir } = yield* scratch(sb, "relative")
        yield* sb.files.write(`${dir}/nested/rel.txt`, "relative")
        const info = yield* sb.files.stat(`${dir}/nested/rel.txt`)
        assert.strictEqual(info.path, `${home}/${dir}/nested/rel.txt`)
        // Commands run in the same directory, so both sides agree on what a relative path means.
        assert.strictEqual((yield* sb.exec(["cat", `${dir}/nested/rel.txt`])).stdout, "relative")
        assert.strictEqual(yield* sb.files.readText(`./${dir}/../${dir}/nested/rel.txt`), "relative")
      })
    )

    it.scoped("an empty path is a BadRequestError for every operation, and nothing is created", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const source = path.join(local, "source.txt")
        fs.writeFileSync(source, "data")
        yield* sb.files.write("source-in-sandbox.txt", "stays")
        const before = yield* names(sb, ".")
        const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
          ["write", sb.files.write("", "data")],
          ["write a stream", sb.files.write("", Stream.make(new Uint8Array([1, 2, 3])))],
          ["read", sb.files.read("")],
          ["readStream", Stream.runDrain(sb.files.readStream(""))],
          ["stat", sb.files.stat("")],
          ["exists", sb.files.exists("")],
          ["list", sb.files.list("")],
          ["remove", sb.files.remove("", { recursive: true })],
          ["mkdir", sb.files.mkdir("")],
          ["chmod", sb.files.chmod("", 0o644)],
          ["rename from", sb.files.rename("", "renamed.txt")],
          ["rename to", sb.files.rename("source-in-sandbox.txt", "")],
          ["upload", sb.files.upload(source, "")],
          ["download", sb.files.download("", path.join(local, "down.txt"))]
        ]
        for (const [name, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "BadRequestError", `${name}: ${error.message}`)
          // "query parameter `path` is empty" (`from` / `to` for rename).
          assert.match(error.message, /`(path|from|to)` is empty/, name)
        }
        assert.deepStrictEqual(yield* names(sb, "."), before)
        assert.strictEqual(yield* sb.files.readText("source-in-sandbox.txt"), "stays")
        assert.deepStrictEqual(localTree(local), ["source.txt"])
      })
    )

    it.scoped("a path with a NUL byte is a BadRequestError that says so, and nothing is created", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const source = path.join(local, "source.txt")
        fs.writeFileSync(source, "data")
        const { dir } = yield* scratch(sb, "nul")
        yield* sb.files.write(`${dir}/real.txt`, "real")
        // A C-level call would silently cut the name at the NUL: `${dir}/cut` must never appear.
        const bad = `${dir}/cut\0tail.txt`
        const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
          ["write", sb.files.write(bad, "data")],
          ["read", sb.files.read(bad)],
          ["stat", sb.files.stat(bad)],
          ["exists", sb.files.exists(bad)],
          ["list", sb.files.list(bad)],
          ["remove", sb.files.remove(bad)],
          ["mkdir", sb.files.mkdir(bad)],
          ["chmod", sb.files.chmod(bad, 0o600)],
          ["rename to", sb.files.rename(`${dir}/real.txt`, bad)],
          ["upload", sb.files.upload(source, bad)],
          ["download", sb.files.download(bad, path.join(local, "down.txt"))]
        ]
        for (const [name, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "BadRequestError", `${name}: ${error.message}`)
          assert.include(error.message, "NUL", name)
        }
        assert.deepStrictEqual(yield* names(sb, dir), ["real.txt"])
        assert.strictEqual(yield* sb.files.readText(`${dir}/real.txt`), "real")
        assert.deepStrictEqual(localTree(local), ["source.txt"])
      })
    )
  })

  describe("a directory where a file is expected", () => {
    it.scoped("read, readStream and download of a directory are IsDirectoryErrors naming it", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir, absolute } = yield* scratch(sb, "read-dir")
        const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
          ["read", sb.files.read(dir)],
          ["readText", sb.files.readText(dir)],
          ["readStream", Stream.runDrain(sb.files.readStream(dir))],
          ["download", sb.files.download(dir, path.join(local, "down.txt"))]
        ]
        for (const [name, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "IsDirectoryError", `${name}: ${error.message}`)
          assert.include(error.message, dir, name)
        }
        // The download's temp file is gone too.
        assert.deepStrictEqual(localTree(local), [])
        assert.deepStrictEqual((yield* sb.files.stat(dir)).type, "dir")
        assert.isTrue(absolute.endsWith(dir))
      })
    )

    it.scoped(
      "write, a streamed write and upload onto a directory are IsDirectoryErrors; the directory is intact",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const local = yield* localDir
          const small = path.join(local, "small.bin")
          fs.writeFileSync(small, "tiny")
          const { dir } = yield* scratch(sb, "write-dir")
          yield* sb.files.write(`${dir}/target/inside.txt`, "inside")
          const target = `${dir}/target`
          const modeBefore = (yield* sb.files.stat(target)).mode
          const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
            ["write", sb.files.write(target, "data")],
            ["write with a mode", sb.files.write(target, "data", { mode: 0o600 })],
            ["write a stream", sb.files.write(target, Stream.make(new Uint8Array([1, 2, 3]), new Uint8Array([4])))],
            ["upload", sb.files.upload(small, target)],
            ["write with a trailing slash", sb.files.write(`${target}/`, "data")]
          ]
          for (const [name, attempt] of attempts) {
            const error = yield* failure(attempt)
            assert.strictEqual(error._tag, "IsDirectoryError", `${name}: ${error.message}`)
            assert.include(error.message, target, name)
          }
          // Still a directory, and the refused `mode` was not applied to it.
          assert.deepInclude(yield* sb.files.stat(target), { type: "dir", mode: modeBefore })
          assert.deepStrictEqual(yield* names(sb, target), ["inside.txt"])
          assert.strictEqual(yield* sb.files.readText(`${target}/inside.txt`), "inside")
        })
    )

    it.scoped("a large upload onto a directory is an IsDirectoryError, not a lost connection", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        // Far more than any socket buffer: the server answers before the client has sent the body.
        const big = path.join(local, "big.bin")
        fs.writeFileSync(big, randomBytes(32 * 1024 * 1024))
        const { dir } = yield* scratch(sb, "upload-dir")
        const error = yield* failure(sb.files.upload(big, dir))
        assert.strictEqual(error._tag, "IsDirectoryError", error.message)
        assert.include(error.message, dir)
        assert.deepStrictEqual(yield* names(sb, dir), [])
        // The connection is still usable afterwards.
        yield* sb.files.write(`${dir}/after.txt`, "after")
        assert.strictEqual(yield* sb.files.readText(`${dir}/after.txt`), "after")
      })
    )
  })

  describe("a trailing slash names a directory", () => {
    it.effect("writing to a missing `dir/` is an error, not a file named `dir`", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "trailing-slash")
        const error = yield* failure(sb.files.write(`${dir}/out/`, "data"))
        assert.include(["IsDirectoryError", "BadRequestError"], error._tag)
        assert.include(error.message, `${dir}/out`)
        assert.deepStrictEqual(yield* names(sb, dir), [])
        yield* sb.files.write(`${dir}/file.txt`, "a file")
        const notDir = yield* failure(sb.files.read(`${dir}/file.txt/`))
        assert.strictEqual(notDir._tag, "BadRequestError")
        assert.include(notDir.message, "not_a_directory")
      })
    )
  })

  describe("a file where a directory is expected", () => {
    it.effect("listing a file is a BadRequestError (not_a_directory) that says to stat or read it", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "list-file")
        yield* sb.files.write(`${dir}/plain.txt`, "plain")
        const error = yield* failure(sb.files.list(`${dir}/plain.txt`))
        assert.strictEqual(error._tag, "BadRequestError")
        assert.strictEqual(codeOf(error), "not_a_directory")
        assert.include(error.message, `${dir}/plain.txt`)
        assert.include(error.message, "stat or read it")
      })
    )

    it.effect("mkdir over a file, or under one, is a BadRequestError naming it; the file is untouched", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "mkdir-file")
        const file = `${dir}/plain.txt`
        yield* sb.files.write(file, "plain")

        const over = yield* failure(sb.files.mkdir(file))
        assert.strictEqual(over._tag, "BadRequestError")
        assert.strictEqual(codeOf(over), "already_exists")
        assert.include(over.message, file)

        const under = yield* failure(sb.files.mkdir(`${file}/child/grandchild`))
        assert.strictEqual(under._tag, "BadRequestError")
        assert.strictEqual(codeOf(under), "not_a_directory")
        assert.include(under.message, file)

        assert.deepInclude(yield* sb.files.stat(file), { type: "file", size: 5 })
        assert.strictEqual(yield* sb.files.readText(file), "plain")
        assert.deepStrictEqual(yield* names(sb, dir), ["plain.txt"])
      })
    )

    it.scoped("write and upload to `file/child` are BadRequestErrors naming the file; nothing is created or lost", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const source = path.join(local, "source.txt")
        fs.writeFileSync(source, "source")
        const { dir } = yield* scratch(sb, "write-under-file")
        const file = `${dir}/plain.txt`
        yield* sb.files.write(file, "plain")
        const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
          ["write", sb.files.write(`${file}/child`, "data")],
          ["write deeper", sb.files.write(`${file}/sub/child`, "data")],
          ["write a stream", sb.files.write(`${file}/child`, Stream.make(new Uint8Array([1])))],
          ["upload", sb.files.upload(source, `${file}/child`)]
        ]
        for (const [name, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "BadRequestError", `${name}: ${error.message}`)
          assert.include(error.message, file, name)
        }
        assert.deepInclude(yield* sb.files.stat(file), { type: "file", size: 5 })
        assert.strictEqual(yield* sb.files.readText(file), "plain")
        assert.deepStrictEqual(yield* names(sb, dir), ["plain.txt"])
      })
    )

    it.effect("write to `file/child` says the parent is not a directory, like mkdir does", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "write-under-file-code")
        const file = `${dir}/plain.txt`
        yield* sb.files.write(file, "plain")
        const error = yield* failure(sb.files.write(`${file}/child`, "data"))
        assert.strictEqual(error._tag, "BadRequestError")
        assert.strictEqual(codeOf(error), "not_a_directory")
        assert.include(error.message, "not a directory")
      })
    )

    it.effect("rename to `file/child` is a not_a_directory BadRequestError; the source stays", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "rename-under-file")
        const file = `${dir}/plain.txt`
        yield* sb.files.write(file, "plain")
        yield* sb.files.write(`${dir}/movable.txt`, "movable")
        const error = yield* failure(sb.files.rename(`${dir}/movable.txt`, `${file}/child`))
        assert.strictEqual(error._tag, "BadRequestError", error.message)
        assert.strictEqual(codeOf(error), "not_a_directory")
        assert.include(error.message, file)
        assert.strictEqual(yield* sb.files.readText(`${dir}/movable.txt`), "movable")
        assert.strictEqual(yield* sb.files.readText(file), "plain")
      })
    )

    it.effect("read and stat of `file/child` are BadRequestErrors (not_a_directory) naming the path", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "read-under-file")
        const file = `${dir}/plain.txt`
        yield* sb.files.write(file, "plain")
        const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
          ["read", sb.files.read(`${file}/child`)],
          ["stat", sb.files.stat(`${file}/child`)]
        ]
        for (const [name, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "BadRequestError", `${name}: ${error.message}`)
          assert.strictEqual(codeOf(error), "not_a_directory", name)
          assert.include(error.message, `${file}/child`, name)
        }
      })
    )
  })

  describe("remove", () => {
    it.effect("a non-empty directory without `recursive` is an IsDirectoryError that says what to do", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "remove")
        yield* sb.files.write(`${dir}/full/a.txt`, "a")
        yield* sb.files.write(`${dir}/full/deeper/b.txt`, "b")
        const error = yield* failure(sb.files.remove(`${dir}/full`))
        assert.strictEqual(error._tag, "IsDirectoryError")
        assert.include(error.message, `${dir}/full`)
        assert.include(error.message, "not empty")
        assert.include(error.message, "recursive")
        // Nothing was removed.
        assert.deepStrictEqual(yield* names(sb, `${dir}/full`), ["a.txt", "deeper"])
        assert.strictEqual(yield* sb.files.readText(`${dir}/full/deeper/b.txt`), "b")
        // An empty directory needs no option; a full one goes with `recursive`.
        yield* sb.files.mkdir(`${dir}/empty`)
        yield* sb.files.remove(`${dir}/empty`)
        yield* sb.files.remove(`${dir}/full`, { recursive: true })
        assert.deepStrictEqual(yield* names(sb, dir), [])
      })
    )
  })

  describe("a location nobody may write", () => {
    // Root ignores permission bits, so a 0o555 directory stops only other users: for root the case
    // below on /sys (which refuses new files even to root) covers the same path through the server.
    it.effect.skipIf(isRoot)("writing into a read-only directory is a permission_denied BadRequestError", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "read-only")
        yield* sb.files.mkdir(`${dir}/ro`)
        yield* sb.files.chmod(`${dir}/ro`, 0o555)
        const attempts: Array<[string, string, Effect.Effect<unknown, OperationError>]> = [
          ["write", `${dir}/ro/x.txt`, sb.files.write(`${dir}/ro/x.txt`, "data")],
          ["write into a new subdirectory", `${dir}/ro/sub`, sb.files.write(`${dir}/ro/sub/x.txt`, "data")],
          ["mkdir", `${dir}/ro/sub`, sb.files.mkdir(`${dir}/ro/sub`)]
        ]
        for (const [name, shown, attempt] of attempts) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "BadRequestError", `${name}: ${error.message}`)
          assert.strictEqual(codeOf(error), "permission_denied", name)
          assert.include(error.message, shown, name)
        }
        assert.deepStrictEqual(yield* names(sb, `${dir}/ro`), [])
        yield* sb.files.chmod(`${dir}/ro`, 0o755)
      })
    )

    it.effect.runIf(process.platform === "linux")(
      "writing where even root may not create files (/sys) is a permission_denied (or read_only) BadRequestError",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const name = `/sys/hf-sandbox-test-${randomBytes(4).toString("hex")}`
          const attempts: Array<[string, Effect.Effect<unknown, OperationError>]> = [
            ["write", sb.files.write(`${name}.txt`, "data")],
            ["write into a new directory", sb.files.write(`${name}/x.txt`, "data")],
            ["mkdir", sb.files.mkdir(name)]
          ]
          for (const [label, attempt] of attempts) {
            const error = yield* failure(attempt)
            assert.strictEqual(error._tag, "BadRequestError", `${label}: ${error.message}`)
            // sysfs refuses new files with EACCES; in a container it is often mounted read-only (EROFS).
            assert.include(["permission_denied", "read_only"], codeOf(error), label)
            assert.include(error.message, name, label)
            assert.match(error.message, /permission denied|read-only file system/, label)
          }
          assert.isFalse(yield* sb.files.exists(`${name}.txt`))
          assert.isFalse(yield* sb.files.exists(name))
        })
    )
  })

  describe("the local side of upload and download", () => {
    it.scoped("download to a path whose parent is a file is a LocalFileError; no .part file is left", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "download-parent")
        yield* sb.files.write(`${dir}/remote.bin`, new Uint8Array(randomBytes(256 * 1024)))
        fs.writeFileSync(path.join(local, "blocker"), "blocker")
        for (const target of [
          path.join(local, "blocker", "down.bin"),
          path.join(local, "blocker", "deep", "down.bin")
        ]) {
          const error = yield* failure(sb.files.download(`${dir}/remote.bin`, target))
          assert.strictEqual(error._tag, "LocalFileError", error.message)
          assert.include(error.message, target)
        }
        assert.deepStrictEqual(localTree(local), ["blocker"])
        assert.strictEqual(fs.readFileSync(path.join(local, "blocker"), "utf8"), "blocker")
      })
    )

    it.scoped("download onto a local directory is a LocalFileError; the directory is intact, no .part is left", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "download-onto-dir")
        yield* sb.files.write(`${dir}/remote.bin`, new Uint8Array(randomBytes(256 * 1024)))
        fs.mkdirSync(path.join(local, "existing"))
        fs.writeFileSync(path.join(local, "existing", "keep.txt"), "keep")
        const target = path.join(local, "existing")
        const error = yield* failure(sb.files.download(`${dir}/remote.bin`, target))
        assert.strictEqual(error._tag, "LocalFileError", error.message)
        assert.include(error.message, target)
        assert.deepStrictEqual(localTree(local), ["existing", path.join("existing", "keep.txt")])
      })
    )

    it.scoped("upload of a missing local file is a LocalFileError naming it; nothing is created remotely", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "upload-missing")
        const missing = path.join(local, "absent.bin")
        const error = yield* failure(sb.files.upload(missing, `${dir}/sub/up.bin`))
        assert.strictEqual(error._tag, "LocalFileError")
        assert.include(error.message, missing)
        assert.deepStrictEqual(yield* names(sb, dir), [])
      })
    )

    it.scoped("upload of a local directory fails and creates or truncates nothing remotely", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "upload-dir")
        fs.mkdirSync(path.join(local, "a-dir"))
        yield* sb.files.write(`${dir}/existing.bin`, "previous content")
        yield* failure(sb.files.upload(path.join(local, "a-dir"), `${dir}/up.bin`))
        yield* failure(sb.files.upload(path.join(local, "a-dir"), `${dir}/existing.bin`))
        assert.deepStrictEqual(yield* names(sb, dir), ["existing.bin"])
        assert.strictEqual(yield* sb.files.readText(`${dir}/existing.bin`), "previous content")
      })
    )

    it.scoped(
      "upload of a file that shrank since its stat is a LocalFileError (small or ranged); nothing is created",
      () =>
        Effect.gen(function* () {
          const local = yield* localDir
          // A stat that reports 16 bytes more than the file holds: the file shrank before it was read.
          const shrunk = Layer.effect(
            FileSystem.FileSystem,
            Effect.map(FileSystem.FileSystem, (real) => ({
              ...real,
              stat: (p: string) =>
                Effect.map(real.stat(p), (info) => ({ ...info, size: FileSystem.Size(info.size + 16n) }))
            }))
          )
          const sb = yield* Sandbox.make().pipe(Effect.provide(shrunk))
          const { dir } = yield* scratch(sb, "upload-shrunk")
          // One read of the file (sent as bytes), and one larger than that (sent as a stream).
          for (const size of [1024, 2 * 1024 * 1024]) {
            const file = path.join(local, `shrunk-${size}.bin`)
            fs.writeFileSync(file, randomBytes(size))
            const error = yield* failure(sb.files.upload(file, `${dir}/up-${size}.bin`))
            assert.strictEqual(error._tag, "LocalFileError", error.message)
            assert.include(error.message, "changed during the upload")
          }
          assert.deepStrictEqual(yield* names(sb, dir), [])
        })
    )

    it.scoped("upload of a local directory is a LocalFileError naming it", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "upload-dir-error")
        fs.mkdirSync(path.join(local, "a-dir"))
        const error = yield* failure(sb.files.upload(path.join(local, "a-dir"), `${dir}/up.bin`))
        assert.strictEqual(error._tag, "LocalFileError", error.message)
        assert.include(error.message, path.join(local, "a-dir"))
      })
    )
  })

  describe("exists", () => {
    it.effect("true for files and directories, false for a missing path or one under a missing directory", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "exists")
        yield* sb.files.write(`${dir}/plain.txt`, "plain")
        assert.isTrue(yield* sb.files.exists(dir))
        assert.isTrue(yield* sb.files.exists(`${dir}/plain.txt`))
        assert.isFalse(yield* sb.files.exists(`${dir}/missing.txt`))
        assert.isFalse(yield* sb.files.exists(`${dir}/missing/deeper.txt`))
      })
    )

    it.effect("a path under a file (ENOTDIR) does not exist: false, like test -e", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "exists-under-file")
        yield* sb.files.write(`${dir}/plain.txt`, "plain")
        assert.strictEqual((yield* sb.exec(["test", "-e", `${dir}/plain.txt/child`])).exitCode, 1)
        assert.isFalse(yield* sb.files.exists(`${dir}/plain.txt/child`))
      })
    )

    it.effect("any other failure is an error, never a silent false", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const error = yield* failure(sb.files.exists("bad\0path"))
        assert.strictEqual(error._tag, "BadRequestError")
      })
    )
  })
  describe("writes are atomic: nothing lost, nothing left behind", () => {
    const KiB = 1024
    /** Temp files of writes in a sandbox directory (polled: the server drops a cut range's on its own thread). */
    const noTempsLeft = (sb: Sandbox.Sandbox, dir: string) =>
      names(sb, dir).pipe(
        Effect.flatMap((entries) => {
          const temps = entries.filter((name) => name.includes(".hf-sandbox-"))
          return temps.length === 0 ? Effect.void : Effect.fail(temps)
        }),
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("8 seconds"))),
        Effect.orDie
      )
    /** Runs `write` and interrupts it once `after` bytes have gone out. */
    const interruptAfter = (
      after: number,
      write: (onProgress: (p: TransferProgress) => void) => Effect.Effect<void, OperationError>
    ) =>
      Effect.gen(function* () {
        const reached = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(
          write((p) => {
            if (p.bytes >= after) Deferred.unsafeDone(reached, Exit.void)
          })
        )
        yield* Deferred.await(reached)
        yield* Fiber.interrupt(fiber)
        return yield* Fiber.await(fiber)
      })

    it.scoped("an interrupted ranged upload leaves the old file byte for byte and no temp file", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const local = yield* localDir
        const { dir } = yield* scratch(sb, "atomic-upload")
        const old = new Uint8Array(randomBytes(200 * KiB))
        yield* sb.files.write(`${dir}/big.bin`, old, { mode: 0o640 })
        fs.writeFileSync(path.join(local, "big.bin"), randomBytes(8 * 1024 * KiB))
        const exit = yield* interruptAfter(512 * KiB, (onProgress) =>
          sb.files.upload(path.join(local, "big.bin"), `${dir}/big.bin`, {
            rangeSize: 64 * KiB,
            parallelism: 2,
            onProgress
          })
        )
        assert.isTrue(Exit.isInterrupted(exit))
        yield* noTempsLeft(sb, dir)
        assert.isTrue(Buffer.from(yield* sb.files.read(`${dir}/big.bin`)).equals(old))
        assert.deepInclude(yield* sb.files.stat(`${dir}/big.bin`), { size: old.length, mode: 0o640 })
        assert.deepStrictEqual(yield* names(sb, dir), ["big.bin"])
      })
    )

    it.scoped(
      "an interrupted write of bytes in ranges, and a streamed write interrupted mid-range, leave the old file",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const { dir } = yield* scratch(sb, "atomic-write")
          const old = new Uint8Array(randomBytes(100 * KiB))
          yield* sb.files.write(`${dir}/f`, old)
          const bytes = yield* interruptAfter(256 * KiB, (onProgress) =>
            sb.files.write(`${dir}/f`, new Uint8Array(8 * 1024 * KiB), {
              rangeSize: 64 * KiB,
              parallelism: 1,
              onProgress
            })
          )
          assert.isTrue(Exit.isInterrupted(bytes))
          // A stream that stops producing in its third range: the write hangs until it is interrupted.
          const chunk = new Uint8Array(16 * KiB)
          const stalled = Stream.concat(Stream.make(...Array.from({ length: 10 }, () => chunk)), Stream.never)
          const streamed = yield* interruptAfter(10 * 16 * KiB, (onProgress) =>
            sb.files.write(`${dir}/f`, stalled, { rangeSize: 64 * KiB, onProgress })
          )
          assert.isTrue(Exit.isInterrupted(streamed))
          yield* noTempsLeft(sb, dir)
          assert.isTrue(Buffer.from(yield* sb.files.read(`${dir}/f`)).equals(old))
          assert.deepStrictEqual(yield* names(sb, dir), ["f"])
        })
    )

    it.scoped("a streamed write whose source fails midway fails with its error and leaves the old file", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "atomic-fail")
        const old = new Uint8Array(randomBytes(100 * KiB))
        yield* sb.files.write(`${dir}/f`, old)
        const broken = new BadRequestError({
          operation: "source",
          status: 400,
          code: "broken",
          detail: "the source broke"
        })
        const source = Stream.concat(
          Stream.make(...Array.from({ length: 12 }, () => new Uint8Array(randomBytes(16 * KiB)))),
          Stream.fail(broken)
        )
        const error = yield* failure(sb.files.write(`${dir}/f`, source, { rangeSize: 64 * KiB }))
        assert.strictEqual(`${error._tag}: ${error.message}`, `${broken._tag}: ${broken.message}`)
        yield* noTempsLeft(sb, dir)
        assert.isTrue(Buffer.from(yield* sb.files.read(`${dir}/f`)).equals(old))
        // A stream that ends in its first range is still renamed into place whole.
        yield* sb.files.write(`${dir}/f`, Stream.make(new Uint8Array([1, 2]), new Uint8Array([3])), { mode: 0o600 })
        assert.deepStrictEqual(Array.from(yield* sb.files.read(`${dir}/f`)), [1, 2, 3])
        assert.strictEqual((yield* sb.files.stat(`${dir}/f`)).mode, 0o600)
        assert.deepStrictEqual(yield* names(sb, dir), ["f"])
      })
    )

    it.effect("a replacing write keeps the mode of the file it replaces; inPlace keeps the file itself", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir, absolute } = yield* scratch(sb, "atomic-mode")
        yield* sb.files.write(`${dir}/run.sh`, "#!/bin/sh\n", { mode: 0o750 })
        const first = fs.statSync(path.join(absolute, "run.sh")).ino
        yield* sb.files.write(`${dir}/run.sh`, "#!/bin/sh\necho hi\n")
        assert.strictEqual((yield* sb.files.stat(`${dir}/run.sh`)).mode, 0o750)
        const replaced = fs.statSync(path.join(absolute, "run.sh")).ino
        assert.notStrictEqual(replaced, first)
        // In place: a hard link to it sees the new content.
        fs.linkSync(path.join(absolute, "run.sh"), path.join(absolute, "hard"))
        yield* sb.files.write(`${dir}/run.sh`, "same inode", { inPlace: true })
        assert.strictEqual(fs.readFileSync(path.join(absolute, "hard"), "utf8"), "same inode")
        assert.strictEqual(fs.statSync(path.join(absolute, "run.sh")).ino, replaced)
      })
    )

    it.effect("symlink over a file is a FileExistsError unless replace: true; a link is re-pointed", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const { dir } = yield* scratch(sb, "symlink-replace")
        yield* sb.files.write(`${dir}/data`, "precious")
        const error = yield* failure(sb.files.symlink(`${dir}/data`, "elsewhere"))
        assert.strictEqual(error._tag, "FileExistsError")
        assert.include(error.message, `${dir}/data`)
        assert.include(error.message, "replace")
        assert.strictEqual(yield* sb.files.readText(`${dir}/data`), "precious")
        yield* sb.files.symlink(`${dir}/link`, "data")
        yield* sb.files.symlink(`${dir}/link`, "other")
        assert.strictEqual((yield* sb.files.stat(`${dir}/link`)).target, "other")
        yield* sb.files.symlink(`${dir}/data`, "other", { replace: true })
        assert.deepInclude(yield* sb.files.stat(`${dir}/data`), { type: "symlink", target: "other" })
        yield* sb.files.mkdir(`${dir}/sub`)
        const dirError = yield* failure(sb.files.symlink(`${dir}/sub`, "x", { replace: true }))
        assert.strictEqual(dirError._tag, "IsDirectoryError")
      })
    )
  })
})
