/**
 * What the CLI prints, and where: results on stdout (plain, `-q` essential values only, or `--json`
 * documents), everything for people (hints, progress, errors) on stderr. Output is written with
 * backpressure, as bytes, so a command's output passes through unchanged.
 */
import * as Effect from "effect/Effect"
import { bytes as formatBytes } from "./parse.js"

/** The output mode of one invocation. */
export interface Mode {
  readonly json: boolean
  readonly quiet: boolean
}

/** The process's exit code, set by the command that ran. */
let exitCode = 0
export const setExitCode = (code: number) =>
  Effect.sync(() => {
    exitCode = code
  })
export const getExitCode = () => exitCode

// A closed stdout (`hf-sandbox ... | head -1`) must neither crash the CLI nor stall it: writes to it are
// dropped from then on, and the command still ends (and cleans up) normally.
const broken = new WeakSet<NodeJS.WritableStream>()
const waiting = new Map<NodeJS.WritableStream, Set<() => void>>()
let onStdoutClosed: Array<() => void> | undefined = []
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") return
    broken.add(stream)
    for (const wake of waiting.get(stream) ?? []) wake()
    waiting.delete(stream)
    if (stream === process.stdout && onStdoutClosed !== undefined) {
      const callbacks = onStdoutClosed
      onStdoutClosed = undefined
      for (const callback of callbacks) callback()
    }
  })
}

/**
 * Completes when whoever reads our stdout has gone (`… | head -1`): a command whose output nobody
 * reads any more is then stopped, as SIGPIPE would stop a local one.
 */
export const stdoutClosed: Effect.Effect<void> = Effect.async<void>((resume) => {
  if (onStdoutClosed === undefined) return resume(Effect.void)
  const callback = () => resume(Effect.void)
  onStdoutClosed.push(callback)
  return Effect.sync(() => {
    onStdoutClosed = onStdoutClosed?.filter((c) => c !== callback)
  })
})

/** Writes to a stream and waits until it can take more. */
export const write = (stream: NodeJS.WriteStream, data: string | Uint8Array): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (broken.has(stream)) return resume(Effect.void)
    if (stream.write(data)) return resume(Effect.void)
    let done = false
    const wake = () => {
      if (done) return
      done = true
      stream.off("drain", wake)
      waiting.get(stream)?.delete(wake)
      resume(Effect.void)
    }
    stream.once("drain", wake)
    const set = waiting.get(stream) ?? new Set()
    set.add(wake)
    waiting.set(stream, set)
  })

/** A line on stdout. */
export const line = (text: string) => write(process.stdout, `${text}\n`)

/** One JSON document (one line) on stdout. */
export const json = (value: unknown) => write(process.stdout, `${JSON.stringify(value)}\n`)

/** A note for people on stderr; silent with `-q` and `--json`. */
export const note = (mode: Mode, text: string) =>
  mode.quiet || mode.json ? Effect.void : write(process.stderr, `${text}\n`)

/** An error for people on stderr, always; with `--json` also as a document on stdout. */
export const error = (mode: Mode, tag: string, message: string) =>
  Effect.zipRight(
    write(process.stderr, `hf-sandbox: ${message}\n`),
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
    return write(process.stdout, [columns, ...rows].map((r) => `${render(r)}\n`).join(""))
  })

/** A progress bar on stderr, drawn only when stderr is a terminal (and not with `-q`/`--json`). */
export const progress = (mode: Mode, label: string) => {
  const enabled = process.stderr.isTTY === true && !mode.quiet && !mode.json
  let last = 0
  let drawn = false
  return {
    update: (done: number, total: number | undefined) => {
      if (!enabled) return
      const now = Date.now()
      if (now - last < 100 && done !== total) return
      last = now
      drawn = true
      const width = Math.max(10, Math.min(40, (process.stderr.columns ?? 80) - label.length - 40))
      const ratio = total ? Math.min(1, done / total) : 0
      const filled = Math.round(ratio * width)
      const bar = total ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.floor(ratio * 100)}%` : ""
      const amount = total ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done)
      process.stderr.write(`\r\x1b[K${label} ${bar} ${amount}`)
    },
    clear: Effect.sync(() => {
      if (drawn) process.stderr.write("\r\x1b[K")
    })
  }
}
