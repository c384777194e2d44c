/**
 * The checks of caller input: a refusal reads `option: detail` (one wording, whoever throws it).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Validate from "../../src/internal/validate.js"

describe("internal/validate", () => {
  it("a refusal's message is its option and its detail, in one wording", () => {
    const refused = new Validate.Invalid("maxCost", '"x" is not an amount')
    assert.strictEqual(refused.message, 'maxCost: "x" is not an amount')
    assert.strictEqual(refused.detail, '"x" is not an amount')
  })
})
