/**
 * The one duration grammar: what the library's options took and what the CLI's flags took, both
 * everywhere.
 */

import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import * as Parse from "../../src/cli/parse.js"
import * as Durations from "../../src/internal/duration.js"
import * as Validate from "../../src/internal/validate.js"

const millis = (input: unknown) => {
  const decoded = Durations.decode(input)
  return decoded === undefined ? undefined : Duration.toMillis(decoded)
}

describe("the duration grammar", () => {
  it('takes Effect\'s inputs: a Duration, milliseconds, "5 minutes", "Infinity"', () => {
    expect(millis(Duration.seconds(3))).toBe(3000)
    expect(millis(250)).toBe(250)
    expect(millis("5 minutes")).toBe(300_000)
    expect(millis("Infinity")).toBe(Number.POSITIVE_INFINITY)
  })

  it("takes the short notation: a bare number of seconds, ms, s, m, h, d, with decimals and spaces", () => {
    expect(millis("90")).toBe(90_000)
    expect(millis("500ms")).toBe(500)
    expect(millis("90s")).toBe(90_000)
    expect(millis(" 30 m ")).toBe(1_800_000)
    expect(millis("1.5h")).toBe(5_400_000)
    expect(millis("1d")).toBe(86_400_000)
  })

  it("refuses the rest", () => {
    for (const bad of ["soon", "", "-1s", "1 fortnight", "30x", Number.NaN, {}, null]) {
      expect(millis(bad), String(bad)).toBeUndefined()
    }
  })

  it("a library option that refuses a value names the option and the value", () => {
    expect(() => Validate.duration("startTimeout", "soon")).toThrow(
      /^startTimeout: "soon" is not a duration \(use a Duration/
    )
    expect(Duration.toMillis(Validate.positiveDuration("startTimeout", "2m"))).toBe(120_000)
  })

  it("a CLI flag takes the same grammar, and names the flag and the value when it refuses one", async () => {
    expect(Duration.toMillis(await Effect.runPromise(Parse.duration("--timeout", "5 minutes")))).toBe(300_000)
    expect(Duration.toMillis(await Effect.runPromise(Parse.duration("--timeout", "90")))).toBe(90_000)
    const error = await Effect.runPromise(Effect.flip(Parse.duration("--idle-timeout", "soon")))
    expect(error.message).toMatch(/^invalid --idle-timeout "soon": /)
  })
})
