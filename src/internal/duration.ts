/**
 * The one duration grammar of hf-sandbox, shared by the library's options (through `Validate.duration`)
 * and the CLI's flags: a `Duration`, a number of milliseconds, Effect's own strings (`"5 minutes"`,
 * `"Infinity"`), and the Hub's short notation (`"90s"`, `"30m"`, `"2h"`, `"1d"`, also `"500ms"`, and a
 * bare `"90"` for seconds, as `hf jobs run --timeout` takes it).
 */
import * as Duration from "effect/Duration"

/** The short notation: a number, then an optional unit (seconds without one). */
const SHORT = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** What the grammar takes, in words, for a message that refuses a value. */
export const HINT =
  'use a Duration, a number of milliseconds, or a string like "30 seconds", "90s", "30m", "2h" or "1d"'

/** The duration `input` stands for, or `undefined` when it is not one. */
export const decode = (input: unknown): Duration.Duration | undefined => {
  if (typeof input === "string") {
    const match = SHORT.exec(input)
    if (match !== null) return Duration.millis(Number(match[1]) * UNITS[match[2] ?? "s"]!)
    // Documented for `idleTimeout` ("never"), which `Duration.decode` does not take from a string.
    if (input.trim() === "Infinity") return Duration.infinity
  }
  if (typeof input === "number" && Number.isNaN(input)) return undefined
  try {
    return Duration.decode(input as Duration.DurationInput)
  } catch {
    return undefined
  }
}
