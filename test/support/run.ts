/**
 * Runs a program to its end as a child process: its exit and its output. Asynchronous on purpose: a worker
 * blocked in `spawnSync` for a minute cannot answer vitest's own RPC, which a loaded machine turned into a
 * "Timeout calling onTaskUpdate", and a file's runs can go side by side.
 */
import { execFile } from "node:child_process"

/** How a program ended and what it printed. */
export interface Run {
  /** The exit status; `null` when a signal ended it (see `signal`) or it could not be started. */
  readonly status: number | null
  /** The signal that ended it (`timeout` and `signal` send `killSignal`); absent when none did. */
  readonly signal?: NodeJS.Signals
  readonly stdout: string
  readonly stderr: string
}

export interface RunOptions {
  readonly cwd?: string | undefined
  /** The whole environment (default: this process's). */
  readonly env?: NodeJS.ProcessEnv | undefined
  /** Written to its stdin, which is then closed (without it, stdin is left open, as `execFile` leaves it). */
  readonly input?: string | undefined
  /** Milliseconds after which it is killed: a guard against a hang, never a measure of speed. */
  readonly timeout?: number | undefined
  /** What a timeout or an abort sends (default SIGTERM). */
  readonly killSignal?: NodeJS.Signals | undefined
  /** Aborting it kills the program, e.g. Effect's signal for an interrupted test (`Effect.promise`). */
  readonly signal?: AbortSignal | undefined
  /** The user and group it runs as (this process's by default; another needs root). */
  readonly uid?: number | undefined
  readonly gid?: number | undefined
}

/** Runs `command` with `args` until it exits; never rejects: a failure to start is a `null` status. */
export const run = (command: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Run> =>
  new Promise((resolve) => {
    const { input, ...spawnOptions } = options
    const child = execFile(
      command,
      args,
      // Room for a type-check's or a test run's whole report: past maxBuffer the child would be killed.
      { ...spawnOptions, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        // `code` is the exit status only when a number (a spawn failure's is a name, like "ENOENT").
        const status = error === null ? 0 : typeof error.code === "number" ? error.code : null
        const signal = error?.signal ?? undefined
        resolve({ status, ...(signal !== undefined && signal !== null ? { signal } : {}), stdout, stderr })
      }
    )
    if (input !== undefined) {
      // A program that exits without reading it all closes the pipe: that is its answer, not a failure here.
      child.stdin?.on("error", () => {})
      child.stdin?.end(input)
    }
  })
