/**
 * `files.toHub` to a Storage Bucket and `files.fromHub` from one, in a local sandbox whose PATH starts with a stand-in `hf`: a real
 * process that records its argv and environment and answers as `hf` does. A file goes through
 * `hf buckets cp`, a folder through `hf buckets sync`, either way, with the token in the environment only; a missing or
 * old `hf` fails with `Unsupported` before any transfer, saying what to install; `hf`'s own refusal is typed.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { HubTransferError } from "hf-sandbox/SandboxError"
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

/**
 * A directory with a stand-in `hf` of `version` (none when undefined) that appends each call's argv (one
 * per line, then `--`) to `calls` and its environment to `env`; `buckets` exits `exit` after printing.
 */
const standIn = (version: string | undefined, exit = 0) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-standin-"))
      const bin = path.join(dir, "bin")
      fs.mkdirSync(bin)
      if (version !== undefined) {
        fs.writeFileSync(
          path.join(bin, "hf"),
          [
            "#!/bin/sh",
            `for a in "$@"; do printf '%s\\n' "$a"; done >> "${dir}/calls"`,
            `echo -- >> "${dir}/calls"`,
            `env >> "${dir}/env"`,
            `if [ "$1" = version ]; then echo "${version}"; exit 0; fi`,
            exit !== 0
              ? `echo "403 Forbidden: you don't have write access to this bucket" >&2; exit ${exit}`
              : // A download writes what it read, as hf would: one file (cp), or a folder's files (sync).
                [
                  'case "$3" in hf://*) if [ "$2" = cp ]; then printf "from %s" "$3" > "$4";',
                  'else mkdir -p "$4" && printf "synced" > "$4/f.txt"; fi; echo "Downloaded: $3 -> $4"; exit 0;; esac',
                  'echo "Uploaded: $3 -> $4"; exit 0'
                ].join("\n")
          ].join("\n"),
          { mode: 0o755 }
        )
      }
      const read = (name: string) => {
        try {
          return fs.readFileSync(path.join(dir, name), "utf8")
        } catch {
          return ""
        }
      }
      return {
        dir,
        path: `${bin}:/usr/bin:/bin`,
        calls: () =>
          read("calls")
            .split("--\n")
            .filter((c) => c !== "")
            .map((c) => c.split("\n").filter((l) => l !== "")),
        env: () => read("env")
      }
    }),
    ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

const failure = (e: Effect.Effect<unknown, unknown>) =>
  Effect.flip(e).pipe(Effect.map((error) => error as HubTransferError))

layer(localLayer(), { excludeTestServices: true, timeout: "60 seconds" })(
  "files.toHub to a bucket (local sandbox)",
  (it) => {
    it.scoped(
      "a file through `hf buckets cp`, a folder through `hf buckets sync`; the token only in hf's environment",
      () =>
        Effect.gen(function* () {
          const hf = yield* standIn("1.8.0")
          const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
          yield* sb.files.write("out/ckpt/a.bin", "a")
          yield* sb.files.write("out/ckpt/b.bin", "b")
          const file = yield* withHubEnv(
            sb.files.toHub("out/ckpt/a.bin", { bucket: "acme/checkpoints", path: "step-1/" })
          )
          assert.deepStrictEqual(file, {
            bucket: "acme/checkpoints",
            destination: "hf://buckets/acme/checkpoints/step-1/",
            folder: false,
            output: "Uploaded: out/ckpt/a.bin -> hf://buckets/acme/checkpoints/step-1/\n"
          })
          const folder = yield* sb.files.toHub(
            "out/ckpt",
            { bucket: "acme/checkpoints" },
            { token: Redacted.make(TOKEN) }
          )
          assert.strictEqual(folder.folder, true)
          assert.strictEqual(folder.destination, "hf://buckets/acme/checkpoints/")

          // The version is checked first; then one cp and one sync, with the paths as given.
          assert.deepStrictEqual(hf.calls(), [
            ["version"],
            ["buckets", "cp", "out/ckpt/a.bin", "hf://buckets/acme/checkpoints/step-1/"],
            ["version"],
            ["buckets", "sync", "out/ckpt", "hf://buckets/acme/checkpoints/"]
          ])
          for (const call of hf.calls()) assert.notInclude(call.join(" "), TOKEN)
          // The token reached `hf` only for the transfers (in its environment), with the provider's Hub.
          assert.strictEqual(hf.env().match(new RegExp(`^HF_TOKEN=${TOKEN}$`, "gm"))?.length, 2)
          assert.match(hf.env(), /^HF_ENDPOINT=https:\/\/hub\.example\.test$/m)
        })
    )

    it.scoped("fromHub from a bucket: a file through `hf buckets cp`, a folder (path ending with /) through sync", () =>
      Effect.gen(function* () {
        const hf = yield* standIn("1.8.0")
        const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
        const file = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "raw/a.csv" }, "in/deep/a.csv"))
        assert.deepStrictEqual(file, {
          bucket: "acme/data",
          source: "hf://buckets/acme/data/raw/a.csv",
          folder: false,
          output: "Downloaded: hf://buckets/acme/data/raw/a.csv -> in/deep/a.csv\n"
        })
        assert.strictEqual(yield* sb.files.readText("in/deep/a.csv"), "from hf://buckets/acme/data/raw/a.csv")
        const folder = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data", path: "raw/" }, "in/raw"))
        assert.isTrue(folder.folder)
        assert.strictEqual(yield* sb.files.readText("in/raw/f.txt"), "synced")
        const whole = yield* withHubEnv(sb.files.fromHub({ bucket: "acme/data" }, "in/all"))
        assert.strictEqual(whole.source, "hf://buckets/acme/data/")
        assert.deepStrictEqual(hf.calls(), [
          ["version"],
          ["buckets", "cp", "hf://buckets/acme/data/raw/a.csv", "in/deep/a.csv"],
          ["version"],
          ["buckets", "sync", "hf://buckets/acme/data/raw/", "in/raw"],
          ["version"],
          ["buckets", "sync", "hf://buckets/acme/data/", "in/all"]
        ])
        assert.strictEqual(hf.env().match(new RegExp(`^HF_TOKEN=${TOKEN}$`, "gm"))?.length, 3)
      })
    )

    it.scoped("no `hf`, or one older than 1.5.0: Unsupported before any transfer, saying what to install", () =>
      Effect.gen(function* () {
        const none = yield* standIn(undefined)
        const bare = yield* Sandbox.make({ env: { PATH: none.path } })
        yield* bare.files.write("x.bin", "x")
        const missing = yield* failure(withHubEnv(bare.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(missing._tag, "HubTransferError")
        assert.strictEqual(missing.reason, "Unsupported")
        assert.include(missing.message, "has none on its PATH")
        assert.include(missing.message, "pip install -U huggingface_hub")

        const old = yield* standIn("0.36.0")
        const sb = yield* Sandbox.make({ env: { PATH: old.path } })
        yield* sb.files.write("x.bin", "x")
        const tooOld = yield* failure(withHubEnv(sb.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(tooOld.reason, "Unsupported")
        assert.include(tooOld.detail, "huggingface_hub 1.5.0 or later")
        assert.include(tooOld.detail, "the sandbox has hf 0.36.0: pip install -U huggingface_hub")
        assert.deepStrictEqual(old.calls(), [["version"]], "nothing but the version check ran")
        assert.notInclude(old.env(), TOKEN)
      })
    )

    it.scoped("hf's refusal is typed; a missing source and a bad bucket id fail clearly", () =>
      Effect.gen(function* () {
        const hf = yield* standIn("1.8.0", 1)
        const sb = yield* Sandbox.make({ env: { PATH: hf.path } })
        yield* sb.files.write("x.bin", "x")
        const refused = yield* failure(withHubEnv(sb.files.toHub("x.bin", { bucket: "acme/b" })))
        assert.strictEqual(refused.reason, "Unauthorized")
        assert.include(refused.detail, "403 Forbidden")
        assert.strictEqual(refused.repo, "bucket acme/b")
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
