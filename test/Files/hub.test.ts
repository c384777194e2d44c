/**
 * Hub data moved inside the sandbox (`files.fromHub`, `files.toHub`): the real transfer program runs in a local and in
 * an emulated HF sandbox against the Hub emulator's repo routes. Files and folders (paginated tree, LFS
 * through the CDN redirect) land where asked; 401 and 404 become `HubTransferError`s; the token is never
 * in a process's argv nor in the job's environment; an interrupted download leaves the old file intact
 * and no temp file. An upload is one commit, read back through the emulator, LFS-sized files included (the LFS
 * batch API, basic or multipart, with no token sent to the storage).
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { assert, describe, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { HubProgress } from "hf-sandbox/Files"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { HubTransferError, OperationError } from "hf-sandbox/SandboxError"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import { emulator } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { localLayer } from "../support/local.js"

const FILES = {
  "config.json": '{"hidden": 8}',
  "README.md": "# tiny\n",
  "weights/a.bin": "aaaa",
  "weights/b.bin": "bbbbbb",
  "weights/deep/c.bin": "c",
  "weights/big.safetensors": "L".repeat(3000)
}

/** The HF settings a local sandbox's transfer discovers, as `huggingface_hub` would read them. */
const withHubEnv = (emu: Testing.HubEmulator, token?: Redacted.Redacted<string>) =>
  Effect.withConfigProvider(
    ConfigProvider.fromMap(
      new Map([
        ["HF_ENDPOINT", emu.url],
        ["HF_TOKEN_PATH", "/nonexistent/hf-sandbox-test/token"],
        ...(token === undefined ? [] : [["HF_TOKEN", Redacted.value(token)] as [string, string]])
      ])
    )
  )

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const RAMP = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

/**
 * `n` bytes of 0, 1, …, 255, 0, 1, … (what the sandbox's `bytes(range(256)) * k` writes), filled from one
 * 256-byte ramp: built from an array of `n` numbers it cost ~0.9 s of CPU per 10 MiB.
 */
const pattern = (n: number) => Buffer.alloc(n, RAMP)

/** Writes `pattern(n)` to `path` (its folders made) in the sandbox, from inside it. */
const writePattern = (sb: Sandbox.Sandbox, path: string, n: number) =>
  sb
    .exec([
      "python3",
      "-c",
      "import os, sys; p, n = sys.argv[1], int(sys.argv[2]); os.makedirs(os.path.dirname(p) or '.', exist_ok=True); " +
        "open(p, 'wb').write((bytes(range(256)) * (n // 256 + 1))[:n])",
      path,
      String(n)
    ])
    .pipe(Effect.tap((r) => (r.exitCode === 0 ? Effect.void : Effect.dieMessage(`writePattern: ${r.stderr}`))))

/** A fresh repo name, so the tests of one file do not share repos. */
const repoName = (emu: Testing.HubEmulator, label: string) =>
  `${emu.user}/${label}-${Math.random().toString(36).slice(2, 8)}`

/** The transfer's failure, which must be a HubTransferError. */
const hubFailure = <A>(effect: Effect.Effect<A, OperationError>) =>
  Effect.flip(effect).pipe(
    Effect.catchAll((value) => Effect.dieMessage(`expected a failure, got ${JSON.stringify(value)}`)),
    Effect.flatMap((error) =>
      error._tag === "HubTransferError"
        ? Effect.succeed(error as HubTransferError)
        : Effect.dieMessage(`expected a HubTransferError, got ${error._tag}: ${error.message}`)
    )
  )

/** Every process's argv on this machine that carries the transfer program (its docstring's first words). */
const transferArgv = () =>
  fs
    .readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .flatMap((pid) => {
      try {
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
        return argv.includes("Moves Hub data inside the sandbox") ? [argv] : []
      } catch {
        return []
      }
    })

/** Downloads a file and a folder of `repo` and checks what landed in the sandbox. */
const fileAndFolder = (
  sb: Sandbox.Sandbox,
  repo: string,
  commit: string,
  run: (e: Effect.Effect<unknown, OperationError>) => Effect.Effect<unknown, OperationError>
) =>
  Effect.gen(function* () {
    const dir = `hub-${Math.random().toString(36).slice(2, 8)}`
    const progress: Array<HubProgress> = []
    const one = (yield* run(
      sb.files.fromHub({ repo, path: "config.json" }, `${dir}/one/config.json`, {
        onProgress: (p) => progress.push(p)
      })
    )) as { commit: string; files: Array<string> }
    assert.strictEqual(one.commit, commit)
    assert.strictEqual(one.files.length, 1)
    assert.strictEqual(yield* sb.files.readText(`${dir}/one/config.json`), FILES["config.json"])
    assert.deepStrictEqual(progress.at(-1), { file: "config.json", bytes: 13, total: 13 })

    const folder = (yield* run(sb.files.fromHub({ repo, path: "weights" }, `${dir}/w`))) as { bytes: number }
    assert.strictEqual(folder.bytes, 4 + 6 + 1 + 3000)
    const listed = yield* sb.files.list(`${dir}/w`, { recursive: true })
    assert.deepStrictEqual(
      listed.filter((e) => e.type === "file").map((e) => e.name),
      ["a.bin", "b.bin", "big.safetensors", "deep/c.bin"]
    )
    assert.strictEqual(yield* sb.files.readText(`${dir}/w/deep/c.bin`), "c")
    assert.strictEqual(yield* sb.files.readText(`${dir}/w/big.safetensors`), FILES["weights/big.safetensors"])

    // The whole repo into an existing directory, and one file into a directory under its own name.
    yield* run(sb.files.fromHub({ repo }, `${dir}/all`))
    assert.strictEqual(yield* sb.files.readText(`${dir}/all/weights/a.bin`), "aaaa")
    yield* run(sb.files.fromHub({ repo, path: "README.md", revision: commit }, `${dir}/all/`))
    assert.strictEqual(yield* sb.files.readText(`${dir}/all/README.md`), FILES["README.md"])
  })

const Local = Layer.mergeAll(Sandbox.layer().pipe(Layer.provideMerge(localLayer())), Testing.layer())

layer(Local, { excludeTestServices: true, timeout: "60 seconds" })("files.fromHub and toHub (local sandbox)", (it) => {
  it.scoped("a file, a folder (paginated, with an LFS file) and a whole public repo land in the sandbox", () =>
    Effect.gen(function* () {
      const emu = yield* Testing.HubEmulatorService
      const sb = yield* Sandbox.Sandbox
      const repo = repoName(emu, "public")
      const commit = yield* emu.seedRepo({ repo, files: FILES, lfs: ["weights/big.safetensors"], treePageSize: 2 })
      yield* fileAndFolder(sb, repo, commit, withHubEnv(emu))
    })
  )

  it.scoped("a private repo: 401 without a token, read with the discovered one; 404s name what is missing", () =>
    Effect.gen(function* () {
      const emu = yield* Testing.HubEmulatorService
      const sb = yield* Sandbox.Sandbox
      const repo = repoName(emu, "private")
      yield* emu.seedRepo({ repo, private: true, files: { "x.txt": "secret data" } })

      const anonymous = yield* hubFailure(withHubEnv(emu)(sb.files.fromHub({ repo }, "priv-a")))
      assert.strictEqual(anonymous.reason, "Unauthorized")
      assert.strictEqual(anonymous.status, 401)
      assert.match(anonymous.message, /token/)

      const got = yield* withHubEnv(emu, emu.token)(sb.files.fromHub({ repo }, "priv-b"))
      assert.strictEqual(got.files.length, 1)
      assert.strictEqual(yield* sb.files.readText("priv-b/x.txt"), "secret data")
      // An explicit token wins over the discovered one.
      const explicit = yield* withHubEnv(emu)(
        sb.files.fromHub({ repo, path: "x.txt" }, "priv-c.txt", { token: emu.token })
      )
      assert.strictEqual(explicit.bytes, 11)

      const noPath = yield* hubFailure(withHubEnv(emu, emu.token)(sb.files.fromHub({ repo, path: "nope.txt" }, "n")))
      assert.strictEqual(noPath.reason, "NotFound")
      const noRevision = yield* hubFailure(withHubEnv(emu, emu.token)(sb.files.fromHub({ repo, revision: "v9" }, "n")))
      assert.strictEqual(noRevision.reason, "NotFound")
      assert.match(noRevision.detail, /RevisionNotFound/)
      const noRepo = yield* hubFailure(
        withHubEnv(emu, emu.token)(sb.files.fromHub({ repo: `${repo}-missing`, repoType: "dataset" }, "n"))
      )
      assert.strictEqual(noRepo.reason, "NotFound")
      assert.match(noRepo.message, /dataset/)
      assert.isFalse(yield* sb.files.exists("n"))

      const bad = yield* Effect.flip(sb.files.fromHub({ repo: "../etc" }, "x"))
      assert.strictEqual(bad._tag, "InvalidArgumentError")
    })
  )

  it.scoped("an interrupted download leaves the old file and no temp file; the token is never in argv", () =>
    Effect.gen(function* () {
      const emu = yield* Testing.HubEmulatorService
      const sb = yield* Sandbox.Sandbox
      const repo = repoName(emu, "stall")
      yield* emu.seedRepo({ repo, private: true, files: { "model.bin": "N".repeat(4096) }, stallAfterBytes: 1000 })
      yield* sb.files.write("keep/model.bin", "old content")
      const started = yield* Deferred.make<void>()
      const fiber = yield* withHubEnv(
        emu,
        emu.token
      )(
        sb.files.fromHub({ repo, path: "model.bin" }, "keep/model.bin", {
          onProgress: (p) => {
            if (p.bytes >= 1000) Deferred.unsafeDone(started, Effect.void)
          }
        })
      ).pipe(Effect.fork)
      yield* Deferred.await(started)
      // Mid-transfer: the program runs here (a local sandbox), its argv has no token.
      const argv = transferArgv()
      assert.isAbove(argv.length, 0)
      for (const text of argv) assert.notInclude(text, Redacted.value(emu.token))
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(yield* sb.files.readText("keep/model.bin"), "old content")
      assert.deepStrictEqual(
        (yield* sb.files.list("keep")).map((e) => e.name),
        ["model.bin"]
      )
    })
  )

  it.scoped("toHub: a folder and a file committed in one commit each, read back; 403, 401; 10 MB via LFS", () =>
    Effect.gen(function* () {
      const emu = yield* Testing.HubEmulatorService
      const sb = yield* Sandbox.Sandbox
      const repo = repoName(emu, "upload")
      const first = yield* emu.seedRepo({ repo, repoType: "dataset", private: true, files: { "old.txt": "kept" } })
      yield* sb.files.write("up/data/train.csv", "a,b\n1,2\n")
      yield* sb.files.write("up/data/nested/x.json", "{}")
      yield* sb.files.symlink("up/data/link", "/etc/passwd")
      const progress: Array<HubProgress> = []
      const upload = yield* withHubEnv(
        emu,
        emu.token
      )(
        sb.files.toHub(
          "up/data",
          { repo, repoType: "dataset", path: "raw", message: "add raw data" },
          { onProgress: (p) => progress.push(p) }
        )
      )
      assert.deepStrictEqual(upload.files, ["raw/nested/x.json", "raw/train.csv"])
      assert.strictEqual(upload.bytes, 2 + 8)
      assert.notStrictEqual(upload.commit, first)
      assert.include(upload.commitUrl, `/datasets/${repo}/commit/${upload.commit}`)
      assert.deepStrictEqual(progress.at(-1), { file: "raw/train.csv", bytes: 10, total: 10 })
      const files = (yield* emu.repoFiles(repo, { repoType: "dataset", revision: upload.commit }))!
      assert.deepStrictEqual(Object.keys(files).sort(), ["old.txt", "raw/nested/x.json", "raw/train.csv"])
      assert.strictEqual(new TextDecoder().decode(files["raw/train.csv"]), "a,b\n1,2\n")

      // One file, under its own name in a folder; then fetched back by the other direction.
      const single = yield* withHubEnv(emu)(
        sb.files.toHub("up/data/train.csv", { repo, repoType: "dataset", path: "copies/" }, { token: emu.token })
      )
      assert.deepStrictEqual(single.files, ["copies/train.csv"])
      yield* withHubEnv(
        emu,
        emu.token
      )(sb.files.fromHub({ repo, repoType: "dataset", path: "copies/train.csv" }, "back.csv"))
      assert.strictEqual(yield* sb.files.readText("back.csv"), "a,b\n1,2\n")

      const anonymous = yield* hubFailure(withHubEnv(emu)(sb.files.toHub("up/data", { repo, repoType: "dataset" })))
      assert.strictEqual(anonymous.reason, "Unauthorized")
      assert.strictEqual(anonymous.status, 401)
      const other = "someone-else/public-model"
      yield* emu.seedRepo({ repo: other, files: { "a.txt": "a" } })
      const forbidden = yield* hubFailure(withHubEnv(emu, emu.token)(sb.files.toHub("up/data", { repo: other })))
      assert.strictEqual(forbidden.reason, "Unauthorized")
      assert.strictEqual(forbidden.status, 403)

      // A file the Hub wants in LFS (10 MB and up by default) goes through the LFS batch API, in the same commit.
      yield* writePattern(sb, "up/big.bin", 10 * 1024 * 1024)
      const both = yield* withHubEnv(emu, emu.token)(sb.files.toHub("up", { repo, repoType: "dataset", path: "all" }))
      assert.includeMembers([...both.files], ["all/big.bin", "all/data/train.csv"])
      const after = (yield* emu.repoFiles(repo, { repoType: "dataset", revision: both.commit }))!
      assert.strictEqual(sha256(after["all/big.bin"]!), sha256(pattern(10 * 1024 * 1024)))
      assert.strictEqual(new TextDecoder().decode(after["all/data/train.csv"]), "a,b\n1,2\n")
    })
  )

  it.scoped(
    "toHub through LFS: basic and multipart in one commit, read back byte-exact; an object the Hub has is not sent again; a sha256 mismatch at the storage commits nothing; no token to the storage",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        const sb = yield* Sandbox.Sandbox
        const repo = repoName(emu, "lfs")
        const MB = 1024 * 1024
        yield* emu.seedRepo({ repo, private: true, files: {}, lfsThreshold: MB, lfsMultipartThreshold: 2 * MB })
        yield* sb.files.write("lfs/small.txt", "small and regular")
        yield* writePattern(sb, "lfs/one.bin", MB + 5)
        yield* writePattern(sb, "lfs/parts/three.bin", 5 * MB + 7)
        const progress: Array<HubProgress> = []
        const seen = (yield* emu.lfsStorageRequests).length
        const up = yield* withHubEnv(
          emu,
          emu.token
        )(sb.files.toHub("lfs", { repo, path: "m" }, { onProgress: (p) => progress.push(p) }))
        assert.deepStrictEqual(up.files, ["m/one.bin", "m/parts/three.bin", "m/small.txt"])
        assert.strictEqual(up.bytes, MB + 5 + 5 * MB + 7 + 17)
        assert.deepStrictEqual(progress.at(-1), { file: "m/small.txt", bytes: up.bytes, total: up.bytes })
        const files = (yield* emu.repoFiles(repo, { revision: up.commit }))!
        assert.deepStrictEqual(Object.keys(files).sort(), ["m/one.bin", "m/parts/three.bin", "m/small.txt"])
        assert.strictEqual(sha256(files["m/one.bin"]!), sha256(pattern(MB + 5)))
        assert.strictEqual(sha256(files["m/parts/three.bin"]!), sha256(pattern(5 * MB + 7)))
        assert.strictEqual(new TextDecoder().decode(files["m/small.txt"]), "small and regular")

        // The storage saw one basic PUT, three part PUTs and a completion POST, and never the token.
        const requests = (yield* emu.lfsStorageRequests).slice(seen)
        assert.deepStrictEqual(
          requests.map((r) => `${r.method} ${r.path.split("/").length - 3}`),
          ["PUT 1", "PUT 2", "PUT 2", "PUT 2", "POST 1"]
        )
        const token = Redacted.value(emu.token)
        for (const request of requests) {
          assert.isUndefined(request.headers.authorization)
          assert.notInclude(JSON.stringify(request.headers), token)
        }

        // Read back through resolve (the CDN redirect), byte-exact.
        yield* withHubEnv(emu, emu.token)(sb.files.fromHub({ repo, path: "m/parts/three.bin" }, "back/three.bin"))
        assert.isTrue(
          yield* sb.exec(["cmp", "lfs/parts/three.bin", "back/three.bin"]).pipe(Effect.map((r) => r.exitCode === 0))
        )

        // The same content again: the batch answer has no actions for it, so nothing goes to the storage.
        const again = yield* withHubEnv(emu, emu.token)(sb.files.toHub("lfs/one.bin", { repo, path: "copy.bin" }))
        assert.lengthOf((yield* emu.lfsStorageRequests).slice(seen + requests.length), 0)
        const copied = (yield* emu.repoFiles(repo, { revision: again.commit }))!
        assert.strictEqual(sha256(copied["copy.bin"]!), sha256(pattern(MB + 5)))

        // A storage whose sha256 check fails: a typed error, and no commit.
        const bad = repoName(emu, "lfs-corrupt")
        const badFirst = yield* emu.seedRepo({
          repo: bad,
          files: { "keep.txt": "k" },
          lfsThreshold: MB,
          corruptLfsUploads: true
        })
        yield* writePattern(sb, "lfs-bad/x.bin", MB + 1)
        const failed = yield* hubFailure(withHubEnv(emu, emu.token)(sb.files.toHub("lfs-bad", { repo: bad })))
        assert.strictEqual(failed.reason, "HubError")
        assert.strictEqual(failed.status, 400)
        assert.match(failed.detail, /sha256/)
        const unchanged = (yield* emu.repoFiles(bad))!
        assert.deepStrictEqual(Object.keys(unchanged), ["keep.txt"])
        assert.strictEqual((yield* emu.repoFiles(bad, { revision: badFirst }))!["keep.txt"]!.length, 1)
      })
  )

  it.scoped(
    "toHub of a file above the Hub's size limit fails with TooLarge, naming the file and what to do; nothing is committed",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        const sb = yield* Sandbox.Sandbox
        const repo = repoName(emu, "too-large")
        const first = yield* emu.seedRepo({
          repo,
          files: { "keep.txt": "k" },
          lfsThreshold: 1024,
          lfsMaxObjectBytes: 4096
        })
        yield* writePattern(sb, "huge/ok.bin", 4096)
        yield* writePattern(sb, "huge/shard.bin", 4097)
        const seen = (yield* emu.lfsStorageRequests).length
        const failed = yield* hubFailure(withHubEnv(emu, emu.token)(sb.files.toHub("huge", { repo, path: "w" })))
        assert.strictEqual(failed.reason, "TooLarge")
        assert.strictEqual(failed.status, 422)
        assert.include(failed.detail, "w/shard.bin (4097 bytes")
        assert.include(failed.detail, "larger than the maximum file size of 4096 bytes")
        assert.include(failed.message, "split the file")
        // The batch answer refused it before any byte went to the storage, and no commit was made.
        assert.lengthOf((yield* emu.lfsStorageRequests).slice(seen), 0)
        assert.deepStrictEqual(Object.keys((yield* emu.repoFiles(repo))!), ["keep.txt"])
        assert.isDefined(yield* emu.repoFiles(repo, { revision: first }))
        // At the limit itself it goes through.
        const ok = yield* withHubEnv(emu, emu.token)(sb.files.toHub("huge/ok.bin", { repo, path: "w/ok.bin" }))
        assert.strictEqual(
          sha256((yield* emu.repoFiles(repo, { revision: ok.commit }))!["w/ok.bin"]!),
          sha256(pattern(4096))
        )
      })
  )
})

const Hf = Layer.merge(emulatedHub(), Schedules.layer(fastSchedules))

describe("files.fromHub and toHub (emulated HF Jobs)", () => {
  layer(Hf, { excludeTestServices: true, timeout: "90 seconds" })("", (it) => {
    it.scoped(
      "the provider's token reads a private repo inside the job; it is in no argv and not in the job's environment",
      () =>
        Effect.gen(function* () {
          const emu = yield* emulator
          const repo = repoName(emu, "hfjobs")
          const commit = yield* emu.seedRepo({
            repo,
            private: true,
            files: FILES,
            lfs: ["weights/big.safetensors"],
            treePageSize: 3
          })
          const sb = yield* Sandbox.make({})
          yield* fileAndFolder(sb, repo, commit, (e) => e)
          const missing = yield* hubFailure(sb.files.fromHub({ repo, path: "missing.bin" }, "m"))
          assert.strictEqual(missing.reason, "NotFound")
          const job = (yield* emu.job(sb.id))!
          const token = Redacted.value(emu.token)
          assert.notInclude(JSON.stringify(job.spec), token)
          assert.notInclude(JSON.stringify(job.environment), token)
          assert.notInclude(JSON.stringify(job.secrets), token)
          // A transfer in flight: its argv (the job's processes run on this machine) carries no token.
          const stalled = repoName(emu, "hfjobs-stall")
          yield* emu.seedRepo({
            repo: stalled,
            private: true,
            files: { "f.bin": "F".repeat(2048) },
            stallAfterBytes: 100
          })
          const started = yield* Deferred.make<void>()
          const fiber = yield* sb.files
            .fromHub({ repo: stalled, path: "f.bin" }, "f.bin", {
              onProgress: () => Deferred.unsafeDone(started, Effect.void)
            })
            .pipe(Effect.fork)
          yield* Deferred.await(started)
          const argv = transferArgv()
          assert.isAbove(argv.length, 0)
          for (const text of argv) assert.notInclude(text, token)
          yield* Fiber.interrupt(fiber)
          assert.isFalse(yield* sb.files.exists("f.bin"))

          // And back up, with the provider's token, in one commit.
          const mine = repoName(emu, "hfjobs-up")
          yield* emu.seedRepo({ repo: mine, files: {}, lfsThreshold: 1024 })
          const missingSource = yield* hubFailure(sb.files.toHub("keep-up", { repo: mine }))
          assert.strictEqual(missingSource.reason, "Failed")
          yield* sb.files.write("keep-up/w.txt", "written in the job")
          // And one file through LFS (the repo's threshold is 1 KB), in the same commit.
          yield* writePattern(sb, "keep-up/lfs.bin", 3000)
          const done = yield* sb.files.toHub("keep-up", { repo: mine, path: "from-job" })
          const files = (yield* emu.repoFiles(mine, { revision: done.commit }))!
          assert.strictEqual(new TextDecoder().decode(files["from-job/w.txt"]), "written in the job")
          assert.strictEqual(sha256(files["from-job/lfs.bin"]!), sha256(pattern(3000)))
          const stored = yield* emu.lfsStorageRequests
          assert.isNotEmpty(stored)
          for (const request of stored) assert.notInclude(JSON.stringify(request.headers), token)
        })
    )

    it.scoped("the proxy transport carries the transfers too", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const repo = repoName(emu, "proxy")
        const commit = yield* emu.seedRepo({ repo, private: true, files: { "p/q.txt": "through the proxy" } })
        const sb = yield* Sandbox.make({ transport: "proxy" })
        const got = yield* sb.files.fromHub({ repo, path: "p" }, "from-proxy")
        assert.strictEqual(got.commit, commit)
        assert.strictEqual(yield* sb.files.readText("from-proxy/q.txt"), "through the proxy")
        const up = yield* sb.files.toHub("from-proxy/q.txt", { repo, path: "back/q.txt", message: "round trip" })
        const files = (yield* emu.repoFiles(repo, { revision: up.commit }))!
        assert.strictEqual(new TextDecoder().decode(files["back/q.txt"]), "through the proxy")
      })
    )
  })
})
