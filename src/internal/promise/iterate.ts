/**
 * A Stream as an async iterator, for the Promise facade's `execStream`, `readStream`, `logs` and
 * `output`.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Shutdown from "../shutdown.js"
import { never, runExit, settle } from "./runtime.js"

/**
 * One iteration over a stream: the stream's scope and pull once it is opened, the chunk being handed
 * out, and the queue that keeps `next()` and `return()` calls in order.
 */
interface Iteration<A, E> {
  readonly stream: Stream.Stream<A, E>
  readonly signal: AbortSignal | undefined
  /** Aborted by a `return()` during a pull, to interrupt it. */
  readonly stop: AbortController
  /** What interrupts a pull: the caller's signal or `stop`. */
  readonly pullSignal: AbortSignal
  readonly onAbort: () => void
  scope: Scope.CloseableScope | undefined
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined
  buffer: ReadonlyArray<A>
  index: number
  finished: boolean
  pulling: boolean
  closed: Promise<void> | undefined
  queue: Promise<unknown>
}

/**
 * A Stream as an async iterator. The stream's resources live in a scope of their own, closed when the
 * stream ends, fails, the loop is left early (`return`) or the signal aborts — which is what stops the
 * remote work (an exec stream's command is killed when its request is cut).
 */
export const iterate = <A, E>(
  stream: Stream.Stream<A, E>,
  signal: AbortSignal | undefined
): AsyncIterableIterator<A> => {
  const stop = new AbortController()
  const self: Iteration<A, E> = {
    stream,
    signal,
    stop,
    pullSignal: signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]),
    // An abort between pulls closes at once; during a pull, the pull is interrupted and then closes.
    onAbort: () => {
      if (!self.pulling) void close(self)
    },
    scope: undefined,
    pull: undefined,
    buffer: [],
    index: 0,
    finished: false,
    pulling: false,
    closed: undefined,
    queue: Promise.resolve()
  }
  signal?.addEventListener("abort", self.onAbort, { once: true })
  const iterator: AsyncIterableIterator<A> = {
    next: () => enqueue(self, () => next(self)),
    return: () => {
      // A pull still in flight (a `return()` from outside the loop) is interrupted first.
      if (self.pulling) stop.abort()
      return enqueue(self, async () => {
        await close(self)
        return done<A>()
      })
    },
    [Symbol.asyncIterator]: () => iterator
  }
  return iterator
}

const close = <A, E>(self: Iteration<A, E>): Promise<void> => {
  self.finished = true
  self.buffer = []
  self.signal?.removeEventListener("abort", self.onAbort)
  self.closed ??=
    self.scope === undefined ? Promise.resolve() : runExit(Scope.close(self.scope, Exit.void)).then(() => undefined)
  return self.closed
}

const done = <A>(): IteratorResult<A> => ({ done: true, value: undefined })

/** The next chunk: the first pull opens the stream in a scope of its own. */
const pullChunk = async <A, E>(self: Iteration<A, E>): Promise<Exit.Exit<Chunk.Chunk<A>, Option.Option<E>>> => {
  self.pulling = true
  try {
    if (self.pull !== undefined) return await runExit(self.pull, self.pullSignal)
    const opened = Effect.runSync(Scope.make())
    self.scope = opened
    const made = await runExit(Stream.toPull(self.stream).pipe(Scope.extend(opened)), self.pullSignal)
    if (Exit.isFailure(made)) return Exit.failCause(made.cause)
    self.pull = made.value
    return await runExit(self.pull, self.pullSignal)
  } finally {
    self.pulling = false
  }
}

/** How a failed pull ends the iteration: done at the stream's end or after `return()`, else its error. */
const ended = async <A, E>(self: Iteration<A, E>, cause: Cause.Cause<Option.Option<E>>): Promise<IteratorResult<A>> => {
  await close(self)
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    // `None` is the end of the stream; `Some` its error.
    if (Option.isNone(failure.value)) return done()
    return settle(Exit.fail(failure.value.value))
  }
  if (self.stop.signal.aborted && !self.signal?.aborted) return done() // `return()` during a pull
  return settle(Exit.failCause(cause), self.signal)
}

const step = async <A, E>(self: Iteration<A, E>): Promise<IteratorResult<A>> => {
  for (;;) {
    if (self.signal?.aborted) {
      await close(self)
      return Shutdown.isDying() ? never() : Promise.reject(self.signal.reason)
    }
    if (self.index < self.buffer.length) return { done: false, value: self.buffer[self.index++] as A }
    if (self.finished) return done()
    const exit = await pullChunk(self)
    if (Exit.isFailure(exit)) return ended(self, exit.cause)
    self.buffer = Chunk.toReadonlyArray(exit.value)
    self.index = 0
  }
}

const enqueue = <A, E, T>(self: Iteration<A, E>, task: () => Promise<T>): Promise<T> => {
  const result = self.queue.then(task)
  self.queue = result.catch(() => undefined)
  return result
}

// Once a signal is ending the process, nothing more is delivered (see `settle`).
const next = async <A, E>(self: Iteration<A, E>): Promise<IteratorResult<A>> => {
  const result = await step(self)
  return Shutdown.isDying() ? never<IteratorResult<A>>() : result
}
