/**
 * `StartError`s made from other failures: one met by something that starts nothing (`during`), and a
 * refused option (`invalidOptions`).
 */
import { StartError } from "../SandboxError.js"
import { withFields } from "./errorFields.js"
import * as Validate from "./validate.js"

/**
 * A `StartError` met by something that starts nothing (attaching, listing, killing, reading a log):
 * the same error, whose message says what could not be done instead of "Sandbox did not start".
 */
export const during = <E>(what: string, error: E): E =>
  error instanceof StartError && error.during === undefined
    ? (withFields(StartError, error, { during: what }) as E)
    : error

/**
 * A check's failure at `make` as `InvalidOptions`. An {@link Validate.Invalid} names its option, and the
 * error keeps the option and its problem apart (`invalid`) beside the detail that says them together.
 * The problem is said for any caller (a command line says it after its flag); `library`, when given, is
 * how the detail says the problem instead, naming the library's calls and fields where the problem
 * cannot (`files.upload`, where the CLI has `cp`).
 */
export const invalidOptions = (provider: string, cause: unknown, library?: string): StartError =>
  new StartError({
    provider,
    reason: "InvalidOptions",
    detail: `invalid sandbox options: ${
      cause instanceof Validate.Invalid && library !== undefined
        ? `${cause.option}: ${library}`
        : cause instanceof Error
          ? cause.message
          : String(cause)
    }`,
    ...(cause instanceof Validate.Invalid ? { invalid: { option: cause.option, problem: cause.detail } } : {})
  })
