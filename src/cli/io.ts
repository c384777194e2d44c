/**
 * Where one invocation of the CLI reads and writes: by default this process's stdout, stderr and
 * environment; given ones when the CLI runs in process (the test suite runs most commands that way,
 * without a Node start-up per command). Everything an invocation owns lives here, not in module state, so
 * two invocations in one process never see each other's `--` arguments or exit code.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/**
 * A stream the CLI writes to: `process.stdout`, or any Node writable (a pipe, a PassThrough).
 *
 * @since 0.2.0
 * @category cli
 */
export type Sink = NodeJS.WritableStream & { readonly isTTY?: boolean; readonly columns?: number }

/**
 * What an invocation is given.
 *
 * @since 0.2.0
 * @category cli
 */
export interface Streams {
  readonly stdout: Sink
  readonly stderr: Sink
  /** Read instead of `process.env`: for `-s NAME`, `NO_COLOR`, the state directory and every `Config`. */
  readonly env: Readonly<Record<string, string | undefined>>
}

/**
 * One invocation: its streams, what followed its first `--`, and the exit code its command set.
 *
 * @since 0.2.0
 * @category cli
 */
export interface Invocation extends Streams {
  readonly forced: ReadonlyArray<string> | undefined
  /** The command's path as typed (`["exec"]`, `["pool", "up"]`; empty when unknown), for its messages. */
  readonly command: ReadonlyArray<string>
  readonly exit: { code: number }
}

/**
 * The running invocation; outside `runCli` (a handler called directly) this process's own streams.
 *
 * @since 0.2.0
 * @category cli
 */
export class Io extends Context.Reference<Io>()("hf-sandbox/cli/Io", {
  defaultValue: (): Invocation => invocation(processStreams(), undefined)
}) {}

/**
 * This process's own stdout, stderr and environment.
 *
 * @since 0.2.0
 * @category cli
 */
export const processStreams = (): Streams => ({ stdout: process.stdout, stderr: process.stderr, env: process.env })

// A closed stdout (`hf-sandbox ... | head -1`) must neither crash the CLI nor stall it: writes to it are
// dropped from then on, and the command still ends (and cleans up) normally.
const watched = new WeakSet<NodeJS.WritableStream>()
const broken = new WeakSet<NodeJS.WritableStream>()
const waiting = new WeakMap<NodeJS.WritableStream, Set<() => void>>()
const onClosed = new WeakMap<NodeJS.WritableStream, Array<() => void>>()

const watch = (stream: NodeJS.WritableStream) => {
  if (watched.has(stream)) return
  watched.add(stream)
  onClosed.set(stream, [])
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") return
    broken.add(stream)
    for (const wake of waiting.get(stream) ?? []) wake()
    waiting.delete(stream)
    const callbacks = onClosed.get(stream) ?? []
    onClosed.set(stream, [])
    for (const callback of callbacks) callback()
  })
}

/**
 * A new invocation on the given streams, with what followed its first `--`.
 *
 * @since 0.2.0
 * @category cli
 */
export const invocation = (
  streams: Streams,
  forced: ReadonlyArray<string> | undefined,
  command: ReadonlyArray<string> = []
): Invocation => {
  watch(streams.stdout)
  watch(streams.stderr)
  return { ...streams, forced, command, exit: { code: 0 } }
}

/**
 * Writes to a stream and waits until it can take more; nothing once its reader has gone.
 *
 * @since 0.2.0
 * @category cli
 */
export const write = (stream: NodeJS.WritableStream, data: string | Uint8Array): Effect.Effect<void> =>
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
    // Interrupted while waiting: nothing of this write stays attached to the stream.
    return Effect.sync(() => {
      done = true
      stream.off("drain", wake)
      waiting.get(stream)?.delete(wake)
    })
  })

/**
 * Completes when whoever reads `stream` has gone (EPIPE).
 *
 * @since 0.2.0
 * @category cli
 */
export const closed = (stream: NodeJS.WritableStream): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (broken.has(stream)) return resume(Effect.void)
    const callback = () => resume(Effect.void)
    onClosed.get(stream)?.push(callback)
    return Effect.sync(() => {
      onClosed.set(
        stream,
        (onClosed.get(stream) ?? []).filter((c) => c !== callback)
      )
    })
  })
