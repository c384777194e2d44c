/** `hf-sandbox process ls | kill | logs`: the background processes of a sandbox (started with `spawn`). */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Sandbox from "../../Sandbox.js"
import { action, idImpliesLocal } from "../action.js"
import { attachTo } from "../attach.js"
import { ago } from "../backend.js"
import { globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"
import { eventWriter } from "../streamed.js"

const processArg = Args.text({ name: "PROC" }).pipe(
  Args.withDescription("A background process: its id (p-1, as spawn printed it) or its pid.")
)

/** A process named on the command line: `p-3`, or a pid. */
const processOf = (sb: Sandbox.Sandbox, given: string) =>
  Effect.flatMap(Parse.notAnOption("PROC", given), (name) =>
    sb.process(/^\d+$/.test(name) ? Number(name) : name).pipe(
      Effect.catchTag("ProcessNotFoundError", () =>
        Effect.fail(
          new Parse.CliError({
            message: `no background process ${name} in ${sb.id}; list them with: hf-sandbox process ls ${sb.id}`
          })
        )
      )
    )
  )

const SIGNALS = ["TERM", "KILL", "INT", "HUP"] as const

/** `TERM`, `SIGTERM`, `term` or a number from 1 to 64. */
const signalOf = (given: string) => {
  const name = given.toUpperCase().replace(/^SIG/, "")
  if ((SIGNALS as ReadonlyArray<string>).includes(name)) {
    return Effect.succeed(`SIG${name}` as "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP")
  }
  const number = /^\d+$/.test(given) ? Number(given) : Number.NaN
  return number >= 1 && number <= 64
    ? Effect.succeed(number)
    : Effect.fail(
        new Parse.UsageError({
          message: `--signal must be TERM, KILL, INT, HUP or a number from 1 to 64, got ${given}`
        })
      )
}

const processState = (p: Sandbox.ProcessInfo) =>
  p.running ? "running" : p.signal !== null ? `killed (signal ${p.signal})` : `exited (${p.exitCode ?? "?"})`

export const processLs = Command.make(
  "ls",
  { ...globals, id: sandboxId },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const sb = yield* attachTo(a.id)
        const list = yield* sb.processes
        if (mode.json) return yield* Output.json(list)
        if (mode.quiet) return yield* Effect.forEach(list, (p) => Output.line(p.id), { discard: true })
        if (list.length === 0) return yield* Output.note(mode, `No background processes in ${sb.id}.`)
        yield* Output.table(
          ["PROC", "PID", "TAG", "STATE", "STARTED"],
          list.map((p) => [
            p.id,
            String(p.pid),
            p.tag ?? "-",
            processState(p),
            ago(new Date(p.startedAtMs).toISOString())
          ])
        )
      }),
    { impliesLocal: idImpliesLocal }
  )
).pipe(Command.withDescription("List a sandbox's background processes, running and exited."))

export const processKill = Command.make(
  "kill",
  {
    ...globals,
    signal: Options.text("signal").pipe(
      Options.withPseudoName("SIGNAL"),
      Options.withDefault("TERM"),
      Options.withDescription("The signal for the process's whole group: TERM (default), KILL, INT, HUP or a number.")
    ),
    id: sandboxId,
    procs: processArg.pipe(Args.atLeast(1))
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const signal = yield* signalOf(a.signal)
        const sb = yield* attachTo(a.id)
        const killed: Array<string> = []
        const exited: Array<string> = []
        for (const given of a.procs) {
          const proc = yield* processOf(sb, given)
          if (yield* proc.kill(signal)) killed.push(proc.id)
          else exited.push(proc.id)
        }
        if (mode.json) return yield* Output.json({ killed, exited })
        yield* Effect.forEach(killed, Output.line, { discard: true })
        if (exited.length > 0) yield* Output.note(mode, `Already exited: ${exited.join(", ")}`)
      }),
    { impliesLocal: idImpliesLocal }
  )
).pipe(Command.withDescription("Signal background processes (their whole process group) and print the ids signalled."))

export const processLogs = Command.make(
  "logs",
  {
    ...globals,
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("Keep printing its live output until it exits.")
    ),
    id: sandboxId,
    proc: processArg
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const sb = yield* attachTo(a.id)
        const proc = yield* processOf(sb, a.proc)
        yield* proc
          .output({ follow: a.follow })
          .pipe(Stream.interruptWhen(Output.stdoutClosed), Stream.runForEach(eventWriter(mode)))
      }),
    { impliesLocal: idImpliesLocal }
  )
).pipe(
  Command.withDescription(
    "Print a background process's output (the last 1 MiB per stream the sandbox keeps); -f follows it live until it exits."
  )
)

export const processes = Command.make("process", globals, () =>
  Effect.zipRight(Output.write("stderr", "usage: hf-sandbox process <ls|kill|logs> ID ...\n"), Output.setExitCode(2))
).pipe(
  Command.withDescription("Background processes of a sandbox (started with spawn): list, signal, read their output."),
  Command.withSubcommands([processLs, processKill, processLogs])
)
