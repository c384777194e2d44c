/**
 * Checks of caller input that run before anything is sent, so that a bad option is one typed error
 * naming the option and the value instead of a silent change (a dropped variable, a lost byte) or an
 * error deep inside that names nothing. Each check throws an `Invalid`; the caller turns it into the
 * error of its surface (`StartError("InvalidOptions")` at `make`, `InvalidArgumentError` at `exec`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { InvalidArgumentError } from "../SandboxError.js"
import * as Durations from "./duration.js"

/**
 * A bad option: which one, and what is wrong with its value (`detail`, without the option's name).
 * `message` is how the two read together, always `option: detail`.
 */
export class Invalid extends Error {
  constructor(
    readonly option: string,
    readonly detail: string
  ) {
    super(`${option}: ${detail}`)
  }
}

/** Runs checks that throw {@link Invalid}; a failure is the operation's `InvalidArgumentError` naming the option. */
export const check = <A>(operation: string, checks: () => A): Effect.Effect<A, InvalidArgumentError> =>
  Effect.try({
    try: checks,
    catch: (cause) =>
      cause instanceof Invalid
        ? new InvalidArgumentError({ operation, argument: cause.option, detail: cause.detail })
        : new InvalidArgumentError({ operation, argument: "options", detail: String(cause) })
  })

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  // As a user writes it (`1m 30s`), not as its JSON (`{"_id":"Duration",...}`).
  if (Duration.isDuration(value)) return Duration.format(value)
  if (typeof value === "bigint") return `${value}n`
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) {
    return String(value)
  }
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * A duration option, in the one grammar of `internal/duration` (`Duration`, milliseconds, `"5 minutes"`,
 * `"30m"`). A value it refuses names the option and the value, instead of "Invalid DurationInput".
 */
export const duration = (option: string, input: unknown): Duration.Duration => {
  const decoded = Durations.decode(input)
  if (decoded === undefined) throw new Invalid(option, `${show(input)} is not a duration (${Durations.HINT})`)
  return decoded
}

/** A duration that must be longer than zero (a zero or negative bound would end things at once). */
export const positiveDuration = (option: string, input: unknown): Duration.Duration => {
  const decoded = duration(option, input)
  if (Duration.toMillis(decoded) <= 0) {
    throw new Invalid(option, `${show(input)} must be longer than zero (leave it out for the default)`)
  }
  return decoded
}

/**
 * A command's `timeout`: longer than zero, in whole milliseconds. A sub-millisecond timeout is rounded
 * up to 1 ms: the server's clock does not resolve less, and a bound of a few microseconds would make
 * whether a command got to start a matter of luck.
 */
export const commandTimeoutMs = (option: string, input: unknown): number =>
  Math.ceil(Duration.toMillis(positiveDuration(option, input)))

/** A count of bytes that must be a whole number ≥ 1. */
export const positiveBytes = (option: string, input: unknown): number => {
  if (typeof input !== "number" || !Number.isSafeInteger(input) || input < 1) {
    throw new Invalid(option, `${show(input)} must be a whole number of bytes, at least 1`)
  }
  return input
}

/** The most output a sandbox keeps per stream of a background process (the server's limit). */
export const MAX_BUFFER_BYTES = 64 * 1024 * 1024

/** A background process's `bufferBytes`: a whole number of bytes from 1 to 64 MiB, as the server takes. */
export const bufferBytes = (option: string, input: unknown): number => {
  if (typeof input !== "number" || !Number.isSafeInteger(input) || input < 1 || input > MAX_BUFFER_BYTES) {
    throw new Invalid(
      option,
      `${show(input)} must be a whole number of bytes from 1 to ${MAX_BUFFER_BYTES} (64 MiB); omit it for the default 1 MiB`
    )
  }
  return input
}

/**
 * A portable environment variable name (POSIX: letters, digits and `_`, not starting with a digit).
 * Other names are refused rather than passed on: a shell drops a name it cannot export (one with a
 * space), and `=` or NUL cannot be in a name at all, so such a variable would vanish without a word.
 */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Checks the names and values of an `env` option. */
export const env = (option: string, input: Readonly<Record<string, unknown>> | undefined): void => {
  if (input === undefined) return
  if (typeof input !== "object" || input === null) {
    throw new Invalid(option, `${show(input)} must be an object of variable names to string values`)
  }
  for (const [name, value] of Object.entries(input)) {
    if (!ENV_NAME.test(name)) {
      throw new Invalid(
        option,
        `${show(name)} is not a valid environment variable name (use letters, digits and _, not starting with a digit)`
      )
    }
    if (typeof value !== "string") {
      throw new Invalid(`${option}.${name}`, `${show(value)} must be a string`)
    }
    if (value.includes("\0")) throw new Invalid(`${option}.${name}`, "a value cannot contain a NUL character")
  }
}

/** A file mode: an integer 0–0o7777. */
export const mode = (option: string, input: unknown): number => {
  if (typeof input !== "number" || !Number.isInteger(input) || input < 0 || input > 0o7777) {
    throw new Invalid(option, `${show(input)} is not a mode: use an integer from 0 to 0o7777 (e.g. 0o644, 0o755)`)
  }
  return input
}

/** What the server accepts as an `idempotency_key` (docs/protocol.md). */
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/

/** An idempotency key: 1 to 128 of `A-Z a-z 0-9 . _ : -`. */
export const idempotencyKey = (option: string, input: unknown): string | undefined => {
  if (input === undefined) return undefined
  if (typeof input !== "string" || !IDEMPOTENCY_KEY.test(input)) {
    throw new Invalid(
      option,
      `${show(input)} must be 1 to 128 characters of A-Z a-z 0-9 . _ : - (e.g. a UUID, or "job-42:step-3")`
    )
  }
  return input
}
