/** `hf-sandbox spawn ID -- CMD`: a command started in the background of a sandbox; its process id printed. */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { action, idImpliesLocal } from "../action.js"
import { attach } from "../attach.js"
import { commandArgs, commandOf, cwd, env, globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

export const spawn = Command.make(
  "spawn",
  {
    ...globals,
    env,
    cwd,
    tag: Options.text("tag").pipe(
      Options.withPseudoName("TAG"),
      Options.optional,
      Options.withDescription("A label, shown in process lists.")
    ),
    id: sandboxId,
    cmd: commandArgs
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const command = yield* commandOf(a.cmd)
        const environment = yield* Parse.envPairs(a.env)
        const sb = yield* attach(id)
        const proc = yield* sb.spawn(Parse.commandForm(command), {
          ...(a.env.length > 0 ? { env: environment } : {}),
          cwd: Option.getOrUndefined(a.cwd),
          tag: Option.getOrUndefined(a.tag)
        })
        if (mode.json) yield* Output.json({ id: proc.id, pid: proc.pid, sandbox: sb.id })
        else yield* Output.line(proc.id)
        yield* Output.note(
          mode,
          `Started ${proc.id} (pid ${proc.pid}) in ${sb.id}; it runs until it exits or the sandbox stops.`
        )
      }),
    { takesCommand: true, impliesLocal: idImpliesLocal }
  )
).pipe(Command.withDescription("Start a command in the background of a sandbox and print its process id."))
