/**
 * Streamed stdin: a command's stdin pipe (`stdin_pipe`) fed through `POST /v1/processes/{id}/stdin` in
 * bounded requests, each placed by its byte offset (docs/protocol.md). A quick tunnel's edge delivers a
 * request body only once it is complete and refuses one over 100 MB, so a streamed body is not an option;
 * parts of a few MiB are, and their offsets make a retry after a dropped connection exact: the server
 * skips what it already wrote, and answers how far it got.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import { type OperationError, StdinError } from "../../SandboxError.js"
import type { WireClient } from "./client.js"
import * as ReadInto from "./readInto.js"

/** A string or bytes up to this size go inline in the JSON request (one request, and HF's form). */
export const INLINE_MAX = 1024 * 1024

/**
 * Bytes per stdin request: the most the server takes in one. Each request costs both ends a fixed amount
 * of work (measured with bench/stdin.ts: 4 MiB parts gave 510 MiB/s, 16 MiB parts 630), and the client
 * holds two parts of a stream at a time, whatever its size.
 */
export const PART_BYTES = Math.min(16 * 1024 * 1024, Protocol.STDIN_BODY_MAX)

/** When a source pauses this long, what it produced so far is sent without waiting for a whole part. */
const IDLE_FLUSH = "20 millis"

/** Where a feed that reads into its parts is: it reads on, its source ended, or the pipe closed first. */
type Reading = "more" | "ended" | "closed"

/** What stdin can be given as. */
export type Input<E> = string | Uint8Array | Stream.Stream<Uint8Array, E>

/** How a command's stdin goes: inline in its request, and/or from a source through the pipe. */
export interface Plan<E> {
  readonly inline: { readonly stdin?: string; readonly stdin_b64?: string }
  /** Set when the command needs `stdin_pipe`: the bytes to feed through it (then it is closed). */
  readonly source: Stream.Stream<Uint8Array, E> | undefined
}

const encoder = new TextEncoder()

/** Small inputs stay inline; a Stream, or a string or bytes over {@link INLINE_MAX}, go through the pipe. */
export const plan = <E>(stdin: Input<E> | undefined): Plan<E> => {
  if (stdin === undefined) return { inline: {}, source: undefined }
  if (typeof stdin === "string") {
    if (stdin.length * 3 <= INLINE_MAX) return { inline: { stdin }, source: undefined }
    const bytes = encoder.encode(stdin)
    return bytes.length <= INLINE_MAX
      ? { inline: { stdin }, source: undefined }
      : { inline: {}, source: Stream.succeed(bytes) }
  }
  if (stdin instanceof Uint8Array) {
    return stdin.length <= INLINE_MAX
      ? {
          inline: { stdin_b64: Buffer.from(stdin.buffer, stdin.byteOffset, stdin.length).toString("base64") },
          source: undefined
        }
      : { inline: {}, source: Stream.succeed(stdin) }
  }
  return { inline: {}, source: stdin }
}

/** Failures worth the same request again: the connection (or the edge in front of the server) failed. */
export const isTransient = (error: OperationError) =>
  error._tag === "ConnectionLostError" || error._tag === "RequestTimeoutError"

/** The stdin of one process, as the client writes it. Writes are serialized; offsets are tracked here. */
export interface Writer {
  /** Writes every byte of `data`; `StdinError("Closed")` when the pipe closed before all went in. */
  readonly write: (data: Uint8Array) => Effect.Effect<void, OperationError>
  /** Closes the pipe (the command sees end of input). Closing a closed stdin does nothing. */
  readonly close: Effect.Effect<void, OperationError>
  /**
   * Writes what `source` produces, pulled only as fast as the sandbox takes it, then closes the pipe.
   * Ends quietly, without reading the rest, when the pipe closes first (the command stopped reading).
   */
  readonly feed: <E>(source: Stream.Stream<Uint8Array, E>) => Effect.Effect<void, OperationError | E>
}

/** The stdin of one process as its writer knows it; changed as answers come. */
interface State {
  readonly wire: WireClient
  readonly id: string
  readonly retry: Schedule.Schedule<unknown, OperationError>
  /** How many bytes the pipe holds, once known. */
  offset: number | undefined
  closed: boolean
}

const send = (state: State, at: number, data: Uint8Array, eof: boolean) =>
  state.wire.writeStdin(state.id, at, data, eof).pipe(Effect.retry({ schedule: state.retry, while: isTransient }))

const currentOffset = (state: State) =>
  Effect.suspend(() =>
    state.offset !== undefined
      ? Effect.succeed(state.offset)
      : Effect.map(send(state, 0, new Uint8Array(0), false), (answer) => {
          state.closed = answer.closed
          state.offset = answer.offset
          return answer.offset
        })
  )

/**
 * Sends `data` as the stdin bytes from `base` until all of it is in the pipe (a partial answer — the
 * command reads slowly — sends the rest). False when the pipe closed first. `before` is the part before
 * it when that one is still in flight: the server holds this one until those bytes are written, and if
 * they did not come in time (`stdin_gap`), this part is sent again once `before` is done.
 */
const sendAt = (
  state: State,
  base: number,
  data: Uint8Array,
  eof: boolean,
  before?: Fiber.Fiber<boolean, OperationError>
): Effect.Effect<boolean, OperationError> => {
  const from = (sent: number, waited: boolean): Effect.Effect<boolean, OperationError> =>
    send(state, base + sent, data.subarray(sent), eof).pipe(
      Effect.map(Option.some),
      Effect.catchIf(
        (error) => before !== undefined && !waited && error._tag === "BadRequestError" && error.code === "stdin_gap",
        () => Effect.as(Fiber.join(before!), Option.none())
      ),
      Effect.flatMap((answered) => {
        if (Option.isNone(answered)) return state.closed ? Effect.succeed(false) : from(sent, true)
        const answer = answered.value
        state.offset = Math.max(state.offset ?? 0, answer.offset)
        const done = answer.offset - base
        if (answer.closed) {
          state.closed = true
          return Effect.succeed(done >= data.length && eof)
        }
        return done >= data.length ? Effect.succeed(true) : from(Math.max(0, done), waited)
      })
    )
  return from(0, false)
}

const sendPart = (state: State, data: Uint8Array, eof: boolean) =>
  Effect.flatMap(currentOffset(state), (base) => sendAt(state, base, data, eof))

const closedError = (state: State) => new StdinError({ id: state.id, reason: "Closed", written: state.offset })

const writeParts = (state: State, data: Uint8Array): Effect.Effect<void, OperationError> =>
  Effect.suspend(() => {
    if (state.closed) return Effect.fail(closedError(state))
    const part = data.subarray(0, PART_BYTES)
    return Effect.flatMap(sendPart(state, part, false), (whole) =>
      !whole
        ? Effect.fail(closedError(state))
        : data.length > PART_BYTES
          ? writeParts(state, data.subarray(PART_BYTES))
          : Effect.void
    )
  })

/**
 * One feed of a source into the pipe. Parts are filled in two buffers, used in turn: when a part is
 * submitted, the one before it is done (submit waits for it), so its buffer is free for the next. The
 * client's memory for the stream is these two parts, whatever the source's chunks and whatever the
 * stream's size.
 */
interface Feed {
  readonly state: State
  /** Parts in flight belong to this feed, not to the fiber that pulled the chunk that completed them. */
  readonly scope: Scope.Scope
  readonly buffers: readonly [Uint8Array, Uint8Array]
  /** The buffer being filled, and how far. */
  current: 0 | 1
  fill: number
  /** The stdin offset of the next part. */
  next: number
  /** The part being written in the sandbox while the next one is read and sent (two in flight at most). */
  inFlight: Fiber.Fiber<boolean, OperationError> | undefined
}

/** The part filled so far, handed over: filling goes on in the other buffer. */
const handOver = (feed: Feed): Uint8Array => {
  const part = feed.buffers[feed.current].subarray(0, feed.fill)
  feed.current = feed.current === 0 ? 1 : 0
  feed.fill = 0
  return part
}

/** Sends `part` after the one in flight; true while the pipe is open (as the part before it left it). */
const submit = (feed: Feed, part: Uint8Array, eof: boolean): Effect.Effect<boolean, OperationError> =>
  Effect.gen(function* () {
    const before = feed.inFlight
    const base = feed.next
    feed.next += part.length
    feed.inFlight = yield* Effect.forkIn(sendAt(feed.state, base, part, eof, before), feed.scope)
    return before === undefined ? true : yield* Fiber.join(before)
  })

/** Copies `chunk` into the parts, submitting each part it fills; false once the pipe closed. */
const take = (feed: Feed, chunk: Uint8Array): Effect.Effect<boolean, OperationError> =>
  Effect.suspend(() => {
    if (feed.state.closed) return Effect.succeed(false)
    const n = Math.min(chunk.length, PART_BYTES - feed.fill)
    feed.buffers[feed.current].set(chunk.subarray(0, n), feed.fill)
    feed.fill += n
    if (feed.fill < PART_BYTES) return Effect.succeed(true)
    return Effect.flatMap(submit(feed, handOver(feed), false), (open) =>
      open && n < chunk.length ? take(feed, chunk.subarray(n)) : Effect.succeed(open)
    )
  })

/** How a source was read into the parts: whether the pipe is still open, and the idle timer to stop. */
interface Drained {
  readonly open: boolean
  readonly timer: Fiber.RuntimeFiber<void, OperationError>
}

/**
 * A source that reads into a buffer fills the parts in place, a whole part per fill. The timer only cuts
 * a fill that stopped growing; the fill then returns short and its bytes are sent.
 */
const drainReader = <E>(feed: Feed, reader: ReadInto.Reader<E>): Effect.Effect<Drained, OperationError | E> =>
  Effect.gen(function* () {
    let seenAtTick = 0
    const idleCut = Effect.sync(() => {
      const held = reader.pending()
      if (held > 0 && held === seenAtTick) reader.cut()
      seenAtTick = held
    }).pipe(Effect.repeat(Schedule.spaced(IDLE_FLUSH)), Effect.asVoid)
    const timer = yield* Effect.forkIn(idleCut, feed.scope)
    const fillStep = Effect.suspend(() =>
      Effect.flatMap(reader.fill(feed.buffers[feed.current], feed.fill, PART_BYTES - feed.fill), ({ n, ended }) => {
        feed.fill += n
        if (ended) return Effect.succeed<Reading>("ended")
        // Full, or cut short because the source paused: either way, this part goes now.
        return Effect.map(submit(feed, handOver(feed), false), (more): Reading => (more ? "more" : "closed"))
      })
    )
    const open = yield* Effect.iterate("more" as Reading, {
      while: (state) => state === "more" && !feed.state.closed,
      body: () => fillStep
    }).pipe(Effect.map((state) => state !== "closed"))
    return { open, timer }
  })

/**
 * Chunks of a plain stream are copied into the parts. The timer takes turns with the consumer and skips
 * its tick while the consumer is busy (sending a full part is progress, not a pause).
 */
const drainStream = <E>(feed: Feed, source: Stream.Stream<Uint8Array, E>): Effect.Effect<Drained, OperationError | E> =>
  Effect.gen(function* () {
    const turn = yield* Effect.makeSemaphore(1)
    let seen = 0
    let seenAtTick = 0
    const idleFlush = turn
      .withPermitsIfAvailable(1)(
        Effect.suspend(() => {
          const idle = seen === seenAtTick
          seenAtTick = seen
          if (!idle || feed.fill === 0 || feed.state.closed) return Effect.void
          return Effect.asVoid(submit(feed, handOver(feed), false))
        })
      )
      .pipe(Effect.uninterruptible, Effect.repeat(Schedule.spaced(IDLE_FLUSH)), Effect.asVoid)
    const timer = yield* Effect.forkIn(idleFlush, feed.scope)
    const open = yield* source.pipe(
      Stream.runFoldWhileEffect(
        true,
        (open) => open,
        (_open, chunk: Uint8Array) => {
          if (chunk.length === 0) return Effect.succeed(true)
          seen += 1
          return turn.withPermits(1)(take(feed, chunk))
        }
      )
    )
    return { open, timer }
  })

/** Writes what `source` produces, then closes the pipe (see {@link Writer.feed}). */
const feedSource = <E>(state: State, source: Stream.Stream<Uint8Array, E>): Effect.Effect<void, OperationError | E> =>
  Effect.gen(function* () {
    const feed: Feed = {
      state,
      scope: yield* Effect.scope,
      buffers: [new Uint8Array(PART_BYTES), new Uint8Array(PART_BYTES)],
      current: 0,
      fill: 0,
      next: yield* currentOffset(state),
      inFlight: undefined
    }
    // A source that pauses (a person typing, `tail -f`) must not wait for a whole part: a timer sends
    // what the part holds once no byte came for IDLE_FLUSH.
    const openReader = ReadInto.readIntoOf(source)
    const { open, timer } =
      openReader !== undefined
        ? yield* Effect.flatMap(openReader, (reader) => drainReader(feed, reader))
        : yield* drainStream(feed, source)
    yield* Fiber.interrupt(timer)
    // A failed idle flush fails the feed as a part would.
    yield* Effect.flatMap(Fiber.poll(timer), (done) =>
      Option.isSome(done) && Exit.isFailure(done.value) && !Exit.isInterrupted(done.value)
        ? Effect.failCause(done.value.cause)
        : Effect.void
    )
    if (open && !state.closed) yield* submit(feed, feed.buffers[feed.current].subarray(0, feed.fill), true)
    if (feed.inFlight !== undefined) yield* Fiber.join(feed.inFlight)
  }).pipe(Effect.scoped)

/**
 * The writer of process `id`'s stdin. `offset` is how many bytes it already holds when known (0 for a
 * process just started with an empty pipe); unknown, the first write asks the server with an empty body
 * at offset 0 (a "retry" of nothing, which only answers the offset).
 */
export const makeWriter = (
  wire: WireClient,
  id: string,
  retry: Schedule.Schedule<unknown, OperationError>,
  known?: number
): Writer => {
  const state: State = { wire, id, retry, offset: known, closed: false }
  const lock = Effect.unsafeMakeSemaphore(1)
  return {
    write: (data) => lock.withPermits(1)(writeParts(state, data)),
    close: lock.withPermits(1)(
      Effect.suspend(() => (state.closed ? Effect.void : Effect.asVoid(sendPart(state, new Uint8Array(0), true))))
    ),
    feed: (source) => lock.withPermits(1)(feedSource(state, source))
  }
}
