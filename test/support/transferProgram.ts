/**
 * Runs one of the in-sandbox transfer programs (`rpc-server/hub_transfer.py`, `bucket_transfer.py`) directly
 * as a real process: its NDJSON lines on stdout and its exit code.
 */
import { execFile } from "node:child_process"
import * as Effect from "effect/Effect"

/** Runs `python3 -S program '<spec>'` with `env` (and `cwd`); its lines, parsed, and its exit code. */
export const runTransferProgram = (
  program: string,
  spec: Record<string, unknown>,
  options: { readonly env: Record<string, string | undefined>; readonly cwd?: string; readonly python?: string }
) =>
  Effect.async<{ lines: Array<Record<string, unknown>>; code: number }>((resume) => {
    execFile(
      options.python ?? "python3",
      ["-S", program, JSON.stringify(spec)],
      { env: options.env, cwd: options.cwd },
      (error, stdout) => {
        const lines = stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>)
        resume(Effect.succeed({ lines, code: error === null ? 0 : ((error.code as number | undefined) ?? -1) }))
      }
    )
  })
