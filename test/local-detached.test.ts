/**
 * Detached local sandboxes (what `hf-sandbox create --local` makes) when their server dies outright, and
 * what the by-id operations (`kill`, `logs`, `connect`; `hf-sandbox kill|logs|exec --local`) say when
 * there is no such sandbox.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import { assertGone, eventually, isAlive, localLayer } from "./support/local.js"

let root: string
let stateDir: string
let tempDir: string

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-detached-test-"))
  stateDir = path.join(root, "state")
  tempDir = path.join(root, "tmp")
  fs.mkdirSync(tempDir)
})

afterAll(async () => {
  // Whatever a failed test left running is stopped, with its files.
  for (const info of await Effect.runPromise(LocalSandbox.list({ stateDir, tempDir }))) {
    await Effect.runPromise(LocalSandbox.kill(info.id, { stateDir, stopTimeout: "1 second" }))
  }
  fs.rmSync(root, { recursive: true, force: true })
})

const live = () => localLayer({ stateDir, tempDir })

describe("by-id operations on a local sandbox that does not exist", () => {
  const missing = "local-0123456789ab"

  it.effect("kill says it could not kill it, never that a sandbox did not start", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(LocalSandbox.kill(missing, { stateDir }))
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.during, `kill sandbox ${missing}`)
      assert.strictEqual(
        error.message,
        `Could not kill sandbox ${missing} on the local provider (NotReady): no local sandbox ${missing} in ${stateDir}`
      )
      const bad = yield* Effect.flip(LocalSandbox.kill("nope", { stateDir }))
      assert.include(bad.message, `Could not kill sandbox nope on the local provider`)
      assert.include(bad.message, `"nope" is not a local sandbox id (they look like local-1a2b3c4d5e6f)`)
      assert.notInclude(bad.message, "did not start")
    })
  )

  it.effect("logs says it could not read the log", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Stream.runDrain(LocalSandbox.logs(missing, { stateDir })))
      assert.strictEqual(error.during, `read the log of sandbox ${missing}`)
      assert.strictEqual(
        error.message,
        `Could not read the log of sandbox ${missing} on the local provider (NotReady): no local sandbox ${missing} in ${stateDir}`
      )
    })
  )

  it.effect("connect says it could not attach, from the provider itself too", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Effect.scoped(Sandbox.connect(missing)))
      assert.strictEqual(error._tag, "StartError")
      assert.include(error.message, `Could not attach to sandbox ${missing} on the local provider (NotReady): `)
      assert.notInclude(error.message, "did not start")
      const provider = yield* LocalSandbox.make({ stateDir })
      const direct = yield* Effect.flip(Effect.scoped(provider.connect(missing, {} as never)))
      assert.strictEqual(direct.during, `attach to sandbox ${missing}`)
    }).pipe(Effect.provide(live()))
  )
})
