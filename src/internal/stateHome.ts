/**
 * Where hf-sandbox keeps state on this machine: the detached local sandboxes' state files and logs, and
 * the CLI's cache of each token's namespace beside them. The environment is read through `Config`, so a
 * program (or the CLI, with the invocation's environment) chooses where it comes from.
 */
import * as os from "node:os"
import * as path from "node:path"
import * as Config from "effect/Config"
import * as Option from "effect/Option"

/** The variables the defaults depend on. */
export interface Env {
  readonly HF_SANDBOX_STATE_DIR?: string | undefined
  readonly XDG_STATE_HOME?: string | undefined
}

/**
 * Where detached local sandboxes keep their state: `HF_SANDBOX_STATE_DIR`, else
 * `$XDG_STATE_HOME/hf-sandbox/local`, else `~/.local/state/hf-sandbox/local`.
 */
export const localDirectory = (env: Env): string => {
  const explicit = env.HF_SANDBOX_STATE_DIR
  if (explicit !== undefined && explicit !== "") return path.resolve(explicit)
  const xdg = env.XDG_STATE_HOME
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".local", "state")
  return path.join(base, "hf-sandbox", "local")
}

/**
 * Where the CLI keeps the namespace of each token (see internal/hfJobs/namespaceCache): next to the local
 * sandboxes' state, `<HF_SANDBOX_STATE_DIR>/namespaces`, else `$XDG_STATE_HOME/hf-sandbox/namespaces`,
 * else `~/.local/state/hf-sandbox/namespaces`.
 */
export const namespaceCacheDirectory = (env: Env): string => {
  const explicit = env.HF_SANDBOX_STATE_DIR
  if (explicit !== undefined && explicit !== "") return path.join(path.resolve(explicit), "namespaces")
  return path.join(path.dirname(localDirectory(env)), "namespaces")
}

/** The variables of {@link Env}, read through `Config` (unset ones stay undefined). */
export const env: Config.Config<Env> = Config.all({
  HF_SANDBOX_STATE_DIR: Config.option(Config.string("HF_SANDBOX_STATE_DIR")).pipe(Config.map(Option.getOrUndefined)),
  XDG_STATE_HOME: Config.option(Config.string("XDG_STATE_HOME")).pipe(Config.map(Option.getOrUndefined))
})

/** {@link localDirectory} of the environment `Config` reads. */
export const localDirectoryConfig: Config.Config<string> = Config.map(env, localDirectory)
