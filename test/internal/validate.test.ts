/**
 * The checks of caller input: a refusal reads `option: detail` (one wording, whoever throws it), and a
 * value is shown as a user would write it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Validate from "../../src/internal/validate.js"

const refusal = (check: () => unknown): Validate.Invalid => {
  try {
    check()
  } catch (e) {
    if (e instanceof Validate.Invalid) return e
    throw e
  }
  throw new Error("the check passed")
}

describe("internal/validate", () => {
  it("a refusal's message is its option and its detail, in one wording", () => {
    const refused = new Validate.Invalid("maxCost", '"x" is not an amount')
    assert.strictEqual(refused.message, 'maxCost: "x" is not an amount')
    assert.strictEqual(refused.detail, '"x" is not an amount')
  })

  it("a Duration value is shown as Duration.format says it, not as its JSON", () => {
    const zero = refusal(() => Validate.positiveDuration("timeout", Duration.zero))
    assert.strictEqual(zero.message, "timeout: 0 must be longer than zero (leave it out for the default)")
    assert.include(refusal(() => Validate.bufferBytes("bufferBytes", Duration.seconds(90))).detail, "1m 30s must be")
  })
})
