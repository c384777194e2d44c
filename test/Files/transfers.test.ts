/**
 * Large and whole-tree transfers against a real local server: ranged parallel requests, progress,
 * bounded client memory, files that change under a read, and directory copies that keep modes and
 * symlinks without ever following a link.
 */
import { createHash, randomBytes, randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { TransferProgress } from "hf-sandbox/Files"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "../support/local.js"
import { peakRssGrowth } from "../support/memory.js"

const KiB = 1024
const MiB = 1024 * KiB
const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-transfers-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Reads `file` through one reused 8 MiB buffer: a whole 256 MiB file read at once cost ~1.5 s of CPU. */
const sha256File = (file: string) => {
  const hash = createHash("sha256")
  const buffer = Buffer.allocUnsafe(8 * MiB)
  const fd = fs.openSync(file, "r")
  try {
    for (let n = fs.readSync(fd, buffer); n > 0; n = fs.readSync(fd, buffer)) hash.update(buffer.subarray(0, n))
  } finally {
    fs.closeSync(fd)
  }
  return hash.digest("hex")
}

/** Writes `size` random bytes (a multiple of 8 MiB) to `file` and returns their SHA-256, in one pass. */
const writeRandomFile = (file: string, size: number) => {
  const hash = createHash("sha256")
  const buffer = Buffer.allocUnsafe(8 * MiB)
  const fd = fs.openSync(file, "w")
  try {
    for (let written = 0; written < size; written += buffer.length) {
      randomFillSync(buffer)
      hash.update(buffer)
      fs.writeSync(fd, buffer)
    }
  } finally {
    fs.closeSync(fd)
  }
  return hash.digest("hex")
}

/** What a tree holds, found without following links: type, mode, and content or link target. */
const describeTree = (root: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const visit = (relative: string) => {
    for (const name of fs.readdirSync(path.join(root, relative)).sort()) {
      const rel = relative === "" ? name : `${relative}/${name}`
      const full = path.join(root, rel)
      const info = fs.lstatSync(full)
      const mode = (info.mode & 0o7777).toString(8)
      if (info.isSymbolicLink()) out[rel] = `link -> ${fs.readlinkSync(full)}`
      else if (info.isDirectory()) {
        out[rel] = `dir ${mode}`
        visit(rel)
      } else out[rel] = `file ${mode} ${createHash("sha256").update(fs.readFileSync(full)).digest("hex")}`
    }
  }
  visit("")
  return out
}

layer(SharedSandbox, { excludeTestServices: true })("transfers (shared local sandbox)", (it) => {
  describe("ranged transfers", () => {
    it.scoped("bytes larger than a range go as parallel ranges, exact, with progress, and leave no stale tail", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const data = new Uint8Array(randomBytes(MiB + 13))
        const seen: Array<TransferProgress> = []
        yield* sb.files.write("ranged/a.bin", new Uint8Array(3 * MiB))
        yield* sb.files.write("ranged/a.bin", data, {
          rangeSize: 64 * KiB,
          parallelism: 4,
          mode: 0o640,
          onProgress: (p) => seen.push(p)
        })
        const info = yield* sb.files.stat("ranged/a.bin")
        assert.deepInclude(info, { size: data.length, mode: 0o640 })
        assert.strictEqual(seen.at(-1)?.bytes, data.length)
        assert.isTrue(seen.every((p) => p.total === data.length))
        assert.isTrue(seen.every((p, i) => i === 0 || p.bytes > (seen[i - 1]?.bytes ?? 0)))

        const reads: Array<TransferProgress> = []
        const back = yield* sb.files.read("ranged/a.bin", {
          rangeSize: 64 * KiB,
          parallelism: 3,
          onProgress: (p) => reads.push(p)
        })
        assert.isTrue(Buffer.from(back).equals(data))
        assert.deepStrictEqual(reads.at(-1), { bytes: data.length, total: data.length })

        // An empty file is one empty range.
        yield* sb.files.write("ranged/empty.bin", new Uint8Array(0), { rangeSize: 64 * KiB })
        assert.strictEqual((yield* sb.files.read("ranged/empty.bin", { rangeSize: 64 * KiB })).length, 0)
      })
    )

    it.scoped(
      "a Stream longer than a range goes as consecutive ranges, exact, and a shorter rewrite cuts the tail",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const parts = Array.from({ length: 23 }, (_, i) => new Uint8Array(randomBytes(10_000 + i * 997)))
          const whole = Buffer.concat(parts)
          let last: TransferProgress | undefined
          yield* sb.files.write("ranged/stream.bin", Stream.fromIterable(parts), {
            rangeSize: 64 * KiB,
            mode: 0o600,
            onProgress: (p) => {
              last = p
            }
          })
          assert.deepStrictEqual(last, { bytes: whole.length, total: undefined })
          assert.isTrue(Buffer.from(yield* sb.files.read("ranged/stream.bin")).equals(whole))
          assert.strictEqual((yield* sb.files.stat("ranged/stream.bin")).mode, 0o600)

          yield* sb.files.write("ranged/stream.bin", Stream.make(new Uint8Array([1, 2, 3])), { rangeSize: 64 * KiB })
          assert.deepStrictEqual(Array.from(yield* sb.files.read("ranged/stream.bin")), [1, 2, 3])
          yield* sb.files.write("ranged/stream.bin", Stream.empty, { rangeSize: 64 * KiB })
          assert.strictEqual((yield* sb.files.stat("ranged/stream.bin")).size, 0)

          // Empty chunks, one right at a range's end, carry nothing and send nothing.
          const half = new Uint8Array(randomBytes(64 * KiB))
          const empty = new Uint8Array(0)
          yield* sb.files.write("ranged/stream.bin", Stream.make(empty, half, empty, half, empty), {
            rangeSize: 64 * KiB
          })
          const back = yield* sb.files.read("ranged/stream.bin")
          assert.isTrue(Buffer.from(back).equals(Buffer.concat([half, half])))
        })
    )

    it.scoped("a file that grows during a ranged read fails the read, and the connection stays usable", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.files.write("growing.log", new Uint8Array(2 * MiB))
        const appender = yield* sb.spawnScoped("while :; do echo more >> growing.log; done")
        const error = yield* Effect.flip(sb.files.read("growing.log", { rangeSize: 64 * KiB, parallelism: 1 }))
        assert.strictEqual(error._tag, "ConnectionLostError")
        assert.include(error.message, "changed size during the transfer")
        yield* appender.kill()
        yield* sb.files.write("after.txt", "still fine")
        assert.strictEqual(yield* sb.files.readText("after.txt"), "still fine")
      })
    )

    it.scoped("options out of range are an InvalidArgumentError before anything is sent", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const zero = yield* Effect.flip(sb.files.write("never.bin", "x", { parallelism: 0 }))
        assert.strictEqual(zero._tag, "InvalidArgumentError")
        assert.include(zero.message, "parallelism")
        const tiny = yield* Effect.flip(sb.files.read("never.bin", { rangeSize: 100 }))
        assert.strictEqual(tiny._tag, "InvalidArgumentError")
        assert.include(tiny.message, "64 KiB")
        assert.isFalse(yield* sb.files.exists("never.bin"))
      })
    )

    it.scoped(
      "256 MiB round-trip byte-exact through upload and download, with bounded client memory",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const dir = yield* tempDir
          const source = path.join(dir, "big.bin")
          const digest = writeRandomFile(source, 256 * MiB)
          let uploaded: TransferProgress | undefined
          const up = yield* peakRssGrowth(
            sb.files.upload(source, "big/big.bin", {
              onProgress: (p) => {
                uploaded = p
              }
            })
          )
          assert.deepStrictEqual(uploaded, { bytes: 256 * MiB, total: 256 * MiB })
          const remote = yield* sb.exec(["sha256sum", "big/big.bin"])
          assert.strictEqual(remote.stdout.split(" ")[0], digest)

          const target = path.join(dir, "back/big.bin")
          const down = yield* peakRssGrowth(sb.files.download("big/big.bin", target))
          assert.strictEqual(sha256File(target), digest)
          assert.deepStrictEqual(fs.readdirSync(path.dirname(target)), ["big.bin"])
          // Eight ranges in flight of at most 8 MiB each, plus the runtime's own buffers: far below the file.
          assert.isBelow(up.growth, 128 * MiB, `upload grew RSS by ${up.growth}`)
          assert.isBelow(down.growth, 128 * MiB, `download grew RSS by ${down.growth}`)
          yield* sb.files.remove("big", { recursive: true })
        }),
      { timeout: 120_000 }
    )
  })

  describe("directory trees", () => {
    it.scoped(
      "uploadDir and downloadDir copy 1,000 files with modes and links, never following a link out",
      () =>
        Effect.gen(function* () {
          const sb = yield* Sandbox.Sandbox
          const dir = yield* tempDir
          const tree = path.join(dir, "tree")
          const outside = path.join(dir, "outside")
          fs.mkdirSync(path.join(outside, "secret-dir"), { recursive: true })
          fs.writeFileSync(path.join(outside, "secret.txt"), "never copied")
          fs.writeFileSync(path.join(outside, "secret-dir", "inner.txt"), "never copied either")
          for (let i = 0; i < 1000; i++) {
            const sub = path.join(tree, `d${i % 10}`, `e${i % 3}`)
            fs.mkdirSync(sub, { recursive: true })
            fs.writeFileSync(path.join(sub, `f${i}.txt`), `file ${i}\n`.repeat(i % 7))
          }
          fs.chmodSync(path.join(tree, "d1", "e1", "f1.txt"), 0o755)
          fs.chmodSync(path.join(tree, "d2", "e2", "f2.txt"), 0o600)
          fs.mkdirSync(path.join(tree, "empty"))
          fs.chmodSync(path.join(tree, "d3"), 0o700)
          fs.writeFileSync(path.join(tree, "big.bin"), randomBytes(300 * KiB))
          fs.symlinkSync("d1/e1/f1.txt", path.join(tree, "inside-link"))
          fs.symlinkSync(path.join(outside, "secret.txt"), path.join(tree, "outside-file-link"))
          fs.symlinkSync(path.join(outside, "secret-dir"), path.join(tree, "outside-dir-link"))
          fs.symlinkSync("../../outside/secret.txt", path.join(tree, "relative-escape"))
          const before = describeTree(tree)

          let total = 0
          let done = 0
          yield* sb.files.uploadDir(tree, "copied/tree", {
            rangeSize: 64 * KiB,
            onProgress: (p) => {
              done = p.bytes
              total = p.total ?? -1
            }
          })
          assert.strictEqual(done, total)
          assert.isAbove(total, 300 * KiB)
          const listed = yield* sb.files.list("copied/tree", { recursive: true })
          assert.strictEqual(listed.filter((e) => e.type === "file").length, 1001)
          const link = listed.find((e) => e.name === "outside-file-link")
          assert.deepInclude(link, { type: "symlink", target: path.join(outside, "secret.txt") })
          // The links were recreated, never read through: nothing of `outside` is in the sandbox's copy.
          assert.isUndefined(listed.find((e) => e.name.startsWith("outside-dir-link/")))
          const grep = yield* sb.exec(["grep", "-r", "never copied", "copied/tree"])
          assert.strictEqual(grep.stdout, "")

          const back = path.join(dir, "back")
          // The user's own tree coming back: its links that lead out are kept, and its modes exactly.
          yield* sb.files.downloadDir("copied/tree", back, {
            parallelism: 4,
            rangeSize: 64 * KiB,
            links: "keep",
            preserveModes: true
          })
          assert.deepStrictEqual(describeTree(back), before)
          yield* sb.files.remove("copied", { recursive: true })
        }),
      // A bound for a loaded machine (it once took 62 s there): it copies 2,000 files and a tree of links.
      { timeout: 180_000 }
    )

    it.scoped("a missing local tree or remote tree is a typed error", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const noLocal = yield* Effect.flip(sb.files.uploadDir(path.join(dir, "absent"), "x"))
        assert.strictEqual(noLocal._tag, "LocalFileError")
        const noRemote = yield* Effect.flip(sb.files.downloadDir("absent-tree", path.join(dir, "y")))
        assert.strictEqual(noRemote._tag, "FileNotFoundError")
        assert.isFalse(fs.existsSync(path.join(dir, "y")))
      })
    )
  })
})
