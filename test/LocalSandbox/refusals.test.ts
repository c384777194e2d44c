/**
 * What the local provider refuses rather than ignore: HF Jobs' volumes and SSH (a typed `InvalidOptions`
 * saying what to do instead, before any server starts), and `sshCommand` on a local sandbox. The other HF
 * options (flavor, maxCost, labels, …) are ignored there, as before.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "../support/local.js"

let root: string

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-refusals-test-"))
})

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true })
})

const live = () => localLayer({ stateDir: path.join(root, "state"), tempDir: root })

describe("local provider: HF-only options", () => {
  it.effect("volumes and ssh are refused with InvalidOptions, before anything starts, detached or not", () =>
    Effect.gen(function* () {
      const before = fs.readdirSync(root)
      for (const detach of [false, true]) {
        const volumes = yield* Sandbox.make({
          detach,
          volumes: [{ type: "dataset", source: "org/ds", mountPath: "/data" }]
        }).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(volumes.reason, "InvalidOptions")
        assert.strictEqual(volumes.provider, "local")
        assert.include(volumes.message, "volumes are mounted by HF Jobs")
        assert.include(volumes.message, "files.upload")
        const ssh = yield* Sandbox.make({ detach, ssh: true }).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(ssh.reason, "InvalidOptions")
        assert.include(ssh.message, "ssh is an HF Jobs option")
        // The refused option and its problem as fields (StartError.invalid), and in the detail.
        assert.include(ssh.detail, "invalid sandbox options: ssh: true is refused: ssh is an HF Jobs option")
        assert.include(ssh.detail, "(sb.details.workdir)")
        assert.strictEqual(ssh.invalid?.option, "ssh")
        // The problem is said for any caller (the CLI says it after --ssh): no library call in it.
        assert.isTrue(ssh.invalid?.problem.startsWith("true is refused: SSH is an HF Jobs feature"))
        assert.notInclude(ssh.invalid?.problem ?? "", "sb.")
        assert.notInclude(volumes.invalid?.problem ?? "", "files.upload")
      }
      assert.deepStrictEqual(fs.readdirSync(root), before, "no server, no workdir")
    }).pipe(Effect.provide(live()))
  )

  it.effect("empty volumes, ssh: false, a flavor list and maxCost are ignored; sshCommand fails NotSupported", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ volumes: [], ssh: false, flavor: ["h200", "a100-large"], maxCost: "$1" })
      assert.strictEqual(sb.hardware, "local")
      const error = yield* Effect.flip(sb.sshCommand())
      assert.strictEqual(error._tag, "SshError")
      assert.strictEqual(error._tag === "SshError" ? error.reason : undefined, "NotSupported")
      assert.include(error.message, "runs on the local provider, which has no SSH")
    }).pipe(Effect.scoped, Effect.provide(live()))
  )
})
