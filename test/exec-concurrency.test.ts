/**
 * One sandbox serves many commands at once: concurrent `exec`s run side by side, not one after another.
 * The wall-clock bound is deliberately generous (half the serial time), so a loaded machine never flakes.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "./support/local.js"

const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const COMMANDS = 32
const SLEEP_SECONDS = 0.3
const SERIAL_MS = COMMANDS * SLEEP_SECONDS * 1000 // 9.6 s

layer(SharedSandbox, { excludeTestServices: true })("exec concurrency", (it) => {
  describe("concurrent exec", () => {
    it.effect(`${COMMANDS} concurrent \`sleep ${SLEEP_SECONDS}\` finish in well under their serial time`, () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const [elapsed, results] = yield* Effect.all(
          Array.from({ length: COMMANDS }, (_, i) => sb.exec(`sleep ${SLEEP_SECONDS}; echo ${i}`)),
          { concurrency: "unbounded" }
        ).pipe(Effect.timed)
        assert.strictEqual(results.length, COMMANDS)
        results.forEach((r, i) => {
          assert.deepInclude(r, { exitCode: 0, signal: null, timedOut: false, stdout: `${i}\n`, stderr: "" })
          // Each command really slept: it was not skipped or cut short.
          assert.isAtLeast(r.durationMs, SLEEP_SECONDS * 1000 * 0.9)
        })
        const ms = Duration.toMillis(elapsed)
        assert.isBelow(ms, SERIAL_MS / 2, `${COMMANDS} concurrent execs took ${ms} ms (serially ${SERIAL_MS} ms)`)
      })
    )
  })
})
