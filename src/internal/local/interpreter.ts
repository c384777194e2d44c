/**
 * The Python interpreter a local server runs with. `python3` on PATH is often a shim (pyenv, asdf) that
 * costs tens of milliseconds per start, so the real interpreter is looked up once per PATH and reused; if
 * the lookup fails, `python` is spawned as given and the spawn reports the problem.
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Effect from "effect/Effect"

/** The interpreter `python` names on a PATH (`undefined`: this process's), as one lookup. */
const lookup = (executor: CommandExecutor.CommandExecutor, python: string, path: string | undefined) =>
  executor
    .string(
      Command.make(python, "-S", "-c", "import sys; print(sys.executable)").pipe(
        Command.env(path === undefined ? {} : { PATH: path })
      )
    )
    .pipe(
      Effect.map((out) => out.trim() || python),
      Effect.timeout("10 seconds"),
      Effect.orElseSucceed(() => python)
    )

/**
 * The lookup of `python` per PATH, each done once. A lookup runs to its end even when the start that
 * asked for it is interrupted, so that every later start finds its answer.
 */
export const make = (
  executor: CommandExecutor.CommandExecutor,
  python: string
): Effect.Effect<(path: string | undefined) => Effect.Effect<string>> =>
  Effect.cachedFunction((path: string | undefined) => Effect.uninterruptible(lookup(executor, python, path)))
