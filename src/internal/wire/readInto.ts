/**
 * A stdin source that can also be read straight into the caller's buffer. The stdin feed fills its parts
 * from it in place: nothing is allocated or queued per read. Through `process.stdin` and a `Stream`, every
 * GiB of stdin was tens of thousands of fresh Buffers, each copied into a part and then collected, and
 * that per-chunk work was most of the CLI's CPU time. The reader rides on the Stream (which stays the
 * public form and works anywhere a Stream does): only the stdin feed looks for it.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as tty from "node:tty"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** What a fill brought: `n` bytes, and whether the input ended (nothing more will come). */
export interface Filled {
  readonly n: number
  readonly ended: boolean
}

/**
 * Reads straight into the caller's buffers. A fill reads on, one read after another, without returning
 * to the caller between them, until its region is full, the input ends, or {@link Reader.cut} stops it
 * (the source paused): a pipe gives at most 64 KiB per read, and when each read was an Effect of its own
 * (a fiber resumed, the handle paused and resumed), that per-read work was most of the CLI's CPU time.
 */
export interface Reader<E> {
  /**
   * Fills `buffer` from `offset` with up to `length` bytes. It returns short of `length` only when the
   * input ended or the fill was cut. Until the next fill starts, the reader may still write into the
   * part of this region it did not report (never into what it reported).
   */
  readonly fill: (buffer: Uint8Array, offset: number, length: number) => Effect.Effect<Filled, E>
  /** How many bytes the fill in progress holds so far; 0 when none is in progress. */
  readonly pending: () => number
  /** Ends the fill in progress with what it holds, when it holds something (the source paused). */
  readonly cut: () => void
}

/** Opens a reader for the time of a scope (the stdin feed's). */
export type Open<E> = Effect.Effect<Reader<E>, never, Scope.Scope>

const ReadIntoId: unique symbol = Symbol.for("hf-sandbox/internal/readInto")

interface WithReadInto<E> {
  readonly [ReadIntoId]: Open<E>
}

/** The reader a stream was given by {@link fromFd}, if any. */
export const readIntoOf = <E>(source: Stream.Stream<Uint8Array, E>): Open<E> | undefined =>
  (source as Partial<WithReadInto<E>>)[ReadIntoId]

/**
 * The most a read from a pipe or socket brings when it cannot land in place (then it is copied). A pipe
 * holds 64 KiB unless its writer enlarged it; a local socket gives a few hundred KiB when its writer is ahead.
 */
const SOCKET_READ = 1024 * 1024

/**
 * A pipe or socket read through its own handle (libuv reads it when it is readable, so a descriptor made
 * non-blocking by `process.stdin` works too). The handle reads only while a fill is in progress: what the
 * pipe holds beyond that stays in the pipe, as back-pressure. The handle's buffer for a read is chosen when
 * the read before it ends: the rest of the region being filled, so that the reads of a fill land in place.
 * Only the first read of a fill may land elsewhere (in `scratch`, or the unreported rest of the region
 * before), and is copied; what did not fit is held for the next fill, and the handle stays paused until
 * that has taken it.
 */
const fromSocket = <E>(fd: number, onError: (cause: unknown) => E): Open<E> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const scratch: Uint8Array = new Uint8Array(SOCKET_READ)
        const state = {
          /** Where the handle reads next. */
          into: scratch,
          /** The fill in progress: its region, and how much of it is filled. */
          region: undefined as Uint8Array | undefined,
          got: 0,
          /** Bytes a read brought beyond its fill's region (in the buffer it read into), from `start` to `end`. */
          held: scratch,
          start: 0,
          end: 0,
          ended: false,
          failure: undefined as unknown,
          /** Ends the fill in progress (its Effect resumes). */
          done: undefined as (() => void) | undefined
        }
        const finish = () => {
          const done = state.done
          state.done = undefined
          done?.()
        }
        const socket = new net.Socket({
          fd,
          readable: true,
          writable: false,
          manualStart: true,
          onread: {
            buffer: () => state.into,
            callback: (n: number, read: Uint8Array) => {
              const region = state.region
              if (region === undefined) {
                // Not expected (the handle reads only during a fill): keep the bytes for the next one.
                state.held = read
                state.start = 0
                state.end = n
                state.into = scratch
                return false
              }
              const space = region.length - state.got
              const inPlace = read.buffer === region.buffer && read.byteOffset === region.byteOffset + state.got
              const taken = Math.min(n, space)
              if (!inPlace) region.set(read.subarray(0, taken), state.got)
              state.got += taken
              if (taken < n) {
                state.held = read
                state.start = taken
                state.end = n
              }
              if (state.got < region.length) {
                state.into = region.subarray(state.got)
                return true
              }
              state.into = scratch
              finish()
              return false
            }
          }
        } as net.SocketConstructorOpts)
        socket.on("end", () => {
          state.ended = true
          finish()
        })
        socket.on("error", (error) => {
          state.failure = error
          finish()
        })
        return { socket, state, finish }
      }),
      ({ socket }) => Effect.sync(() => socket.destroy())
    ),
    ({ socket, state, finish }): Reader<E> => {
      /** Moves held bytes into `region` from `got`; how many. */
      const takeHeld = (region: Uint8Array) => {
        const n = Math.min(region.length, state.end - state.start)
        region.set(state.held.subarray(state.start, state.start + n))
        state.start += n
        return n
      }
      const fill: Reader<E>["fill"] = (buffer, offset, length) =>
        Effect.suspend(() => {
          const region = buffer.subarray(offset, offset + length)
          const first = state.start < state.end ? takeHeld(region) : 0
          if (first === length || (first > 0 && state.ended)) return Effect.succeed({ n: first, ended: false })
          if (state.failure !== undefined) return Effect.fail(onError(state.failure))
          if (state.ended) return Effect.succeed({ n: first, ended: true })
          return Effect.async<Filled, E>((resume) => {
            state.region = region
            state.got = first
            state.done = () => {
              const got = state.got
              state.region = undefined
              state.got = 0
              if (got === 0 && state.failure !== undefined) return resume(Effect.fail(onError(state.failure)))
              resume(Effect.succeed({ n: got, ended: got < length && state.ended }))
            }
            socket.resume()
            // Interrupted: no read may land in a buffer the feed no longer lends.
            return Effect.sync(() => {
              state.done = undefined
              state.region = undefined
              state.got = 0
              socket.pause()
            })
          })
        })
      return {
        fill,
        pending: () => (state.region === undefined ? 0 : state.got),
        cut: () => {
          if (state.region === undefined || state.got === 0) return
          socket.pause()
          finish()
        }
      }
    }
  )

/**
 * A regular file (`< file`): read(2) on the thread pool, straight into the buffer, at its own position.
 * A file does not pause, so a fill reads until its region is full or the file ends.
 */
const fromFile = <E>(fd: number, onError: (cause: unknown) => E): Open<E> =>
  Effect.as(
    Effect.addFinalizer(() => Effect.sync(() => (fd > 2 ? fs.close(fd, () => {}) : undefined))),
    {
      fill: (buffer: Uint8Array, offset: number, length: number) => {
        const from = (got: number): Effect.Effect<Filled, E> =>
          Effect.flatMap(
            Effect.async<number, E>((resume) => {
              fs.read(fd, buffer, offset + got, length - got, null, (error, n) =>
                resume(error === null ? Effect.succeed(n) : Effect.fail(onError(error)))
              )
            }),
            (n) =>
              n === 0
                ? Effect.succeed({ n: got, ended: true })
                : got + n === length
                  ? Effect.succeed({ n: length, ended: false })
                  : from(got + n)
          )
        return from(0)
      },
      pending: () => 0,
      cut: () => {}
    } satisfies Reader<E>
  )

/**
 * The bytes of file descriptor `fd` (this process's stdin: 0) as a Stream of `readable`'s chunks, which
 * the stdin feed reads into its parts instead when `fd` is a pipe, a socket or a regular file. A terminal
 * (its line editing and Ctrl-D belong to the Readable) and anything else stay a plain stream. The
 * descriptor is the stream's from then on: one above 2 is closed once read (libuv closes the one its
 * handle held, as a Readable with `autoClose` does); this process's stdin is left open.
 */
export const fromFd = <E>(
  fd: number,
  readable: () => NodeJS.ReadableStream,
  onError: (cause: unknown) => E
): Stream.Stream<Uint8Array, E> => {
  const stream = Stream.suspend(() => Stream.fromAsyncIterable(readable() as AsyncIterable<Uint8Array>, onError))
  let kind: fs.Stats | undefined
  try {
    kind = tty.isatty(fd) ? undefined : fs.fstatSync(fd)
  } catch {
    kind = undefined // not open: the stream reports it when read
  }
  if (kind === undefined) return stream
  if (kind.isFIFO() || kind.isSocket()) return Object.assign(stream, { [ReadIntoId]: fromSocket(fd, onError) })
  if (kind.isFile()) return Object.assign(stream, { [ReadIntoId]: fromFile(fd, onError) })
  return stream
}
