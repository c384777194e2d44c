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
 * A Stream as an async iterator. The stream's resources live in a scope of their own, closed when the
 * stream ends, fails, the loop is left early (`return`) or the signal aborts — which is what stops the
 * remote work (an exec stream's command is killed when its request is cut).
 */
export const iterate = <A, E>(
  stream: Stream.Stream<A, E>,
  signal: AbortSignal | undefined
): AsyncIterableIterator<A> => {
  const stop = new AbortController()
  const pullSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal])
  let scope: Scope.CloseableScope | undefined
  let pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined
  let buffer: ReadonlyArray<A> = []
  let index = 0
  let finished = false
  let pulling = false
  let closed: Promise<void> | undefined
  let queue: Promise<unknown> = Promise.resolve()

  const close = (): Promise<void> => {
    finished = true
    buffer = []
    signal?.removeEventListener("abort", onAbort)
    closed ??= scope === undefined ? Promise.resolve() : runExit(Scope.close(scope, Exit.void)).then(() => undefined)
    return closed
  }
  // An abort between pulls closes at once; during a pull, the pull is interrupted and then closes.
  function onAbort() {
    if (!pulling) void close()
  }
  signal?.addEventListener("abort", onAbort, { once: true })

  const done = (): IteratorResult<A> => ({ done: true, value: undefined })

  const step = async (): Promise<IteratorResult<A>> => {
    for (;;) {
      if (signal?.aborted) {
        await close()
        return Shutdown.isDying() ? never() : Promise.reject(signal.reason)
      }
      if (index < buffer.length) return { done: false, value: buffer[index++] as A }
      if (finished) return done()
      pulling = true
      let exit: Exit.Exit<Chunk.Chunk<A>, Option.Option<E>>
      try {
        if (pull === undefined) {
          const opened = Effect.runSync(Scope.make())
          scope = opened
          const made = await runExit(Stream.toPull(stream).pipe(Scope.extend(opened)), pullSignal)
          if (Exit.isFailure(made)) {
            exit = Exit.failCause(made.cause)
          } else {
            pull = made.value
            exit = await runExit(pull, pullSignal)
          }
        } else {
          exit = await runExit(pull, pullSignal)
        }
      } finally {
        pulling = false
      }
      if (Exit.isSuccess(exit)) {
        buffer = Chunk.toReadonlyArray(exit.value)
        index = 0
        continue
      }
      await close()
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        // `None` is the end of the stream; `Some` its error.
        if (Option.isNone(failure.value)) return done()
        return settle(Exit.fail(failure.value.value))
      }
      if (stop.signal.aborted && !signal?.aborted) return done() // `return()` during a pull
      return settle(Exit.failCause(exit.cause), signal)
    }
  }

  const enqueue = <T>(task: () => Promise<T>): Promise<T> => {
    const result = queue.then(task)
    queue = result.catch(() => undefined)
    return result
  }

  // Once a signal is ending the process, nothing more is delivered (see `settle`).
  const next = async () => {
    const result = await step()
    return Shutdown.isDying() ? never<IteratorResult<A>>() : result
  }

  const iterator: AsyncIterableIterator<A> = {
    next: () => enqueue(next),
    return: () => {
      // A pull still in flight (a `return()` from outside the loop) is interrupted first.
      if (pulling) stop.abort()
      return enqueue(async () => {
        await close()
        return done()
      })
    },
    [Symbol.asyncIterator]: () => iterator
  }
  return iterator
}
