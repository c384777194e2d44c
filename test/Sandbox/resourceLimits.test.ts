/**
 * The client side of the server's bounds (docs/protocol.md, "Limits"): a sandbox started with a bound in
 * its `env` answers over it with a typed ResourceLimitError that names the bound and what to do.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "../support/local.js"

describe("ResourceLimitError", () => {
  it.live("a spawn or exec beyond SBX_MAX_PROCESSES fails with ResourceLimitError naming the bound", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ env: { SBX_MAX_PROCESSES: "1" } })
      const running = yield* sb.spawn(["sleep", "30"])
      const spawnError = yield* Effect.flip(sb.spawn(["sleep", "30"]))
      assert.strictEqual(spawnError._tag, "ResourceLimitError")
      if (spawnError._tag !== "ResourceLimitError") return
      assert.strictEqual(spawnError.code, "too_many_processes")
      assert.match(spawnError.message, /SBX_MAX_PROCESSES/)
      assert.match(spawnError.message, /wait for some to end or kill them/)
      const execError = yield* Effect.flip(sb.exec(["true"]))
      assert.strictEqual(execError._tag, "ResourceLimitError")
      // Its slot comes back when it ends.
      yield* running.kill()
      yield* running.wait
      assert.strictEqual((yield* sb.exec(["true"])).exitCode, 0)
    }).pipe(Effect.scoped, Effect.provide(localLayer()))
  )
})
