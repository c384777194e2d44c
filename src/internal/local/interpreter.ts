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
 * The lookup of `python` per PATH, each done once (concurrent starts share it). It runs in a fiber of its
 * own that no start owns: a start that is interrupted stops waiting for it, and the lookup goes on (to
 * its answer or its timeout) for the next start. Run in the start's fiber, or in a fiber of
 * `cachedFunction`'s that is the start's child, it would be interrupted with the first start to ask,
 * and the interruption kept for good would end every later start. Making the fiber cannot be
 * interrupted, so the cache never holds an interruption.
 */
export const make = (
  executor: CommandExecutor.CommandExecutor,
  python: string
): Effect.Effect<(path: string | undefined) => Effect.Effect<string>> =>
  Effect.map(
    Effect.cachedFunction((path: string | undefined) =>
      // Interruptible inside: its timeout must be able to end a lookup that hangs.
      Effect.forkDaemon(Effect.interruptible(lookup(executor, python, path)))
    ),
    (lookups) => (path) => Effect.flatMap(Effect.uninterruptible(lookups(path)), (fiber) => Effect.flatten(fiber.await))
  )
