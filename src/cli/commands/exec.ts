/** `hf-sandbox exec ID -- CMD`: a command in a running sandbox, streamed; its exit code is ours. */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { action, idImpliesLocal } from "../action.js"
import { attach } from "../attach.js"
import { commandArgs, commandOf, commandTimeout, cwd, env, globals, sandboxId, stdin } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"
import { stdinStream, streamCommand } from "../streamed.js"

export const exec = Command.make(
  "exec",
  {
    ...globals,
    env,
    cwd,
    stdin,
    timeout: commandTimeout,
    id: sandboxId,
    cmd: commandArgs
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const command = yield* commandOf(a.cmd)
        const timeout = yield* Parse.optionalDuration("--timeout", a.timeout)
        const environment = yield* Parse.envPairs(a.env)
        const input = a.stdin ? stdinStream() : undefined
        const sb = yield* attach(id)
        const code = yield* streamCommand(
          sb,
          command,
          {
            ...(a.env.length > 0 ? { env: environment } : {}),
            cwd: Option.getOrUndefined(a.cwd),
            timeout,
            stdin: input
          },
          mode
        )
        yield* Output.setExitCode(code)
      }),
    { exitCodes: "command", takesCommand: true, impliesLocal: idImpliesLocal }
  )
).pipe(
  Command.withDescription(
    "Run a command in a sandbox, streaming its output; exit with its exit code (124 on timeout, 128+N on signal N)."
  )
)
