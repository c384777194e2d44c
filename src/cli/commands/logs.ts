/** `hf-sandbox logs ID`: a sandbox's log, replayed, or followed with `-f`. */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { action, idImpliesLocal } from "../action.js"
import * as Backend from "../backend.js"
import { globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

export const logs = Command.make(
  "logs",
  {
    ...globals,
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("Keep printing new lines until the sandbox ends.")
    ),
    tail: Options.integer("tail").pipe(
      Options.withPseudoName("N"),
      Options.optional,
      Options.withDescription("Only the last N lines.")
    ),
    id: sandboxId
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const tail = Option.getOrUndefined(a.tail)
        if (tail !== undefined && tail < 0) {
          return yield* new Parse.UsageError({ message: "--tail must be 0 or more" })
        }
        const backend = yield* Backend.Backend
        yield* backend
          .logs(id, { follow: a.follow, tail })
          .pipe(Stream.runForEach((text) => (mode.json ? Output.json({ line: text }) : Output.line(text))))
      }),
    { impliesLocal: idImpliesLocal }
  )
).pipe(Command.withDescription("Print a sandbox's log (its server's and, on HF Jobs, the job's output)."))
