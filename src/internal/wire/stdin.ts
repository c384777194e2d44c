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
  let offset = known
  let closed = false
  const lock = Effect.unsafeMakeSemaphore(1)

  const send = (at: number, data: Uint8Array, eof: boolean) =>
    wire.writeStdin(id, at, data, eof).pipe(Effect.retry({ schedule: retry, while: isTransient }))

  const currentOffset = Effect.suspend(() =>
    offset !== undefined
      ? Effect.succeed(offset)
      : Effect.map(send(0, new Uint8Array(0), false), (answer) => {
          closed = answer.closed
          offset = answer.offset
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
    base: number,
    data: Uint8Array,
    eof: boolean,
    before?: Fiber.Fiber<boolean, OperationError>
  ): Effect.Effect<boolean, OperationError> => {
    const from = (sent: number, waited: boolean): Effect.Effect<boolean, OperationError> =>
      send(base + sent, data.subarray(sent), eof).pipe(
        Effect.map(Option.some),
        Effect.catchIf(
          (error) => before !== undefined && !waited && error._tag === "BadRequestError" && error.code === "stdin_gap",
          () => Effect.as(Fiber.join(before!), Option.none())
        ),
        Effect.flatMap((answered) => {
          if (Option.isNone(answered)) return closed ? Effect.succeed(false) : from(sent, true)
          const answer = answered.value
          offset = Math.max(offset ?? 0, answer.offset)
          const done = answer.offset - base
          if (answer.closed) {
            closed = true
            return Effect.succeed(done >= data.length && eof)
          }
          return done >= data.length ? Effect.succeed(true) : from(Math.max(0, done), waited)
        })
      )
    return from(0, false)
  }

  const sendPart = (data: Uint8Array, eof: boolean) => Effect.flatMap(currentOffset, (base) => sendAt(base, data, eof))

  const closedError = () => new StdinError({ id, reason: "Closed", written: offset })

  const writeParts = (data: Uint8Array): Effect.Effect<void, OperationError> =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      const part = data.subarray(0, PART_BYTES)
      return Effect.flatMap(sendPart(part, false), (whole) =>
        !whole
          ? Effect.fail(closedError())
          : data.length > PART_BYTES
            ? writeParts(data.subarray(PART_BYTES))
            : Effect.void
      )
    })

  const write: Writer["write"] = (data) => lock.withPermits(1)(writeParts(data))

  const close: Writer["close"] = lock.withPermits(1)(
    Effect.suspend(() => (closed ? Effect.void : Effect.asVoid(sendPart(new Uint8Array(0), true))))
  )

  const feed: Writer["feed"] = <E>(source: Stream.Stream<Uint8Array, E>) =>
    lock.withPermits(1)(
      Effect.gen(function* () {
        // Parts in flight belong to this feed, not to the fiber that pulled the chunk that completed them.
        const scope = yield* Effect.scope
        // The stdin offset of the next part, and the part in flight: while one part is written in the
        // sandbox, the next is read from the source and sent (two in flight at most).
        let next = yield* currentOffset
        let inFlight: Fiber.Fiber<boolean, OperationError> | undefined
        const submit = (part: Uint8Array, eof: boolean): Effect.Effect<boolean, OperationError> =>
          Effect.gen(function* () {
            const before = inFlight
            const base = next
            next += part.length
            inFlight = yield* Effect.forkIn(sendAt(base, part, eof, before), scope)
            return before === undefined ? true : yield* Fiber.join(before)
          })
        // Parts are filled in two buffers, used in turn: when a part is submitted, the one before it is
        // done (submit waits for it), so its buffer is free for the next. The client's memory for the
        // stream is these two parts, whatever the source's chunks and whatever the stream's size.
        const buffers = [new Uint8Array(PART_BYTES), new Uint8Array(PART_BYTES)]
        let current = 0
        let fill = 0
        const take = (chunk: Uint8Array): Effect.Effect<boolean, OperationError> =>
          Effect.suspend(() => {
            if (closed) return Effect.succeed(false)
            const n = Math.min(chunk.length, PART_BYTES - fill)
            buffers[current]!.set(chunk.subarray(0, n), fill)
            fill += n
            if (fill < PART_BYTES) return Effect.succeed(true)
            const part = buffers[current]!
            current = 1 - current
            fill = 0
            return Effect.flatMap(submit(part, false), (open) =>
              open && n < chunk.length ? take(chunk.subarray(n)) : Effect.succeed(open)
            )
          })
        // A source that pauses (a person typing, `tail -f`) must not wait for a whole part: a timer sends
        // what the part holds once no byte came for IDLE_FLUSH.
        const openReader = ReadInto.readIntoOf(source)
        let open: boolean
        let timer: Fiber.RuntimeFiber<void, OperationError>
        if (openReader !== undefined) {
          const reader = yield* openReader
          // A source that reads into a buffer fills the parts in place, a whole part per fill. The timer
          // only cuts a fill that stopped growing; the fill then returns short and its bytes are sent.
          let seenAtTick = 0
          const idleCut = Effect.sync(() => {
            const held = reader.pending()
            if (held > 0 && held === seenAtTick) reader.cut()
            seenAtTick = held
          }).pipe(Effect.repeat(Schedule.spaced(IDLE_FLUSH)), Effect.asVoid)
          timer = yield* Effect.forkIn(idleCut, scope)
          const fillStep = Effect.suspend(() =>
            Effect.flatMap(reader.fill(buffers[current]!, fill, PART_BYTES - fill), ({ n, ended }) => {
              fill += n
              if (ended) return Effect.succeed<Reading>("ended")
              // Full, or cut short because the source paused: either way, this part goes now.
              const part = buffers[current]!.subarray(0, fill)
              current = 1 - current
              fill = 0
              return Effect.map(submit(part, false), (more): Reading => (more ? "more" : "closed"))
            })
          )
          open = yield* Effect.iterate("more" as Reading, {
            while: (state) => state === "more" && !closed,
            body: () => fillStep
          }).pipe(Effect.map((state) => state !== "closed"))
        } else {
          // Chunks of a plain stream are copied into the parts. The timer takes turns with the consumer
          // and skips its tick while the consumer is busy (sending a full part is progress, not a pause).
          const turn = yield* Effect.makeSemaphore(1)
          let seen = 0
          let seenAtTick = 0
          const idleFlush = turn
            .withPermitsIfAvailable(1)(
              Effect.suspend(() => {
                const idle = seen === seenAtTick
                seenAtTick = seen
                if (!idle || fill === 0 || closed) return Effect.void
                const part = buffers[current]!.subarray(0, fill)
                current = 1 - current
                fill = 0
                return Effect.asVoid(submit(part, false))
              })
            )
            .pipe(Effect.uninterruptible, Effect.repeat(Schedule.spaced(IDLE_FLUSH)), Effect.asVoid)
          timer = yield* Effect.forkIn(idleFlush, scope)
          open = yield* source.pipe(
            Stream.runFoldWhileEffect(
              true,
              (open) => open,
              (_open, chunk: Uint8Array) => {
                if (chunk.length === 0) return Effect.succeed(true)
                seen += 1
                return turn.withPermits(1)(take(chunk))
              }
            )
          )
        }
        yield* Fiber.interrupt(timer)
        // A failed idle flush fails the feed as a part would.
        yield* Effect.flatMap(Fiber.poll(timer), (done) =>
          Option.isSome(done) && Exit.isFailure(done.value) && !Exit.isInterrupted(done.value)
            ? Effect.failCause(done.value.cause)
            : Effect.void
        )
        if (open && !closed) yield* submit(buffers[current]!.subarray(0, fill), true)
        if (inFlight !== undefined) yield* Fiber.join(inFlight)
      }).pipe(Effect.scoped)
    )

  return { write, close, feed }
}
