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

/** Reads up to `length` bytes into `buffer` from `offset`: how many came, 0 at the end of input. */
export type ReadInto<E> = (buffer: Uint8Array, offset: number, length: number) => Effect.Effect<number, E>

/** Opens a reader for the time of a scope (the stdin feed's). */
export type Open<E> = Effect.Effect<ReadInto<E>, never, Scope.Scope>

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
 * non-blocking by `process.stdin` works too), one read at a time and only when asked: what the pipe holds
 * beyond that stays in the pipe, as back-pressure. The handle's buffer for a read is chosen when the read
 * before it ends: the rest of the region that one was asked to fill, which is where the feed asks for the
 * next bytes while its part is not full, so they land in place; elsewhere (a new part, a flushed one)
 * they land in `scratch` or that rest, which nothing else uses until the feed has taken them, and are
 * copied from there.
 */
const fromSocket = <E>(fd: number, onError: (cause: unknown) => E): Open<E> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const scratch: Uint8Array = new Uint8Array(SOCKET_READ)
        const state = {
          /** Where the handle reads next. */
          into: scratch,
          /** What the last read brought (in the buffer it read into), from `start` to `end` not taken yet. */
          held: scratch,
          start: 0,
          end: 0,
          ended: false,
          failure: undefined as unknown,
          wake: undefined as (() => void) | undefined
        }
        const woken = () => {
          const wake = state.wake
          state.wake = undefined
          wake?.()
        }
        const socket = new net.Socket({
          fd,
          readable: true,
          writable: false,
          manualStart: true,
          onread: {
            buffer: () => state.into,
            callback: (n: number, read: Uint8Array) => {
              state.held = read
              state.start = 0
              state.end = n
              woken()
              return false // one read at a time: the next waits until it is asked for
            }
          }
        } as net.SocketConstructorOpts)
        socket.on("end", () => {
          state.ended = true
          woken()
        })
        socket.on("error", (error) => {
          state.failure = error
          woken()
        })
        return { socket, scratch, state }
      }),
      ({ socket }) => Effect.sync(() => socket.destroy())
    ),
    ({ socket, scratch, state }): ReadInto<E> => {
      const take = (buffer: Uint8Array, offset: number, length: number) => {
        const held = state.held
        const n = Math.min(length, state.end - state.start)
        if (held.buffer !== buffer.buffer || held.byteOffset + state.start !== buffer.byteOffset + offset) {
          buffer.set(held.subarray(state.start, state.start + n), offset)
        }
        state.start += n
        state.into = state.start < state.end || n === length ? scratch : buffer.subarray(offset + n, offset + length)
        return n
      }
      return (buffer, offset, length) =>
        Effect.suspend(() => {
          if (state.start < state.end) return Effect.succeed(take(buffer, offset, length))
          if (state.failure !== undefined) return Effect.fail(onError(state.failure))
          if (state.ended) return Effect.succeed(0)
          return Effect.async<number, E>((resume) => {
            state.wake = () =>
              resume(
                state.start < state.end
                  ? Effect.succeed(take(buffer, offset, length))
                  : state.failure !== undefined
                    ? Effect.fail(onError(state.failure))
                    : Effect.succeed(0)
              )
            socket.resume()
            // Interrupted: no read may land in a buffer the feed no longer lends.
            return Effect.sync(() => {
              state.wake = undefined
              socket.pause()
            })
          })
        })
    }
  )

/** A regular file (`< file`): read(2) on the thread pool, straight into the buffer, at its own position. */
const fromFile = <E>(fd: number, onError: (cause: unknown) => E): Open<E> =>
  Effect.as(
    Effect.addFinalizer(() => Effect.sync(() => (fd > 2 ? fs.close(fd, () => {}) : undefined))),
    (buffer: Uint8Array, offset: number, length: number) =>
      Effect.async<number, E>((resume) => {
        fs.read(fd, buffer, offset, length, null, (error, n) =>
          resume(error === null ? Effect.succeed(n) : Effect.fail(onError(error)))
        )
      })
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
