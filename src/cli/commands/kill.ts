/** `hf-sandbox kill ID... | --all`: sandboxes stopped by id, each failure reported on its own. */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { action, isLocalId } from "../action.js"
import * as Backend from "../backend.js"
import * as Errors from "../errors.js"
import { globals } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

export const kill = Command.make(
  "kill",
  {
    ...globals,
    all: Options.boolean("all").pipe(Options.withDescription("Stop every running sandbox of the provider.")),
    ids: Args.text({ name: "ID" }).pipe(Args.repeated, Args.withDescription("Sandboxes to stop (ID or NAMESPACE/ID)."))
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        for (const id of a.ids) yield* Parse.notAnOption("ID", id)
        if (a.all === a.ids.length > 0) {
          return yield* new Parse.UsageError({
            message: a.all ? "give either sandbox ids or --all, not both" : "which sandboxes? give their ids, or --all"
          })
        }
        const backend = yield* Backend.Backend
        const targets = a.all ? (yield* backend.list(false)).rows.map((r) => r.id) : a.ids
        const results = yield* Effect.forEach(
          targets,
          (id) =>
            backend.kill(id).pipe(
              Effect.as({ id, error: undefined as string | undefined, type: undefined as string | undefined }),
              Effect.catchAll((e) => {
                const { tag, message } = Errors.describe(e, false)
                return Effect.succeed({ id, error: message as string | undefined, type: tag as string | undefined })
              })
            ),
          { concurrency: 8 }
        )
        const killed = results.filter((r) => r.error === undefined).map((r) => r.id)
        const failures = results.filter((r) => r.error !== undefined)
        for (const f of failures) yield* Output.write("stderr", `hf-sandbox: ${f.id}: ${f.error}\n`)
        if (mode.json) {
          yield* Output.json({ killed, failed: failures.map((f) => ({ id: f.id, error: f.error, type: f.type })) })
        } else {
          for (const id of killed) yield* Output.line(id)
          if (a.all && targets.length === 0) yield* Output.note(mode, `No ${backend.provider} sandboxes running.`)
        }
        if (failures.length > 0) yield* Output.setExitCode(1)
      }),
    { impliesLocal: (a) => a.ids.length > 0 && a.ids.every(isLocalId) }
  )
).pipe(Command.withDescription("Stop sandboxes by id, or all of them with --all."))
