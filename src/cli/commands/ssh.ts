/**
 * `hf-sandbox ssh ID [-- ARGS]`: an SSH session into a sandbox made with `--ssh`, through the system
 * `ssh` (found on PATH) and the caller's own SSH key, as `hf jobs ssh` opens one. ARGS follow the
 * destination: SSH's flags (`-L 6006:localhost:6006`) or a remote command. The HF token is never in
 * the command line or the environment of `ssh`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { action, idOf } from "../action.js"
import { attach } from "../attach.js"
import * as Io from "../io.js"
import { globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

/** Variables that carry an HF credential (or say where one is): never handed to `ssh`. */
const CREDENTIALS = /^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HF_TOKEN_PATH|HF_OIDC_.*|HF_SANDBOX_.*TOKEN.*)$/

/** `ssh`'s environment: the invocation's, without the HF credentials. */
const sshEnv = (env: Readonly<Record<string, string | undefined>>) =>
  Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && !CREDENTIALS.test(entry[0])
    )
  )

/** A word as a POSIX shell reads it back. */
const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`)

/** How long `ssh` gets to close its connection after SIGTERM before it is killed. */
const STOP_GRACE = Duration.seconds(3)

/** How long a killed `ssh` may take to be reaped (it cannot refuse SIGKILL; this only bounds a stuck kernel). */
const KILL_GRACE = Duration.seconds(5)

/** The failure of an `ssh` that could not be run. */
const notRun = (error: NodeJS.ErrnoException) =>
  new Parse.CliError({
    tag: "SshError",
    message:
      error.code === "ENOENT"
        ? "no `ssh` on PATH: install an OpenSSH client (e.g. apt-get install openssh-client), or run the command `--dry-run` prints with another client"
        : `could not run ssh: ${error.message}`
  })

/** A started `ssh`, and its exit code (128+N on signal N) or why it could not be run, once known. */
interface Started {
  readonly child: ChildProcess
  readonly exit: Deferred.Deferred<number, Parse.CliError>
}

/** Starts `argv` with this terminal (stdin, stdout and stderr inherited), listening from the start. */
const started = (argv: ReadonlyArray<string>, env: Record<string, string>): Effect.Effect<Started> =>
  Effect.flatMap(Deferred.make<number, Parse.CliError>(), (exit) =>
    Effect.sync(() => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit", env })
      child.once("exit", (code, signal) =>
        Deferred.unsafeDone(
          exit,
          Effect.succeed(code ?? 128 + (signal === null ? 0 : (os.constants.signals[signal] ?? 0)))
        )
      )
      // Not once: a later "error" (a failed kill) must find a listener too; the first answer stands.
      child.on("error", (error: NodeJS.ErrnoException) => Deferred.unsafeDone(exit, Effect.fail(notRun(error))))
      return { child, exit }
    })
  )

/**
 * Ends an `ssh` still running when the command is interrupted: SIGTERM, which it answers by closing its
 * connection, then SIGKILL if it has not exited within {@link STOP_GRACE}; each wait bounded, so that the
 * CLI neither leaves it behind nor hangs on it.
 */
const stop = ({ child, exit }: Started) => {
  const signalled = (signal: NodeJS.Signals, grace: Duration.Duration) =>
    Effect.sync(() => child.kill(signal)).pipe(
      // Interruptible, or the bound could not cut the wait: a release runs uninterruptibly.
      Effect.zipRight(Deferred.await(exit).pipe(Effect.exit, Effect.interruptible, Effect.timeoutOption(grace))),
      Effect.map(Option.isSome)
    )
  return Effect.flatMap(Deferred.isDone(exit), (done) =>
    done
      ? Effect.void
      : Effect.flatMap(signalled("SIGTERM", STOP_GRACE), (ended) =>
          ended ? Effect.void : Effect.asVoid(signalled("SIGKILL", KILL_GRACE))
        )
  )
}

/** Runs `argv` with this terminal; its exit code (128+N on signal N). */
const interactive = (argv: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.acquireUseRelease(started(argv, env), ({ exit }) => Deferred.await(exit), stop)

export const ssh = Command.make(
  "ssh",
  {
    ...globals,
    identityFile: Options.file("identity-file").pipe(
      Options.withAlias("i"),
      Options.optional,
      Options.withDescription("The SSH key to use (passed to `ssh -i`); its public half must be registered on the Hub.")
    ),
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("Print the ssh command instead of running it.")),
    id: sandboxId,
    args: Args.text({ name: "ARGS" }).pipe(
      Args.repeated,
      Args.withDescription(
        "After --: what follows the destination on ssh's command line (its flags, or a remote command)."
      )
    )
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const { env, forced } = yield* Io.Io
        const sb = yield* attach(id)
        const target = yield* sb.sshCommand()
        const identity = Option.getOrUndefined(a.identityFile)
        const argv = [
          "ssh",
          ...(identity !== undefined ? ["-i", identity] : []),
          ...target.argv.slice(1),
          ...(forced ?? a.args)
        ]
        if (a.dryRun) {
          return yield* mode.json
            ? Output.json({ id: sb.id, argv, destination: target.destination, url: target.url })
            : Output.line(argv.map(quote).join(" "))
        }
        yield* Output.setExitCode(yield* interactive(argv, sshEnv(env)))
      }),
    { takesCommand: true, ids: idOf, exitCodes: "command" }
  )
).pipe(
  Command.withDescription(
    "Open an SSH session into a sandbox made with --ssh (HF Jobs), with the system ssh and your SSH key " +
      "registered at https://huggingface.co/settings/keys; ARGS after -- follow the destination, e.g. " +
      "`-- -L 6006:localhost:6006` to forward a port, or a remote command. Exits with ssh's exit code."
  )
)
