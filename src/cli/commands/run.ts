/** `hf-sandbox run [IMAGE] -- CMD`: a sandbox made for one command and stopped with it. */
import * as Command from "@effect/cli/Command"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Sandbox from "../../Sandbox.js"
import { action } from "../action.js"
import * as Io from "../io.js"
import {
  commandArgs,
  commandTimeout,
  cwd,
  flavor,
  globals,
  image,
  sandboxFlags,
  sandboxOptions,
  stdin
} from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"
import { stdinStream, streamCommand } from "../streamed.js"

export const run = Command.make(
  "run",
  {
    ...globals,
    flavor,
    timeout: commandTimeout,
    ...sandboxFlags,
    cwd,
    stdin,
    image,
    cmd: commandArgs
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const { forced } = yield* Io.Io
        if (forced === undefined) {
          return yield* new Parse.UsageError({
            message: "run needs -- before the command: hf-sandbox run [IMAGE] -- CMD"
          })
        }
        const options = yield* sandboxOptions(a)
        const command = yield* Parse.commandOf(forced, a.cmd)
        const timeout = yield* Parse.optionalDuration("--timeout", a.timeout)
        const input = a.stdin ? stdinStream() : undefined
        // The sandbox is owned: it ends with this command, on success, failure and Ctrl-C alike. Its hard
        // limit on HF Jobs leaves the command's timeout room to play out.
        const sb = yield* Sandbox.make({
          ...options,
          ...(timeout !== undefined ? { lifetime: Duration.sum(timeout, Duration.minutes(10)) } : {})
        })
        if (mode.json) yield* Output.json({ event: "sandbox", id: sb.id, provider: sb.provider })
        const code = yield* streamCommand(
          sb,
          command,
          { cwd: Option.getOrUndefined(a.cwd), timeout, stdin: input },
          mode
        )
        yield* Output.setExitCode(code)
      }),
    { exitCodes: "command", takesCommand: true, starts: true }
  )
).pipe(
  Command.withDescription(
    "Create a sandbox, run one command in it (streamed), and stop it: exit with the command's exit code."
  )
)
