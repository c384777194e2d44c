/**
 * The local provider: runs the same in-sandbox server as a child process of this machine, in a
 * fresh temp directory. It needs no account and starts in milliseconds, which makes it the default
 * for the quick start and for tests. It is **not** an isolation boundary: commands run as your user.
 *
 * A sandbox made with `detach: true` runs its server in a session of its own, so it outlives this
 * process; what is needed to reach it again (id, pid, port, token) is kept in a state file only the user
 * can read, under {@link stateDirectory}. `Sandbox.connect(id)` attaches to it, {@link list} shows the
 * live ones, {@link kill} stops one, and its idle timeout (default 10 minutes) stops it when nobody
 * talks to it any more.
 *
 * @since 0.1.0
 */

import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Stream from "effect/Stream"
import * as LocalContext from "./internal/local/context.js"
import * as operations from "./internal/local/operations.js"
import * as provider from "./internal/local/provider.js"
import type { StartError } from "./SandboxError.js"
import type * as SandboxProvider from "./SandboxProvider.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The Python interpreter to run the server with. Default `"python3"` (found on `PATH`). */
  readonly python?: string | undefined
  /**
   * Path of the server: a package directory (with `__main__.py`) or a single script, run as `python3 -S <path>`.
   * Default: the `rpc-server/sbx_server` package shipped with this package.
   */
  readonly serverScript?: string | undefined
  /** Where sandbox working directories are created. Default: the OS temp directory. */
  readonly tempDir?: string | undefined
  /** How long the server gets to stop after SIGTERM before everything left is SIGKILLed. Default 3 s. */
  readonly stopTimeout?: Duration.DurationInput | undefined
  /**
   * Where detached sandboxes keep their state files and logs. Default: `HF_SANDBOX_STATE_DIR`, else
   * `$XDG_STATE_HOME/hf-sandbox/local`, else `~/.local/state/hf-sandbox/local`.
   */
  readonly stateDir?: string | undefined
}

/**
 * Builds the provider from the platform services it needs. The state directory, when `stateDir` is not
 * given, is read through `Config` once, here (see {@link stateDirectory}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options?: Options
) => Effect.Effect<SandboxProvider.Service, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =
  provider.make

/**
 * The directory that holds detached local sandboxes' state files and logs: the `stateDir` option, else
 * `HF_SANDBOX_STATE_DIR`, else `$XDG_STATE_HOME/hf-sandbox/local`, else `~/.local/state/hf-sandbox/local`.
 * The variables are read through `Config` from the default `ConfigProvider` (the process environment);
 * {@link make}, {@link list}, {@link kill} and {@link logs} read them from the `ConfigProvider` of the
 * context they run in.
 *
 * @since 0.1.0
 * @category utils
 */
export const stateDirectory = (options: Pick<Options, "stateDir"> = {}): string =>
  Effect.runSync(LocalContext.resolveStateDir(options))

/**
 * A detached local sandbox as {@link list} reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DetachedInfo {
  readonly id: string
  /** The sandbox's pid (and process group): on Linux its server's supervisor, elsewhere the server. */
  readonly pid: number
  readonly port: number
  /** The sandbox's working directory (its home for relative paths). */
  readonly workdir: string
  /** When it was made, as an ISO 8601 string. */
  readonly createdAt: string
  /** Seconds without a request after which it stops itself (0: never). */
  readonly idleTimeoutSeconds: number
  readonly serverVersion: string
  /**
   * Its name (`Sandbox.make({ name })`), if it has one. A named sandbox is listed even when it is owned
   * (not detached), for as long as it runs.
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
  /** The labels it was made with (the `labels` option), if any. @since 0.2.0 */
  readonly labels?: Readonly<Record<string, string>> | undefined
}

/**
 * The live detached local sandboxes, oldest first. State left by sandboxes that are gone (idle timeout,
 * killed, machine restarted) is removed on the way, with their logs and working directories; so are the
 * working directories of owned sandboxes whose client and server both died without removing them
 * (in `tempDir`, default the OS temp directory; only those whose owner is provably gone).
 *
 * @since 0.1.0
 * @category operations
 */
export const list: (options?: Pick<Options, "stateDir" | "tempDir">) => Effect.Effect<ReadonlyArray<DetachedInfo>> =
  operations.list

/**
 * Stops a detached local sandbox by id: SIGTERM to its server (which stops everything it started), then,
 * after `stopTimeout`, SIGKILL to its process group and whatever is left; then its state file, log and
 * working directory are removed. A sandbox that had already stopped is only cleaned up. Fails when there
 * is no such sandbox.
 *
 * @since 0.1.0
 * @category operations
 */
export const kill: (
  id: string,
  options?: Pick<Options, "stateDir" | "stopTimeout">
) => Effect.Effect<void, StartError> = operations.kill

/**
 * A detached local sandbox's log by id (its server's diagnostics): the lines so far (the last `tail`),
 * then with `follow` new ones until it stops.
 *
 * @since 0.1.0
 * @category operations
 */
export const logs: (
  id: string,
  options?: SandboxProvider.LogOptions & Pick<Options, "stateDir">
) => Stream.Stream<string, StartError> = operations.logs

/**
 * Provides the local provider. Needs `CommandExecutor` and `FileSystem`, e.g. from
 * `NodeContext.layer` of `@effect/platform-node`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (
  options?: Options
) => Layer.Layer<SandboxProvider.SandboxProvider, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =
  provider.layer

/**
 * Provides the local provider with its options read through `Config` (`Config.Wrap`: each option a
 * `Config`), like `HfJobs.layerConfig`. The state directory, when not given, is read through `Config` in
 * any case: `HF_SANDBOX_STATE_DIR`, else `XDG_STATE_HOME` (see {@link stateDirectory}).
 *
 * ```ts
 * import * as Config from "effect/Config"
 * import * as LocalSandbox from "hf-sandbox/LocalSandbox"
 *
 * const Provider = LocalSandbox.layerConfig({ python: Config.string("MY_PYTHON") })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: (
  config?: Config.Config.Wrap<Options>
) => Layer.Layer<
  SandboxProvider.SandboxProvider,
  ConfigError.ConfigError,
  CommandExecutor.CommandExecutor | FileSystem.FileSystem
> = provider.layerConfig
