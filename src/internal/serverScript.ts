/**
 * Where the in-sandbox server's source lives: the stdlib-only Python package `rpc-server/sbx_server`. The
 * providers run its `__main__.py` (`python3 -S <dir>/__main__.py`); `python3 -S <dir>` runs the same server
 * for a user. The path is the same from `src/internal/` and from the built `dist/internal/`, both two levels
 * below the package root.
 */

import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"

/** The package directory: its files are what a job gets, and `python3 -S <dir>` runs it by hand. */
export const serverScriptPath: string = fileURLToPath(new URL("../../rpc-server/sbx_server", import.meta.url))

/**
 * The package's `__main__.py`, which the local provider runs: the same server as the directory's, without
 * `runpy` (which Python imports to run a directory, with `importlib.util` and `contextlib`: some 5% of the
 * server's start).
 */
export const serverMainPath: string = join(serverScriptPath, "__main__.py")

/** The package's modules, file name → source, in name order (the package is flat: no subdirectories). */
export type ServerFiles = ReadonlyArray<readonly [name: string, source: string]>

/** Reads the package's `.py` files, which is all a job needs to run the server. */
export const readServerPackage = (
  fs: FileSystem.FileSystem,
  dir: string = serverScriptPath
): Effect.Effect<ServerFiles, PlatformError> =>
  fs.readDirectory(dir).pipe(
    Effect.map((names) => names.filter((name) => name.endsWith(".py")).sort()),
    Effect.flatMap((names) =>
      Effect.forEach(names, (name) =>
        Effect.map(fs.readFileString(`${dir}/${name}`), (source) => [name, source] as const)
      )
    )
  )
