/**
 * A `StartError` met by something that starts nothing (attaching, listing, killing, reading a log):
 * the same error, whose message says what could not be done instead of "Sandbox did not start".
 */
import { StartError } from "../SandboxError.js"

export const during = <E>(what: string, error: E): E =>
  error instanceof StartError && error.during === undefined
    ? (new StartError({
        provider: error.provider,
        reason: error.reason,
        detail: error.detail,
        during: what,
        ...(error.stderrTail === undefined ? {} : { stderrTail: error.stderrTail }),
        ...(error.cause === undefined ? {} : { cause: error.cause })
      }) as E)
    : error
