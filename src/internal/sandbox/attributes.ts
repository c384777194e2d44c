/**
 * Span attributes of a sandbox's commands: their shape and how they ended, never their text.
 */
import type * as Duration from "effect/Duration"
import type { ExecOptions, ProcessExit } from "../../Sandbox.js"
import * as Validate from "../validate.js"

/** Span attributes of a command: its shape, never its text. */
export const commandAttributes = (
  command: string | ReadonlyArray<string>,
  options: Omit<ExecOptions<unknown>, "stdin"> & { readonly stdin?: unknown }
): Record<string, unknown> => ({
  ...(typeof command === "string" ? { "exec.shell": true } : { "exec.shell": false, "exec.argc": command.length }),
  ...(options.timeout !== undefined ? timeoutAttribute(options.timeout) : {}),
  ...(typeof options.stdin === "string"
    ? { "exec.stdin_bytes": Buffer.byteLength(options.stdin) }
    : options.stdin instanceof Uint8Array
      ? { "exec.stdin_bytes": options.stdin.length }
      : options.stdin !== undefined
        ? { "exec.stdin_streamed": true }
        : {})
})

/** A bad timeout is reported by the call itself (InvalidArgumentError); the span just leaves it out. */
const timeoutAttribute = (timeout: Duration.DurationInput): Record<string, unknown> => {
  try {
    return { "exec.timeout_ms": Validate.commandTimeoutMs("timeout", timeout) }
  } catch {
    return {}
  }
}

/** Span attributes of how a command ended. */
export const exitAttributes = (exit: ProcessExit): Record<string, unknown> => ({
  ...(exit.exitCode !== null ? { "exec.exit_code": exit.exitCode } : {}),
  ...(exit.signal !== null ? { "exec.signal": exit.signal } : {}),
  "exec.timed_out": exit.timedOut,
  "exec.duration_ms": exit.durationMs
})
