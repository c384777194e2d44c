/** A local sandbox's working directory: a fresh `hf-sandbox-` temp directory, its home for relative paths. */
import * as Effect from "effect/Effect"
import type { LocalContext } from "./context.js"
import { startError } from "./errors.js"

/** Creates a working directory, then runs `andThen` on it; a failure of either is the sandbox's start error. */
export const create = (ctx: LocalContext, andThen: (dir: string) => void = () => {}) =>
  ctx.fs.makeTempDirectory({ prefix: "hf-sandbox-", ...(ctx.tempDir ? { directory: ctx.tempDir } : {}) }).pipe(
    Effect.tap((dir) => Effect.try(() => andThen(dir))),
    Effect.mapError((e) => startError("SpawnFailed", `cannot create a working directory: ${e.message}`))
  )
