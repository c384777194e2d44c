/**
 * A local sandbox's log, its server's stderr (the server's diagnostics): for a detached sandbox the file
 * `<stateDir>/<id>.log` it writes to, for an owned one the lines kept in memory as they arrive.
 */
import * as fs from "node:fs"
import type * as PlatformError from "@effect/platform/Error"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"

const STDERR_TAIL_BYTES = 8 * 1024
const LOG_LINES = 10_000

/** The last `bytes` of a file as text, for errors (only those bytes are read: a log can be long). */
export const tailOf = (file: string, bytes = STDERR_TAIL_BYTES): string => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const size = fs.fstatSync(fd).size
    const buffer = Buffer.alloc(Math.min(size, bytes))
    const read = fs.readSync(fd, buffer, 0, buffer.length, size - buffer.length)
    return buffer.subarray(0, read).toString("utf8")
  } catch {
    return ""
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * A sandbox's log: the lines so far (the last `tail` of them), then, with `follow`, new lines as the
 * server writes them, until it is gone.
 */
export const logLines = (
  file: string,
  options: { readonly follow?: boolean | undefined; readonly tail?: number | undefined },
  running: () => boolean
): Stream.Stream<string> =>
  Stream.suspend(() => {
    let data: Buffer
    try {
      data = fs.readFileSync(file)
    } catch {
      data = Buffer.alloc(0)
    }
    const text = data.toString("utf8")
    const complete = text.lastIndexOf("\n") + 1
    const lines = text.slice(0, complete).split("\n").slice(0, -1)
    const snapshot = options.tail === undefined ? lines : options.tail <= 0 ? [] : lines.slice(-options.tail)
    let position = Buffer.byteLength(text.slice(0, complete))
    if (!options.follow) {
      const rest = text.slice(complete)
      return Stream.fromIterable(rest === "" ? snapshot : [...snapshot, rest])
    }
    let partial = ""
    let finished = false
    const decoder = new TextDecoder()
    // One look at the file: new lines, the end (the server is gone), or nothing yet (looked at again on
    // the `Schedules.localLogPoll` schedule).
    const look: Effect.Effect<ReadonlyArray<string>, Option.Option<"nothing yet">> = Effect.suspend(() => {
      if (finished) return Effect.fail(Option.none())
      const alive = running()
      const chunk = readFrom(file, position)
      position += chunk.length
      const pieces = (partial + decoder.decode(chunk, { stream: alive })).split("\n")
      partial = pieces.pop() ?? ""
      if (chunk.length > 0) return Effect.succeed(pieces)
      if (!alive) {
        finished = true
        return Effect.succeed(partial === "" ? pieces : [...pieces, partial])
      }
      return Effect.fail(Option.some("nothing yet" as const))
    })
    const poll = Effect.flatMap(Schedules.Schedules, (schedules) =>
      Effect.retry(look, { schedule: schedules.localLogPoll, while: Option.isSome })
    ).pipe(Effect.mapError(() => Option.none<never>()))
    return Stream.fromIterable(snapshot).pipe(
      Stream.concat(Stream.repeatEffectOption(poll).pipe(Stream.flattenIterables))
    )
  })

const readFrom = (file: string, position: number): Buffer => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const size = fs.fstatSync(fd).size
    if (size <= position) return Buffer.alloc(0)
    const buffer = Buffer.alloc(Math.min(size - position, 1024 * 1024))
    const read = fs.readSync(fd, buffer, 0, buffer.length, position)
    return buffer.subarray(0, read)
  } catch {
    return Buffer.alloc(0)
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * The last `capacity` lines, oldest first. A full ring overwrites its oldest slot: dropping the first of
 * an array (`shift`) would move the other 9,999 lines for every new one.
 */
export const lineRing = (capacity: number) => {
  const slots: Array<string> = []
  // The oldest line's slot once the ring is full (0 until then).
  let oldest = 0
  return {
    push: (line: string) => {
      if (slots.length < capacity) {
        slots.push(line)
      } else {
        slots[oldest] = line
        oldest = (oldest + 1) % capacity
      }
    },
    /** The last `n` lines (every one when `n` is undefined; none when it is 0 or less), oldest first. */
    last: (n?: number): Array<string> => {
      const count = n === undefined ? slots.length : Math.min(Math.max(0, n), slots.length)
      const first = oldest + slots.length - count
      return Array.from({ length: count }, (_, i) => slots[(first + i) % slots.length]!)
    }
  }
}

/** Keeps the last few KiB the server wrote to stderr, for start errors. */
export const makeTail = () => {
  let text = ""
  return {
    push: (chunk: string) => {
      text = (text + chunk).slice(-STDERR_TAIL_BYTES)
    },
    get: () => text
  }
}

/** The last words of an owned server, for its errors. */
export type Tail = ReturnType<typeof makeTail>

/**
 * An owned sandbox's log: its server's stderr read for as long as the scope is open, the lines kept
 * (bounded) for `sb.logs()` and the last bytes in `tail`; followers get new lines live. `done` ends
 * when stderr does.
 */
export const captureStderr = (
  stderr: Stream.Stream<Uint8Array, PlatformError.PlatformError>,
  tail: Tail
): Effect.Effect<
  {
    readonly logs: (options: SandboxProvider.LogOptions) => Stream.Stream<string>
    readonly done: Fiber.RuntimeFiber<void>
  },
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const log = lineRing(LOG_LINES)
    const logHub = yield* PubSub.unbounded<string>()
    const stderrDone = yield* stderr.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.runForEach((line) =>
        Effect.suspend(() => {
          tail.push(`${line}\n`)
          log.push(line)
          return PubSub.publish(logHub, line)
        })
      ),
      Effect.ignore,
      Effect.forkScoped
    )
    const logs = (options: SandboxProvider.LogOptions): Stream.Stream<string> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const live = options.follow ? yield* PubSub.subscribe(logHub) : undefined
          // The last zero lines are none, as for a detached sandbox.
          const snapshot = log.last(options.tail)
          const rest =
            live === undefined
              ? Stream.empty
              : Stream.fromQueue(live).pipe(Stream.interruptWhen(Fiber.await(stderrDone)))
          return Stream.fromIterable(snapshot).pipe(Stream.concat(rest))
        })
      )
    return { logs, done: stderrDone }
  })
