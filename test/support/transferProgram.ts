/**
 * Runs one of the in-sandbox transfer programs (`rpc-server/hub_transfer.py`, `bucket_transfer.py`) directly
 * as a real process: its NDJSON lines on stdout and its exit code.
 */
import * as Effect from "effect/Effect"
import { run } from "./run.js"

/** Runs `python3 -S program '<spec>'` with `env` (and `cwd`); its lines, parsed, and its exit code. */
export const runTransferProgram = (
  program: string,
  spec: Record<string, unknown>,
  options: { readonly env: Record<string, string | undefined>; readonly cwd?: string; readonly python?: string }
) =>
  // An interrupted test (its timeout) aborts the run: no program is left running.
  Effect.promise((signal) =>
    run(options.python ?? "python3", ["-S", program, JSON.stringify(spec)], {
      env: options.env,
      cwd: options.cwd,
      // A guard against a hang (killed: no exit code, so the test fails naming it), not a measure of speed.
      timeout: 50_000,
      killSignal: "SIGKILL",
      signal
    })
  ).pipe(
    Effect.map(({ status, stdout }) => ({
      lines: stdout
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
      // A kill or a failure to start has no exit status.
      code: status ?? -1
    }))
  )
