/**
 * What the parts of the local provider share: the platform services and the options of one `make`,
 * resolved once.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as LocalSandbox from "../../LocalSandbox.js"
import * as StateHome from "../stateHome.js"

export interface LocalContext {
  readonly executor: CommandExecutor.CommandExecutor
  readonly fs: FileSystem.FileSystem
  /** The interpreter as given (for messages); `interpreter` finds the one that runs. */
  readonly python: string
  /** The server to run (see internal/serverScript). */
  readonly script: string
  /** Where working directories are created; `undefined`: the OS temp directory. */
  readonly tempDir: string | undefined
  /** How long a server gets to stop after SIGTERM before everything left is SIGKILLed. */
  readonly stopTimeout: Duration.Duration
  /** Where detached sandboxes keep their state files and logs. */
  readonly stateDir: string
  /** The interpreter `python` names on a PATH (see internal/local/interpreter). */
  readonly interpreter: (path: string | undefined) => Effect.Effect<string>
}

/** The default of `stopTimeout`. */
export const DEFAULT_STOP_TIMEOUT = "3 seconds"

/** The `stateDir` option, else the default directory of the environment `Config` reads (read once here). */
export const resolveStateDir = (options: Pick<LocalSandbox.Options, "stateDir">): Effect.Effect<string> =>
  options.stateDir !== undefined ? Effect.succeed(options.stateDir) : Effect.orDie(StateHome.localDirectoryConfig)
