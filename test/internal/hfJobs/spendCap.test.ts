/**
 * The spend cap's refusals (internal/hfJobs/spendCap): each problem is said under its own option, which
 * is named once, and the CLI names each option by its flag (src/cli/errors.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Errors from "../../../src/cli/errors.js"
import type * as Hub from "../../../src/internal/hfJobs/hub.js"
import * as SpendCap from "../../../src/internal/hfJobs/spendCap.js"

const line = (name: string, microUsdPerMinute: number): Hub.HardwareLine => ({
  name,
  prettyName: name,
  cpu: "2 vCPU",
  ram: "16 GB",
  unitCostMicroUSD: microUsdPerMinute,
  unitCostUSD: microUsdPerMinute / 1_000_000,
  unitLabel: "minute"
})

const catalog = Effect.succeed([line("cpu-basic", 167), line("a100-large", 41_667)])

const refusal = (flavors: ReadonlyArray<string>, capMicroUsd: number, lifetime?: Duration.Duration) =>
  SpendCap.timeouts(catalog, flavors, capMicroUsd, lifetime, Duration.hours(1)).pipe(Effect.flip)

describe("internal/hfJobs/spendCap", () => {
  it.effect("one option's problems: under that option, said once", () =>
    Effect.gen(function* () {
      const error = yield* refusal(["h9000", "h9001"], 1_000_000)
      assert.strictEqual(error.invalid?.option, "flavor")
      assert.strictEqual(
        error.invalid?.problem,
        '"h9000" is not in the Hub\'s hardware catalog (cpu-basic, a100-large); ' +
          '"h9001" is not in the Hub\'s hardware catalog (cpu-basic, a100-large)'
      )
      assert.include(error.message, 'invalid sandbox options: flavor: "h9000" is not in')
      assert.notInclude(error.message, "flavor: flavor")
      assert.include(Errors.describe(error, true).message, 'invalid --flavor: "h9000" is not in')
    })
  )

  it.effect("a cap that does not cover a flavor is maxCost's, said without repeating it", () =>
    Effect.gen(function* () {
      const tooLow = yield* refusal(["a100-large"], 100)
      assert.strictEqual(tooLow.invalid?.option, "maxCost")
      assert.include(
        tooLow.message,
        "invalid sandbox options: maxCost: $0.0001 buys less than one minute of a100-large"
      )
      assert.notInclude(tooLow.message, "maxCost: maxCost")
      const cli = Errors.describe(tooLow, true).message
      assert.include(cli, "invalid --max-cost: $0.0001 buys less than one minute of a100-large")
      assert.notInclude(cli, "maxCost")
      const long = yield* refusal(["cpu-basic", "a100-large"], 1_000_000, Duration.hours(2))
      assert.strictEqual(long.invalid?.option, "maxCost")
      assert.include(long.message, "maxCost: $1 does not cover lifetime 2h on a100-large, which may cost $5.00004")
      assert.notInclude(long.message, "cpu-basic,", "cpu-basic fits the cap")
      assert.notMatch(Errors.describe(long, true).message, /maxCost|shorten lifetime,/)
    })
  )

  it.effect("problems of several options: the flavors' first, under flavor, never under maxCost", () =>
    Effect.gen(function* () {
      // a100-large's cap problem comes first in the list; the unknown flavor is still the one said, as
      // every check names its first bad option, and flavors are checked before what they cost.
      const error = yield* refusal(["a100-large", "h9000"], 100)
      assert.strictEqual(error.invalid?.option, "flavor")
      assert.strictEqual(error.invalid?.problem, `"h9000" is not in the Hub's hardware catalog (cpu-basic, a100-large)`)
      const cli = Errors.describe(error, true).message
      assert.include(cli, `invalid --flavor: "h9000" is not in the Hub's hardware catalog`)
      assert.notInclude(cli, "--max-cost")
      // With the flavors right, the cap's problems, every flavor's under maxCost.
      const cap = yield* refusal(["a100-large", "cpu-basic"], 100)
      assert.strictEqual(cap.invalid?.option, "maxCost")
      assert.include(cap.invalid?.problem ?? "", "one minute of a100-large")
      assert.include(cap.invalid?.problem ?? "", "one minute of cpu-basic")
    })
  )
})
