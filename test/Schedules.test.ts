/**
 * The schedules in force as a Context value: `Schedules.layer` and `withSchedules` replace some and keep
 * the rest, and a `make`'s own `schedules` win over them.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schedules from "hf-sandbox/Schedules"
import * as Spec from "../src/internal/sandbox/spec.js"

const quick = Schedule.spaced("1 millis").pipe(Schedule.asVoid)
const slow = Schedule.spaced("1 hour").pipe(Schedule.asVoid)

describe("Schedules", () => {
  it.effect("without a Context value, the module's defaults are in force", () =>
    Effect.gen(function* () {
      const current = yield* Schedules.Schedules
      assert.strictEqual(current.hubRetry, Schedules.hubRetry)
      assert.strictEqual(current.healthPoll, Schedules.healthPoll)
      assert.strictEqual(current.localLogPoll, Schedules.localLogPoll)
    })
  )

  it.effect("withSchedules, data-first and data-last, replaces what it names and keeps the rest", () =>
    Effect.gen(function* () {
      const first = yield* Schedules.withSchedules(Schedules.Schedules, { hubRetry: quick, stageCheck: undefined })
      assert.strictEqual(first.hubRetry, quick)
      assert.strictEqual(first.stageCheck, Schedules.stageCheck)
      const nested = yield* Schedules.Schedules.pipe(
        Schedules.withSchedules({ stageCheck: slow }),
        Schedules.withSchedules({ hubRetry: quick })
      )
      assert.strictEqual(nested.hubRetry, quick, "the outer override reaches the inner effect")
      assert.strictEqual(nested.stageCheck, slow)
    })
  )

  it.effect("a make's own schedules win over the Context value, which wins over the defaults", () =>
    Effect.gen(function* () {
      const resolved = yield* Spec.resolve("local", {
        schedules: { healthPoll: slow, logQuietWindow: "2 seconds" }
      }).pipe(Schedules.withSchedules({ healthPoll: quick, hubRetry: quick, healthProbeTimeout: "1 second" }))
      assert.strictEqual(resolved.schedules.healthPoll, slow)
      assert.strictEqual(resolved.schedules.hubRetry, quick)
      assert.strictEqual(resolved.schedules.cancelRetry, Schedules.cancelRetry)
      assert.isTrue(Duration.equals(resolved.healthProbeTimeout, Duration.seconds(1)))
      assert.strictEqual(resolved.schedules.logQuietWindow, "2 seconds")
    })
  )

  it.effect("a bad duration in the Context value is refused at make, naming it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Spec.resolve("local", {}).pipe(
          Schedules.withSchedules({ healthProbeTimeout: "soon" as Duration.DurationInput })
        )
      )
      assert.strictEqual(error.reason, "InvalidOptions")
      assert.include(error.message, 'schedules.healthProbeTimeout: "soon" is not a duration')
    })
  )
})

layer(Schedules.layer({ hubRetry: quick }))("Schedules.layer", (it) => {
  it.effect("provides its overrides to every effect under it, the rest kept", () =>
    Effect.gen(function* () {
      const current = yield* Schedules.Schedules
      assert.strictEqual(current.hubRetry, quick)
      assert.strictEqual(current.reattach, Schedules.reattach)
    })
  )
})
