/**
 * One sandbox serves many commands at once: concurrent `exec`s run side by side, not one after another.
 * No clock is read: each command waits until every one of them has started, so commands run one after
 * another (or in batches smaller than all of them) never finish and the test times out.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "../support/local.js"

const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const COMMANDS = 32

layer(SharedSandbox, { excludeTestServices: true })("exec concurrency", (it) => {
  describe("concurrent exec", () => {
    it.effect(`${COMMANDS} concurrent execs all run at once: each waits until all ${COMMANDS} have started`, () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        yield* sb.exec("mkdir -p barrier")
        const results = yield* Effect.all(
          Array.from({ length: COMMANDS }, (_, i) =>
            sb.exec(
              `touch barrier/${i}; while [ "$(ls barrier | wc -l)" -lt ${COMMANDS} ]; do sleep 0.05; done; echo ${i}`
            )
          ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(results.length, COMMANDS)
        results.forEach((r, i) => {
          assert.deepInclude(r, { exitCode: 0, signal: null, timedOut: false, stdout: `${i}\n`, stderr: "" })
        })
      })
    )
  })
})
