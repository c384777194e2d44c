/**
 * The bucket transfer program `rpc-server/bucket_transfer.py` run directly as a real process against the
 * stand-in `hf` (test/support/hf_standin.py), with the knobs `files.toHub` does not expose: an upload's plan
 * is applied in parts of at least `partBytes`, each counted once `hf` has applied it.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { hfStandIn } from "../../support/hfStandIn.js"
import { runTransferProgram } from "../../support/transferProgram.js"

const PROGRAM = fileURLToPath(new URL("../../../rpc-server/bucket_transfer.py", import.meta.url))

/** Runs the program with `spec` in `cwd`, `hf` on its PATH and the token in its environment; its NDJSON lines. */
const transfer = (pathEnv: string, cwd: string, spec: Record<string, unknown>) => {
  fs.mkdirSync(path.join(cwd, "tmp"), { recursive: true })
  return runTransferProgram(
    PROGRAM,
    { endpoint: "https://hub.example.test", minimum: [1, 5, 0], ...spec },
    {
      cwd,
      python: "/usr/bin/python3",
      env: { PATH: pathEnv, HF_TOKEN: "hf_partsToken", TMPDIR: path.join(cwd, "tmp") }
    }
  )
}

describe("bucket_transfer.py (a real process)", () => {
  it.scoped("an upload's plan is applied in parts; each part's bytes count once hf has applied it", () =>
    Effect.gen(function* () {
      // Already in the bucket at the same size: skipped, in no part and no total.
      const hf = yield* hfStandIn("1.8.0", { store: { "acme/ckpt/run/d.bin": "d".repeat(600) } })
      const src = path.join(hf.dir, "src")
      fs.mkdirSync(src)
      for (const name of ["a.bin", "b.bin", "c.bin", "d.bin"])
        fs.writeFileSync(path.join(src, name), name[0]!.repeat(600))
      const { lines, code } = yield* transfer(hf.path, hf.dir, {
        op: "toBucket",
        uri: "hf://buckets/acme/ckpt/run",
        local: "src",
        partBytes: 1000
      })
      assert.strictEqual(code, 0, JSON.stringify(lines.at(-1)))
      // Parts of at least 1000 bytes: a and b (1200), then c.
      assert.deepStrictEqual(lines.slice(0, -1), [
        { file: "run/a.bin", bytes: 0, total: 1800 },
        { file: "run/b.bin", bytes: 1200, total: 1800 },
        { file: "run/c.bin", bytes: 1800, total: 1800 }
      ])
      assert.deepStrictEqual(
        { ...lines.at(-1), output: undefined },
        { done: true, folder: true, bytes: 1800, output: undefined }
      )
      const applied = hf.calls().filter((call) => call.includes("--apply"))
      assert.strictEqual(applied.length, 2)
      for (const name of ["a.bin", "b.bin", "c.bin"])
        assert.strictEqual(hf.stored(`acme/ckpt/run/${name}`), name[0]!.repeat(600))
    })
  )

  it.scoped(
    "nothing to move: no part runs, and the result says no bytes; a killed transfer's working folder is swept",
    () =>
      Effect.gen(function* () {
        const hf = yield* hfStandIn("1.8.0", { store: { "acme/ckpt/a.bin": "a" } })
        // The working folder of a transfer killed outright (SIGKILL), by the pid of a process that is gone.
        const dead = spawnSync("true").pid
        const live = `hf-sandbox-bucket-${process.pid}-kept`
        fs.mkdirSync(path.join(hf.dir, "tmp", `hf-sandbox-bucket-${dead}-x`), { recursive: true })
        fs.mkdirSync(path.join(hf.dir, "tmp", live))
        fs.mkdirSync(path.join(hf.dir, "src"))
        fs.writeFileSync(path.join(hf.dir, "src", "a.bin"), "a")
        const { lines, code } = yield* transfer(hf.path, hf.dir, {
          op: "toBucket",
          uri: "hf://buckets/acme/ckpt/",
          local: "src"
        })
        assert.strictEqual(code, 0)
        assert.deepStrictEqual(lines, [{ done: true, folder: true, bytes: 0, output: "" }])
        assert.isFalse(hf.calls().some((call) => call.includes("--apply")))
        // The dead one's is gone, a live process's is kept, and the transfer left none of its own.
        assert.deepStrictEqual(fs.readdirSync(path.join(hf.dir, "tmp")), [live])
      })
  )

  it.scoped("the oldest hf accepted is the spec's minimum: the program has none of its own", () =>
    Effect.gen(function* () {
      // An `hf` whose `buckets` commands are refused: its version is then asked, and held to the spec's.
      const hf = yield* hfStandIn("1.8.0", { exit: 1 })
      fs.writeFileSync(path.join(hf.dir, "x.bin"), "x")
      const spec = { op: "toBucket", uri: "hf://buckets/acme/ckpt/", local: "x.bin" }
      const newer = yield* transfer(hf.path, hf.dir, { ...spec, minimum: [1, 9, 0] })
      assert.strictEqual(newer.code, 1)
      assert.deepInclude(newer.lines.at(-1), {
        error: {
          reason: "Unsupported",
          status: null,
          detail:
            "a bucket transfer needs `hf` from huggingface_hub 1.9.0 or later (`hf buckets`), and the sandbox has hf 1.8.0: pip install -U huggingface_hub"
        }
      })
      const none = yield* transfer(hf.path, hf.dir, { ...spec, minimum: undefined })
      assert.strictEqual(none.code, 1)
      assert.deepStrictEqual(none.lines, [
        {
          error: {
            reason: "Failed",
            status: null,
            detail: "the transfer's spec gives no `minimum` version of `hf` ([major, minor, patch]): None"
          }
        }
      ])
      assert.deepStrictEqual(hf.calls(), [["buckets", "cp", "x.bin", "hf://buckets/acme/ckpt/"], ["version"]])
    })
  )

  it.scoped("an hf whose version cannot be told: the failure of its run stands, not Unsupported", () =>
    Effect.gen(function* () {
      const hf = yield* hfStandIn("1.8.0", { exit: 1, versionExit: 1 })
      fs.writeFileSync(path.join(hf.dir, "x.bin"), "x")
      const { lines, code } = yield* transfer(hf.path, hf.dir, {
        op: "toBucket",
        uri: "hf://buckets/acme/ckpt/",
        local: "x.bin"
      })
      assert.strictEqual(code, 1)
      assert.deepStrictEqual(lines.at(-1), {
        error: {
          reason: "Unauthorized",
          status: null,
          detail: "`hf` exited with 1: 403 Forbidden: you don't have write access to this bucket"
        }
      })
      assert.deepStrictEqual(hf.calls(), [["buckets", "cp", "x.bin", "hf://buckets/acme/ckpt/"], ["version"]])
    })
  )
})
