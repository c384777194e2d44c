/** `hf-sandbox ls`: the provider's running sandboxes (with `--all`, on HF Jobs, ended ones too). */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { action } from "../action.js"
import * as Backend from "../backend.js"
import { globals } from "../options.js"
import * as Output from "../output.js"

export const ls = Command.make(
  "ls",
  {
    ...globals,
    all: Options.boolean("all").pipe(
      Options.withAlias("a"),
      Options.withDescription("Include sandboxes that have ended (HF Jobs).")
    )
  },
  action((a, mode) =>
    Effect.gen(function* () {
      const backend = yield* Backend.Backend
      const listing = yield* backend.list(a.all)
      if (mode.json) return yield* Output.json(listing.rows.map((r) => r.record))
      if (mode.quiet) return yield* Effect.forEach(listing.rows, (r) => Output.line(r.id), { discard: true })
      if (listing.rows.length === 0) return yield* Output.note(mode, `No ${backend.provider} sandboxes running.`)
      yield* Output.table(
        listing.columns,
        listing.rows.map((r) => r.cells)
      )
    })
  )
).pipe(Command.withDescription("List running sandboxes."))
