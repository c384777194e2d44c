/**
 * `files.toHub` to a Storage Bucket and `files.fromHub` from one, in a local sandbox whose PATH starts with a stand-in `hf`
 * (test/support/hf_standin.py): a real process that records its argv and environment and answers as `hf` does, over a
 * bucket store in a local folder. A file goes through `hf buckets cp`, a folder through `hf buckets sync` (its dry-run
 * plan, then `--apply`), either way, with the token in the environment only; progress events count the bytes that
 * moved; a missing or old `hf` fails with `Unsupported` before any transfer, saying what to install; `hf`'s own
 * refusal is typed.
 */
import { randomBytes } from "node:crypto"
import { assert, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { HubProgress } from "hf-sandbox/Files"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { HubTransferError } from "hf-sandbox/SandboxError"
import { hfStandIn as standIn } from "../support/hfStandIn.js"
import { localLayer } from "../support/local.js"

const TOKEN = "hf_bucketStandInToken0123456789"

/** The token and endpoint a local sandbox's transfer discovers. */
const withHubEnv = Effect.withConfigProvider(
  ConfigProvider.fromMap(
    new Map([
      ["HF_ENDPOINT", "https://hub.example.test"],
      ["HF_TOKEN", TOKEN],
      ["HF_TOKEN_PATH", "/nonexistent/hf-sandbox-test/token"]
    ])
  )
)

const failure = (e: Effect.Effect<unknown, unknown>) =>
  Effect.flip(e).pipe(Effect.map((error) => error as HubTransferError))

layer(localLayer(), { excludeTestServices: true, timeout: "60 seconds" })(
  "files.toHub to a bucket (local sandbox)",
  (it) => {
    it.scoped(
      "a file through `hf buckets cp`, a folder through `hf buckets sync` (its plan, then --apply); the token only in hf's environment",
      () =>
        Effect.gen(function* () {
          const hf = yield* standIn("1.8.0")
          const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
          yield* sb.files.write("out/ckpt/a.bin", "a")
          yield* sb.files.write("out/ckpt/b.bin", "bb")
          const events: Array<HubProgress> = []
          const file = yield* withHubEnv(
            sb.files.toHub(
              "out/ckpt/a.bin",
              { bucket: "acme/checkpoints", path: "step-1/" },
              { onProgress: (p) => events.push(p) }
            )
          )
          assert.deepStrictEqual(file, {
            bucket: "acme/checkpoints",
            destination: "hf://buckets/acme/checkpoints/step-1/",
            folder: false,
            output: "✓ Uploaded\n  src: out/ckpt/a.bin\n  dst: hf://buckets/acme/checkpoints/step-1/a.bin\n"
          })
          assert.strictEqual(hf.stored("acme/checkpoints/step-1/a.bin"), "a")
          // One file: its size before, all of it once `hf` has put it.
          assert.deepStrictEqual(events, [
            { file: "step-1/a.bin", bytes: 0, total: 1 },
            { file: "step-1/a.bin", bytes: 1, total: 1 }
          ])
          events.length = 0
          const folder = yield* sb.files.toHub(
            "out/ckpt",
            { bucket: "acme/checkpoints" },
            { token: Redacted.make(TOKEN), onProgress: (p) => events.push(p) }
          )
          assert.strictEqual(folder.folder, true)
          assert.strictEqual(folder.destination, "hf://buckets/acme/checkpoints/")
          assert.include(folder.output, "Sync completed.")
          assert.strictEqual(hf.stored("acme/checkpoints/b.bin"), "bb")
          // The plan's uploads make the total; a part counts once `hf` has applied it.
          assert.deepStrictEqual(events, [
            { file: "a.bin", bytes: 0, total: 3 },
            { file: "b.bin", bytes: 3, total: 3 }
          ])

          // `hf` starts only for what moves (a file: once), with the paths as given; a transfer that works
          // never asks its version.
          const calls = hf.calls()
          assert.deepStrictEqual(calls.slice(0, 2), [
            ["buckets", "cp", "out/ckpt/a.bin", "hf://buckets/acme/checkpoints/step-1/"],
            ["buckets", "sync", "out/ckpt", "hf://buckets/acme/checkpoints/", "--dry-run"]
          ])
          assert.deepStrictEqual(calls[2]?.slice(0, 3), ["buckets", "sync", "--apply"])
          assert.strictEqual(calls.length, 3)
          for (const call of calls) assert.notInclude(call.join(" "), TOKEN)
          // The token reached `hf` in its environment, with the provider's Hub.
          assert.strictEqual(hf.env().match(new RegExp(`^HF_TOKEN=${TOKEN}$`, "gm"))?.length, 3)
          assert.match(hf.env(), /^HF_ENDPOINT=https:\/\/hub\.example\.test$/m)
        })
    )

    it.scoped("fromHub from a bucket: a file through `hf buckets cp`, a folder (path ending with /) through sync", () =>
      Effect.gen(function* () {
        const hf = yield* standIn("1.8.0", {
          store: { "acme/data/raw/a.csv": "x,y\n1,2\n", "acme/data/raw/sub/f.txt": "synced", "acme/data/top.txt": "t" }
        })
        hf.go()
        const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
        const file = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "raw/a.csv" }, "in/deep/a.csv"))
        assert.deepStrictEqual(file, {
          bucket: "acme/data",
          source: "hf://buckets/acme/data/raw/a.csv",
          folder: false,
          output: "✓ Downloaded\n  src: hf://buckets/acme/data/raw/a.csv\n  dst: in/deep/a.csv\n"
        })
        assert.strictEqual(yield* sb.files.readText("in/deep/a.csv"), "x,y\n1,2\n")
        const folder = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "raw/" }, "in/raw"))
        assert.isTrue(folder.folder)
        assert.strictEqual(yield* sb.files.readText("in/raw/sub/f.txt"), "synced")
        const whole = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data" }, "in/all"))
        assert.strictEqual(whole.source, "hf://buckets/acme/data/")
        assert.strictEqual(yield* sb.files.readText("in/all/top.txt"), "t")
        const calls = hf.calls()
        // A file starts `hf` twice: its size from the dry-run plan of its own path, into a folder that does
        // not exist, then the copy.
        assert.deepStrictEqual(calls[0]?.slice(0, 3), ["buckets", "sync", "hf://buckets/acme/data/raw/a.csv"])
        assert.deepStrictEqual(calls.slice(1, 3), [
          ["buckets", "cp", "hf://buckets/acme/data/raw/a.csv", "in/deep/a.csv"],
          ["buckets", "sync", "hf://buckets/acme/data/raw/", "in/raw", "--dry-run"]
        ])
        assert.deepStrictEqual(calls[3]?.slice(0, 3), ["buckets", "sync", "--apply"])
        assert.deepStrictEqual(calls[4], ["buckets", "sync", "hf://buckets/acme/data/", "in/all", "--dry-run"])
        assert.strictEqual(calls.length, 6)
        assert.strictEqual(hf.env().match(new RegExp(`^HF_TOKEN=${TOKEN}$`, "gm"))?.length, 6)
      })
    )

    it.scoped(
      "a download's progress is the bytes found in the sandbox as hf writes them: a file held at half is seen at half; a skipped file counts for nothing",
      () =>
        Effect.gen(function* () {
          // Content no file system compresses: the blocks it takes on disk are at least its size.
          const big = new Uint8Array(randomBytes(4000))
          const hf = yield* standIn("1.8.0", {
            store: { "acme/data/w.bin": big, "acme/data/set/a.bin": big, "acme/data/set/b.bin": big }
          })
          const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
          // Already there, the same size: the plan skips it, and it is in no total.
          yield* sb.files.write("in/set/b.bin", "y".repeat(4000))
          const events: Array<HubProgress> = []
          // The stand-in holds each download at half until this has seen a byte count short of the total.
          const onProgress = (p: HubProgress) => {
            events.push(p)
            if (p.bytes > 0 && p.total !== undefined && p.bytes < p.total) hf.go()
          }
          yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "w.bin" }, "in/w.bin", { onProgress }))
          assert.deepStrictEqual(events[0], { file: "w.bin", bytes: 0, total: 4000 })
          // Only the half was there to be seen, until it was seen.
          assert.deepStrictEqual(events[1], { file: "w.bin", bytes: 2000, total: 4000 })
          assert.deepStrictEqual(events.at(-1), { file: "w.bin", bytes: 4000, total: 4000 })
          assert.deepStrictEqual(
            events.map((e) => e.bytes),
            [...events.map((e) => e.bytes)].sort((a, b) => a - b)
          )

          events.length = 0
          yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "set/" }, "in/set", { onProgress }))
          assert.deepStrictEqual(events[0], { file: "set/a.bin", bytes: 0, total: 4000 })
          assert.deepStrictEqual(events.at(-1), { file: "set/a.bin", bytes: 4000, total: 4000 })
          assert.isTrue(events.every((e) => e.total === 4000 && e.bytes <= 4000))
          assert.strictEqual(yield* sb.files.readText("in/set/b.bin"), "y".repeat(4000))
          assert.deepStrictEqual(yield* sb.files.read("in/set/a.bin"), big)
        })
    )

    it.scoped("no `hf`, or one older than 1.5.0: Unsupported, nothing moved, saying what to install", () =>
      Effect.gen(function* () {
        const none = yield* standIn(undefined)
        const bare = yield* Sandbox.make({ env: { PATH: none.path } })
        yield* bare.files.write("x.bin", "x")
        const missing = yield* failure(withHubEnv(bare.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(missing._tag, "HubTransferError")
        assert.strictEqual(missing.reason, "Unsupported")
        assert.include(missing.message, "has none on its PATH")
        assert.include(missing.message, "pip install -U huggingface_hub")

        const old = yield* standIn("1.4.1")
        const sb = yield* Sandbox.make({ env: { PATH: old.path } })
        yield* sb.files.write("x.bin", "x")
        yield* sb.files.write("dir/y.bin", "y")
        const tooOld = yield* failure(withHubEnv(sb.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(tooOld.reason, "Unsupported")
        assert.include(tooOld.detail, "huggingface_hub 1.5.0 or later")
        assert.include(tooOld.detail, "the sandbox has hf 1.4.1: pip install -U huggingface_hub")
        // It has no `hf buckets`: its refusal of the copy moved nothing, and only then was its version asked.
        assert.deepStrictEqual(old.calls(), [["buckets", "cp", "x.bin", "hf://buckets/acme/b/"], ["version"]])
        assert.isUndefined(old.stored("acme/b/x.bin"))
        // A download's sizing is refused as well: the answer is the same, and no copy is tried.
        const download = yield* failure(withHubEnv(sb.files.fromHub({ bucket: "acme/b", path: "y.bin" }, "y.bin")))
        assert.strictEqual(download.reason, "Unsupported")
        const downloadCalls = old.calls().slice(2)
        assert.deepStrictEqual(
          downloadCalls.map((call) => call.slice(0, 2)),
          [["buckets", "sync"], ["version"]]
        )
        // Its version is asked without the token; the two `hf buckets` runs had it.
        assert.strictEqual(old.env().match(/^HF_TOKEN=/gm)?.length, 2)
      })
    )

    it.scoped("hf's refusal is typed; a missing source and a bad bucket id fail clearly", () =>
      Effect.gen(function* () {
        const hf = yield* standIn("1.8.0", { exit: 1 })
        const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
        yield* sb.files.write("x.bin", "x")
        const refused = yield* failure(withHubEnv(sb.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(refused.reason, "Unauthorized")
        assert.include(refused.detail, "403 Forbidden")
        assert.strictEqual(refused.repo, "bucket acme/b")
        // A folder is refused at its plan, a download at its copy (its size is not needed to go on).
        yield* sb.files.write("dir/y.bin", "y")
        const folder = yield* failure(withHubEnv(sb.files.toHub("dir", { bucket: "acme/b" })))
        assert.strictEqual(folder.reason, "Unauthorized")
        const download = yield* failure(withHubEnv(sb.files.fromHub({ bucket: "acme/b", path: "y.bin" }, "y.bin")))
        assert.strictEqual(download.reason, "Unauthorized")
        // Each transfer asks `hf`'s version once, at its first refusal (1.8.0: the refusal is the Hub's, and stands).
        const calls = hf.calls()
        assert.deepStrictEqual(calls.at(-1)?.slice(0, 2), ["buckets", "cp"])
        assert.deepStrictEqual(calls.filter((call) => call[0] === "version").length, 3)
        const missing = yield* failure(withHubEnv(sb.files.toHub("nope.bin", { bucket: "acme/b" })))
        assert.strictEqual(missing.reason, "Failed")
        assert.include(missing.detail, "no such file or folder in the sandbox: nope.bin")
        const bad = yield* Effect.flip(sb.files.toHub("x.bin", { bucket: "no-namespace" }))
        assert.strictEqual(bad._tag, "InvalidArgumentError")
        assert.include(bad.message, "bucket")
        const outside = yield* Effect.flip(sb.files.toHub("x.bin", { bucket: "acme/b", path: "../up" }))
        assert.strictEqual(outside._tag, "InvalidArgumentError")
      })
    )
  }
)
