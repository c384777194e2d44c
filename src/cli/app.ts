/**
 * The `hf-sandbox` command line: `create`, `exec`, `spawn`, `cp`, `ls`, `logs`, `kill` and `run`, on HF
 * Jobs or (`--local`) on this machine. See docs/cli.md.
 */

import * as NodeUtil from "node:util"
import * as Args from "@effect/cli/Args"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as Usage from "@effect/cli/Usage"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { VERSION } from "../internal/version.js"
import * as ReadInto from "../internal/wire/readInto.js"
import * as Sandbox from "../Sandbox.js"
import { LocalFileError } from "../SandboxError.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as Telemetry from "../Telemetry.js"
import { attach, attachTo } from "./attach.js"
import * as Backend from "./backend.js"
import { ago } from "./backend.js"
import { copy } from "./cp.js"
import * as Errors from "./errors.js"
import * as Help from "./help.js"
import * as Io from "./io.js"
import * as Output from "./output.js"
import * as Parse from "./parse.js"

// ---------------------------------------------------------------------------
// Shared options
// ---------------------------------------------------------------------------

/** Accepted before the command name and after it alike. */
const globals = {
  local: Options.boolean("local").pipe(
    Options.withDescription("Use the local provider (this machine) instead of HF Jobs. Implied by local-… ids.")
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription("Machine-readable output: one JSON document, or one per line for streams.")
  ),
  quiet: Options.boolean("quiet").pipe(
    Options.withAlias("q"),
    Options.withDescription("Print only the essential value (e.g. the id), for $(...).")
  )
}

type Globals = { readonly local: boolean; readonly json: boolean; readonly quiet: boolean }

const env = Options.text("env").pipe(
  Options.withAlias("e"),
  Options.withPseudoName("NAME=VALUE"),
  Options.repeated,
  Options.withDescription("Environment variable (repeatable).")
)
const secret = Options.text("secret").pipe(
  Options.withAlias("s"),
  Options.withPseudoName("NAME[=VALUE]"),
  Options.repeated,
  Options.withDescription(
    "Secret environment variable (repeatable); a bare NAME takes its value from this environment. " +
      "Sent as an encrypted job secret, never printed."
  )
)
const flavor = Options.text("flavor").pipe(
  Options.withPseudoName("FLAVOR"),
  Options.optional,
  Options.withDescription("HF hardware, e.g. cpu-basic (default), cpu-upgrade, t4-small, a10g-small.")
)
const transport = Options.choice("transport", ["tunnel", "proxy"]).pipe(
  Options.optional,
  Options.withDescription("How to reach an HF sandbox: a Cloudflare quick tunnel (default) or the HF Jobs proxy.")
)
const label = Options.text("label").pipe(
  Options.withAlias("l"),
  Options.withPseudoName("KEY[=VALUE]"),
  Options.repeated,
  Options.withDescription(
    "Label of the HF job (repeatable), for your own bookkeeping; keys and values of at most 100 letters, digits, '.', '_', '-'."
  )
)
const forwardHfToken = Options.boolean("forward-hf-token").pipe(
  Options.withDescription("Give the sandbox your HF token as the HF_TOKEN secret.")
)
const startTimeout = Options.text("start-timeout").pipe(
  Options.withPseudoName("DURATION"),
  Options.optional,
  Options.withDescription("How long starting may take (default 3m; 2m with --transport proxy).")
)
const cwd = Options.text("cwd").pipe(
  Options.withPseudoName("DIR"),
  Options.optional,
  Options.withDescription("Working directory of the command (default: the sandbox's home).")
)
const stdin = Options.boolean("stdin").pipe(
  Options.withAlias("i"),
  Options.withDescription("Stream this process's stdin to the command, as it comes (any size).")
)
const sandboxId = Args.text({ name: "ID" }).pipe(
  Args.withDescription("The sandbox's id (on HF Jobs also NAMESPACE/ID, as the job's page shows it).")
)
const commandArgs = Args.text({ name: "CMD" }).pipe(
  Args.repeated,
  Args.withDescription("The command, after --. One word runs through /bin/sh -c; several are run as they are.")
)
const image = Args.text({ name: "IMAGE" }).pipe(
  Args.optional,
  Args.withDescription("Docker image (default python:3.12), or hf.co/spaces/owner/name. Ignored by --local.")
)

// ---------------------------------------------------------------------------
// Running a command's handler
// ---------------------------------------------------------------------------

/** The sandbox options `create` and `run` share, read from the same flags. */
const sandboxOptions = (a: {
  readonly image: Option.Option<string>
  readonly env: ReadonlyArray<string>
  readonly secret: ReadonlyArray<string>
  readonly label: ReadonlyArray<string>
  readonly flavor: Option.Option<string>
  readonly startTimeout: Option.Option<string>
  readonly transport: Option.Option<"tunnel" | "proxy">
  readonly forwardHfToken: boolean
}) =>
  Effect.gen(function* () {
    const imageName = Option.isSome(a.image) ? yield* Parse.notAnOption("IMAGE", a.image.value) : undefined
    return {
      ...(imageName !== undefined ? { image: imageName } : {}),
      env: yield* Parse.envPairs(a.env),
      secrets: yield* Parse.secrets(a.secret, (yield* Io.Io).env),
      labels: yield* Parse.labels(a.label),
      flavor: Option.getOrUndefined(a.flavor),
      startTimeout: yield* Parse.optionalDuration("--start-timeout", a.startTimeout),
      transport: Option.getOrUndefined(a.transport),
      forwardHfToken: a.forwardHfToken
    }
  })

const isLocalId = (id: string) => id.startsWith("local-")
/** For commands on one sandbox: its `local-…` id is enough to mean the local provider. */
const idImpliesLocal = <A extends { readonly id: string }>(args: A) => isLocalId(args.id)

type Needs =
  | Backend.Backend
  | SandboxProvider.SandboxProvider
  | HttpClient.HttpClient
  | FileSystem.FileSystem
  | Scope.Scope

interface ActionOptions<A> {
  /** How failures map to exit codes: `"command"` for `exec`/`run`, whose own codes pass through. */
  readonly exitCodes?: "plain" | "command"
  /** Whether the command takes a command line after `--`. */
  readonly takesCommand?: boolean
  /** Whether the arguments alone say the local provider is meant (`local-…` ids). */
  readonly impliesLocal?: (args: A) => boolean
  /** Whether the command starts a sandbox: only then may a failure say that it did not start. */
  readonly starts?: boolean
}

/**
 * Runs a handler on the chosen provider and turns every failure into a message and an exit code: 2 for a
 * usage mistake; for `exec`/`run` 127 when the program does not exist and 125 for anything else (so the
 * command's own codes stay unambiguous, as with `docker run`); 1 elsewhere. No stack trace is shown.
 */
const action =
  <A extends Globals>(
    body: (args: A, mode: Output.Mode) => Effect.Effect<void, unknown, Needs>,
    options: ActionOptions<A> = {}
  ) =>
  (args: A) =>
    Effect.gen(function* () {
      const top = yield* root
      // What followed the first `--`: split off before parsing, so never taken for options.
      const { forced } = yield* Io.Io
      const mode = { json: top.json || args.json, quiet: top.quiet || args.quiet }
      const local = top.local || args.local || (options.impliesLocal?.(args) ?? false)
      const failed = (error: unknown) => {
        // The library's error in the CLI's words, under its own tag (for --json).
        const { tag, message } = Errors.describe(error, options.starts ?? false)
        const code =
          tag === "UsageError" ? 2 : options.exitCodes === "command" ? (tag === "CommandNotFoundError" ? 127 : 125) : 1
        return Effect.zipRight(Output.error(mode, tag, message), Output.setExitCode(code))
      }
      if (forced !== undefined && !options.takesCommand) {
        return yield* failed(new Parse.UsageError({ message: `unexpected -- ${forced.join(" ")}`.trimEnd() }))
      }
      yield* Effect.suspend(() => body(args, mode).pipe(Effect.scoped, Effect.provide(layerFor(local)))).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : failed(Cause.squash(cause))
        )
      )
    })

/**
 * The provider, and on HF Jobs the anonymous usage events the original hf-sandbox sends (one pair per
 * sandbox made, see docs/telemetry.md), unless HF_HUB_DISABLE_TELEMETRY, DO_NOT_TRACK or another
 * opt-out variable is set. A `--local` sandbox reports nothing: it never leaves this machine. Each
 * request is bounded (3 s), and one still in flight when the command ends gets 1 s, then is dropped.
 */
const layerFor = (local: boolean) =>
  Layer.unwrapEffect(
    Effect.map(Io.Io, ({ env }) =>
      local ? Backend.layer(true, env) : Telemetry.layerHub().pipe(Layer.provideMerge(Backend.layer(false, env)))
    )
  )

/**
 * This process's stdin as a stream, read only as fast as the command in the sandbox takes it (the
 * library sends it in bounded parts): `tar c big | hf-sandbox exec -i ID -- tar x` holds about one part
 * in memory, whatever the size.
 */
const stdinStream = (): Stream.Stream<Uint8Array, LocalFileError> =>
  ReadInto.fromFd(
    0,
    () => process.stdin,
    (cause) =>
      new LocalFileError({
        path: "<stdin>",
        operation: "exec -i",
        detail: cause instanceof Error ? cause.message : String(cause)
      })
  )

/** The exit code a finished command maps to: its own, 124 after its timeout, 128+N after signal N. */
const exitCodeOf = (exit: { exitCode: number | null; signal: number | null; timedOut: boolean }) =>
  exit.timedOut ? 124 : exit.signal !== null ? 128 + exit.signal : (exit.exitCode ?? 1)

/** Writes a command's events: its output as bytes to our stdout and stderr, or (--json) every event as a line. */
const eventWriter = (mode: Output.Mode) => {
  const text = { Stdout: new TextDecoder(), Stderr: new TextDecoder() }
  return (event: Sandbox.ExecEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Start":
        return mode.json ? Output.json({ event: "start", pid: event.pid }) : Effect.void
      case "Stdout":
      case "Stderr":
        return mode.json
          ? Output.json({
              event: event._tag.toLowerCase(),
              data: text[event._tag].decode(event.data, { stream: true })
            })
          : Output.write(event._tag === "Stdout" ? "stdout" : "stderr", event.data)
      case "Exit":
        return mode.json
          ? Output.json({
              event: "exit",
              exitCode: event.exitCode,
              signal: event.signal,
              timedOut: event.timedOut,
              durationMs: event.durationMs
            })
          : Effect.void
    }
  }
}

/** Runs a command in a sandbox, its output streamed live to our stdout/stderr (or as NDJSON). */
const streamCommand = <E>(
  sb: Sandbox.Sandbox,
  command: ReadonlyArray<string>,
  options: Omit<Sandbox.ExecOptions<E>, "maxOutputBytes">,
  mode: Output.Mode
) =>
  Effect.gen(function* () {
    let exit: Extract<Sandbox.ExecEvent, { _tag: "Exit" }> | undefined
    const write = eventWriter(mode)
    yield* sb.execStream(Parse.commandForm(command), options).pipe(
      // Nobody reads our stdout any more: ending the stream kills the remote command.
      Stream.interruptWhen(Output.stdoutClosed),
      Stream.runForEach((event) => {
        if (event._tag === "Exit") exit = event
        return write(event)
      })
    )
    // Cut short because our stdout was closed: the exit status of a process killed by SIGPIPE.
    if (exit === undefined) return 128 + 13
    const done = exit
    if (done.timedOut && options.timeout !== undefined) {
      yield* Output.note(
        mode,
        `hf-sandbox: the command timed out after ${Duration.format(Duration.decode(options.timeout))} and was killed (exit 124)`
      )
    }
    return exitCodeOf(done)
  })

const durationSeconds = (d: Duration.Duration) => Math.round(Duration.toMillis(d) / 1000)

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

const root = Command.make("hf-sandbox", globals, () =>
  Effect.zipRight(
    Output.write(
      "stderr",
      "usage: hf-sandbox [--local] [--json] [-q] <create|exec|spawn|process|cp|ls|logs|kill|run> ...\n" +
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

const create = Command.make(
  "create",
  {
    ...globals,
    image,
    flavor,
    timeout: Options.text("timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Hard limit on the sandbox's life on HF Jobs, e.g. 30m, 2h (default 1h).")
    ),
    idleTimeout: Options.text("idle-timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Stop the sandbox after this long without a request (default 10m; 0: never).")
    ),
    env,
    secret,
    label,
    transport,
    forwardHfToken,
    startTimeout
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const idle = yield* Parse.optionalDuration("--idle-timeout", a.idleTimeout)
        const lifetime = yield* Parse.optionalDuration("--timeout", a.timeout)
        const options = yield* sandboxOptions(a)
        const sb = yield* Sandbox.make({
          ...options,
          timeout: lifetime,
          // `--idle-timeout 0` is "never", which the library spells Duration.infinity (it refuses zero).
          idleTimeout: idle !== undefined && Duration.toMillis(idle) === 0 ? Duration.infinity : idle,
          detach: true
        })
        const idleSeconds = idle === undefined ? 600 : durationSeconds(idle)
        const local = sb.provider === "local"
        if (mode.json) {
          yield* Output.json({
            id: sb.id,
            provider: sb.provider,
            idleTimeoutSeconds: idleSeconds,
            // HF Jobs default to one hour; a local sandbox has a lifetime only when given one.
            ...(local && lifetime === undefined
              ? {}
              : { timeoutSeconds: lifetime === undefined ? 3600 : durationSeconds(lifetime) }),
            details: sb.details
          })
        } else {
          yield* Output.line(sb.id)
        }
        const stops = [
          idleSeconds > 0
            ? `after ${Duration.format(Duration.seconds(idleSeconds))} without a request (--idle-timeout)`
            : undefined,
          local && lifetime === undefined
            ? undefined
            : `at the latest after ${Duration.format(lifetime ?? Duration.hours(1))}`
        ].filter((s) => s !== undefined)
        yield* Output.note(
          mode,
          `Sandbox ${sb.id} is running${local ? " on this machine" : ""}; it keeps running after this command.` +
            (stops.length > 0
              ? ` It stops itself ${stops.join(", and ")}.`
              : " It has no idle timeout: kill it when done.") +
            `\nRun commands: hf-sandbox exec ${sb.id} -- CMD...   Stop it: hf-sandbox kill ${sb.id}` +
            (local && options.image !== undefined
              ? "\n(The local provider runs on this machine and ignores IMAGE.)"
              : "")
        )
      }),
    { starts: true }
  )
).pipe(Command.withDescription("Create a sandbox that keeps running, and print its id."))

const exec = Command.make(
  "exec",
  {
    ...globals,
    env,
    cwd,
    stdin,
    timeout: Options.text("timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Kill the command after this long (exit code 124), e.g. 30s, 5m.")
    ),
    id: sandboxId,
    cmd: commandArgs
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const { forced } = yield* Io.Io
        const id = yield* Parse.notAnOption("ID", a.id)
        const command = yield* Parse.commandOf(forced, a.cmd)
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

const spawn = Command.make(
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
        const { forced } = yield* Io.Io
        const id = yield* Parse.notAnOption("ID", a.id)
        const command = yield* Parse.commandOf(forced, a.cmd)
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

const cp = Command.make(
  "cp",
  {
    ...globals,
    source: Args.text({ name: "SRC" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    destination: Args.text({ name: "DEST" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    links: Options.choice("links", ["skip", "refuse", "keep"]).pipe(
      Options.optional,
      Options.withDescription(
        "Symlinks in a directory copy that are absolute or lead out of the tree: skip them (default from a sandbox), refuse the copy, or keep them (default to a sandbox)."
      )
    ),
    preserveModes: Options.boolean("preserve-modes").pipe(
      Options.withDescription(
        "From a sandbox: keep setuid, setgid, sticky and the exact permission bits (by default they are dropped and your umask applies)."
      )
    )
  },
  action(
    (a, mode) =>
      copy(Parse.copyTarget(a.source), Parse.copyTarget(a.destination), mode, {
        links: Option.getOrUndefined(a.links),
        preserveModes: a.preserveModes
      }),
    {
      impliesLocal: (a) =>
        [a.source, a.destination].some((raw) => {
          const target = Parse.copyTarget(raw)
          return target._tag === "Remote" && isLocalId(target.id)
        })
    }
  )
).pipe(
  Command.withDescription(
    "Copy files or directories between this machine and a sandbox, docker-style: cp ./data ID:/work, cp ID:/work/out ./out."
  )
)

const ls = Command.make(
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

const logs = Command.make(
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

const kill = Command.make(
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

const run = Command.make(
  "run",
  {
    ...globals,
    flavor,
    timeout: Options.text("timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Kill the command after this long (exit code 124), e.g. 30s, 5m.")
    ),
    env,
    secret,
    label,
    transport,
    forwardHfToken,
    startTimeout,
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
          ...(timeout !== undefined ? { timeout: Duration.sum(timeout, Duration.minutes(10)) } : {})
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

// ---------------------------------------------------------------------------
// Background processes: process ls | kill | logs
// ---------------------------------------------------------------------------

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

const processLs = Command.make(
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

const processKill = Command.make(
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

const processLogs = Command.make(
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

const processes = Command.make("process", globals, () =>
  Effect.zipRight(Output.write("stderr", "usage: hf-sandbox process <ls|kill|logs> ID ...\n"), Output.setExitCode(2))
).pipe(
  Command.withDescription("Background processes of a sandbox (started with spawn): list, signal, read their output."),
  Command.withSubcommands([processLs, processKill, processLogs])
)

const cli = Command.run(root.pipe(Command.withSubcommands([create, exec, spawn, processes, cp, ls, logs, kill, run])), {
  name: "hf-sandbox",
  version: VERSION
})

/** The commands by their path (`exec`, `process ls`), for the options each one knows. */
const COMMANDS: Readonly<Record<string, Command.Command<string, never, unknown, unknown>>> = {
  create,
  exec,
  spawn,
  cp,
  ls,
  logs,
  kill,
  run,
  "process ls": processLs,
  "process kill": processKill,
  "process logs": processLogs
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
  const separator = argv.indexOf("--", 2)
  const io = Io.invocation(streams, separator < 0 ? undefined : argv.slice(separator + 1))
  const parsed = separator < 0 ? argv : argv.slice(0, separator)
  const words = parsed.slice(2)
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
