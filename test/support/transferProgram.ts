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
    const child = execFile(
      options.python ?? "python3",
      ["-S", program, JSON.stringify(spec)],
      // A guard against a hang (killed: no exit code, so the test fails naming it), not a measure of speed.
      { env: options.env, cwd: options.cwd, timeout: 50_000, killSignal: "SIGKILL" },
      (error, stdout) => {
        const lines = stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>)
        // `code` is the exit status only when a number (a spawn failure's is a name, like "ENOENT").
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resume(Effect.succeed({ lines, code }))
      }
    )
    // An interrupted test (its timeout) leaves no program running.
    return Effect.sync(() => child.kill("SIGKILL"))
  })
