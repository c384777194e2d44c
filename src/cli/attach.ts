/**
 * Attaching to a sandbox by id, with a failure that says so (the library's `StartError` speaks of
 * starting, which is not what a user of `exec ID` did).
 */
import * as Effect from "effect/Effect"
import * as Sandbox from "../Sandbox.js"
import * as Errors from "./errors.js"
import { CliError, notAnOption } from "./parse.js"

export const attach = (id: string) =>
  Sandbox.connect(id).pipe(
    Effect.mapError(
      (error) =>
        new CliError({
          tag: error._tag,
          message:
            `cannot attach to sandbox ${id}: ${Errors.startDetail(error)}` +
            (error.stderrTail?.trim() ? `\n--- server log (tail) ---\n${error.stderrTail.trimEnd()}` : "")
        })
    )
  )

/** Attaches to the sandbox named by an `ID` argument (which must not be an option). */
export const attachTo = (id: string) => Effect.flatMap(notAnOption("ID", id), attach)
