/**
 * What the CLI prints, and where: results on stdout (plain, `-q` essential values only, or `--json`
 * documents), everything for people (hints, progress, errors) on stderr. Output is written with
 * backpressure, as bytes, so a command's output passes through unchanged.
 */
import * as Effect from "effect/Effect"
import * as Io from "./io.js"
import { bytes as formatBytes } from "./parse.js"

/** The output mode of one invocation. */
export interface Mode {
  readonly json: boolean
  readonly quiet: boolean
}

/** Sets the exit code of the running invocation (the command's own, or 2 for a usage mistake, …). */
export const setExitCode = (code: number) =>
  Effect.map(Io.Io, (io) => {
    io.exit.code = code
  })

/** The running invocation's stdout or stderr. */
const sink = (name: "stdout" | "stderr") => Effect.map(Io.Io, (io) => io[name])

/**
 * Completes when whoever reads our stdout has gone (`… | head -1`): a command whose output nobody
 * reads any more is then stopped, as SIGPIPE would stop a local one.
 */
export const stdoutClosed: Effect.Effect<void> = Effect.flatMap(sink("stdout"), Io.closed)

/** Writes to our stdout or stderr and waits until it can take more. */
export const write = (stream: "stdout" | "stderr", data: string | Uint8Array): Effect.Effect<void> =>
  Effect.flatMap(sink(stream), (s) => Io.write(s, data))

/** A line on stdout. */
export const line = (text: string) => write("stdout", `${text}\n`)

/** One JSON document (one line) on stdout. */
export const json = (value: unknown) => write("stdout", `${JSON.stringify(value)}\n`)

/** A note for people on stderr; silent with `-q` and `--json`. */
export const note = (mode: Mode, text: string) => (mode.quiet || mode.json ? Effect.void : write("stderr", `${text}\n`))

/** An error for people on stderr, always; with `--json` also as a document on stdout. */
export const error = (mode: Mode, tag: string, message: string) =>
  Effect.zipRight(
    write("stderr", `hf-sandbox: ${message}\n`),
    mode.json ? json({ error: { type: tag, message } }) : Effect.void
  )

/** Rows as an aligned table with a header. */
export const table = (columns: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  Effect.suspend(() => {
    const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? "").length)))
    const render = (cells: ReadonlyArray<string>) =>
      cells
        .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd()
    return write("stdout", [columns, ...rows].map((r) => `${render(r)}\n`).join(""))
  })

/** A progress bar on stderr, drawn only when stderr is a terminal (and not with `-q`/`--json`). */
export const progress = (mode: Mode, label: string) =>
  Effect.map(sink("stderr"), (stderr) => {
    const enabled = stderr.isTTY === true && !mode.quiet && !mode.json
    let last = 0
    let drawn = false
    return {
      update: (done: number, total: number | undefined) => {
        if (!enabled) return
        const now = Date.now()
        if (now - last < 100 && done !== total) return
        last = now
        drawn = true
        const width = Math.max(10, Math.min(40, (stderr.columns ?? 80) - label.length - 40))
        const ratio = total ? Math.min(1, done / total) : 0
        const filled = Math.round(ratio * width)
        const bar = total ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.floor(ratio * 100)}%` : ""
        const amount = total ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done)
        stderr.write(`\r\x1b[K${label} ${bar} ${amount}`)
      },
      clear: Effect.sync(() => {
        if (drawn) stderr.write("\r\x1b[K")
      })
    }
  })
