/**
 * The `hf-sandbox` command line: `create`, `exec`, `spawn`, `cp`, `ls`, `logs`, `kill`, `run`, `expose`,
 * `ssh`, `hardware` and `top`, on HF
 * Jobs or (`--local`) on this machine. See docs/cli.md. This module holds the root command and the
 * wiring of the commands (one module each, in ./commands/) and runs the whole on an argv.
 */

import * as NodeUtil from "node:util"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Usage from "@effect/cli/Usage"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { VERSION } from "../internal/version.js"
import { RootGlobals } from "./action.js"
import { cp } from "./commands/cp.js"
import { create } from "./commands/create.js"
import { exec } from "./commands/exec.js"
import { expose } from "./commands/expose.js"
import { hardware } from "./commands/hardware.js"
import { kill } from "./commands/kill.js"
import { logs } from "./commands/logs.js"
import { ls } from "./commands/ls.js"
import { pool, poolDown, poolLs, poolUp } from "./commands/pool.js"
import { processes, processKill, processLogs, processLs } from "./commands/process.js"
import { run } from "./commands/run.js"
import { spawn } from "./commands/spawn.js"
import { ssh } from "./commands/ssh.js"
import { top } from "./commands/top.js"
import * as Help from "./help.js"
import * as Io from "./io.js"
import { globals } from "./options.js"
import * as Output from "./output.js"

const root = Command.make("hf-sandbox", globals, () =>
  Effect.zipRight(
    Output.write(
      "stderr",
      "usage: hf-sandbox [--local] [--json] [-q] <create|exec|spawn|process|cp|ls|logs|kill|run|expose|ssh|hardware|top> ...\n" +
        "Run `hf-sandbox --help` for the commands, `hf-sandbox <command> --help` for one.\n"
    ),
    Output.setExitCode(2)
  )
).pipe(
  Command.withDescription(
    "Sandboxes on Hugging Face Jobs (or, with --local, on this machine): create one, run commands in it, copy files, stop it. " +
      "Like the original hf-sandbox, each sandbox made on HF Jobs sends two anonymous usage events to the Hub " +
      "(flavor, timeout, whether the HF token was forwarded, lifetime, how it ended; nothing else). " +
      "Set HF_HUB_DISABLE_TELEMETRY=1 or DO_NOT_TRACK=1 to turn them off."
  )
)

/**
 * A command under the root, handed the global options given before its name (`hf-sandbox --json ls`),
 * which its action merges with those given after it.
 */
const underRoot = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>) =>
  Command.provideEffect(command, RootGlobals, root)

const cli = Command.run(
  root.pipe(
    Command.withSubcommands([
      underRoot(create),
      underRoot(exec),
      underRoot(spawn),
      underRoot(processes),
      underRoot(cp),
      underRoot(ls),
      underRoot(logs),
      underRoot(kill),
      underRoot(run),
      underRoot(expose),
      underRoot(ssh),
      underRoot(hardware),
      underRoot(top),
      underRoot(pool)
    ])
  ),
  {
    name: "hf-sandbox",
    version: VERSION
  }
)

/** The commands by their path (`exec`, `process ls`), for the options each one knows. */
const COMMANDS: Readonly<Record<string, Command.Command<string, never, unknown, unknown>>> = {
  create,
  exec,
  spawn,
  cp,
  ls,
  logs,
  kill,
  hardware,
  top,
  run,
  ssh,
  expose,

  "process ls": processLs,
  "process kill": processKill,
  "process logs": processLogs,
  "pool up": poolUp,
  "pool ls": poolLs,
  "pool down": poolDown
} as unknown as Record<string, Command.Command<string, never, unknown, unknown>>

/** The option names a command takes, as its usage line shows them (`-q`, `--quiet`, `--tail`, …). */
const flagsOf = (path: ReadonlyArray<string>): ReadonlySet<string> => {
  const command = COMMANDS[path.join(" ")]
  if (command === undefined) return new Set()
  const usage = HelpDoc.toAnsiText(Usage.getHelp(Command.getUsage(command))).replace(ANSI, "")
  return new Set(usage.match(/(?<![\w-])--?[A-Za-z][\w-]*/g) ?? [])
}

/**
 * @effect/cli calls an option no command knows "an unknown argument" (or, before the command's name,
 * "an invalid subcommand"): said as what it is, when the arguments hold one.
 */
const unknownOptionOr = (words: ReadonlyArray<string>, text: string): string => {
  if (!/^(Received unknown argument|Invalid subcommand)/m.test(text)) return text
  const path = Help.commandPath(words)
  const unknown = Help.unknownOption(words, flagsOf(path))
  return unknown === undefined
    ? text
    : `hf-sandbox: unknown option ${unknown} (see hf-sandbox ${[...path, "--help"].join(" ")})`
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")

/**
 * The environment as `Config` sees it: the same keys as `ConfigProvider.fromEnv`, read from the
 * invocation's environment instead of `process.env`.
 */
const configProvider = (env: Io.Streams["env"]) =>
  ConfigProvider.fromMap(new Map(Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [[k, v] as const]))), {
    pathDelim: "_",
    seqDelim: ","
  })

/**
 * Runs the CLI on `argv` (node, script, then the arguments, as `process.argv`) with the given streams and
 * environment (by default this process's), and succeeds with the exit code. Ctrl-C is the caller's: an
 * interrupted run releases what it owns (`run` stops its sandbox) and ends interrupted.
 *
 * @since 0.2.0
 * @category running
 */
export const runCli = (
  argv: ReadonlyArray<string>,
  streams: Io.Streams = Io.processStreams()
): Effect.Effect<number> => {
  // The command after `--` is taken off before parsing. @effect/cli (0.77) splits at `--` for a command's
  // arguments, but looks for its built-in options in the whole argv: given `exec ID -- python --version`
  // it would print our version instead of running python, and `-- cmd --help` would print help.
  const separator = argv.indexOf("--", 2)
  const parsed = separator < 0 ? argv : argv.slice(0, separator)
  const words = parsed.slice(2)
  const io = Io.invocation(streams, separator < 0 ? undefined : argv.slice(separator + 1), Help.commandPath(words))
  const help = Help.helpRequest(words)
  // Usage errors are styled with ANSI escapes: kept for a terminal, removed for a pipe or file (and with
  // NO_COLOR). Help is rewritten as plain text.
  const printer = (stream: Io.Sink, edit: (text: string) => string) => {
    const colors = help === undefined && stream.isTTY === true && io.env.NO_COLOR === undefined
    return (...args: ReadonlyArray<unknown>) => {
      const text = NodeUtil.format(...args)
      return Io.write(stream, `${edit(colors ? text : text.replace(ANSI, ""))}\n`)
    }
  }
  const refused = words.find((word) => Help.REFUSED_BUILT_INS.includes(word.split("=")[0]!))
  const overview = help === undefined ? undefined : Help.overviewFor(help)
  const parseAndRun =
    refused !== undefined
      ? Effect.zipRight(
          Output.write("stderr", `hf-sandbox: unknown option ${refused} (see hf-sandbox --help)\n`),
          Output.setExitCode(2)
        )
      : overview !== undefined
        ? Output.write("stdout", `${overview}\n`)
        : Effect.consoleWith((console) =>
            cli(parsed).pipe(
              Effect.withConsole({
                ...console,
                log: printer(io.stdout, (text) => (help === undefined ? text : Help.rewrite(text, help))),
                error: printer(io.stderr, (text) => Help.wrap(unknownOptionOr(words, text)))
              })
            )
          )
  return parseAndRun.pipe(
    // @effect/cli has printed the problem (unknown option, missing argument, …) already.
    Effect.catchIf(ValidationError.isValidationError, () => Output.setExitCode(2)),
    // The built-in options this CLI offers (--help, --version) are documented in the overview.
    Effect.provide(Layer.merge(NodeContext.layer, CliConfig.layer({ showBuiltIns: false }))),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.zipRight(Output.write("stderr", `hf-sandbox: ${Cause.squash(cause)}\n`), Output.setExitCode(1)).pipe(
            Effect.orDie
          )
    ),
    Effect.orDie,
    Effect.provideService(Io.Io, io),
    io.env === process.env ? (self) => self : Effect.withConfigProvider(configProvider(io.env)),
    Effect.map(() => io.exit.code)
  )
}

/** Runs the CLI on `process.argv` with this process's streams; succeeds with the exit code. */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number> => runCli(argv)
