/**
 * Silence bounds: a transfer or a stream fails once nothing has come (or gone) for `idle`, by the
 * Clock. A per-read timeout would do it too, at the cost of two fibers and a timer on every read; these
 * watch from one fiber per transfer, which sleeps about once per `idle`, and cost a number set per read.
 */
import type * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * Fails with `onSilence` once the wait `waitingSince()` reports (the Clock's time when it began, in ms;
 * `undefined` while nothing is awaited) has lasted `idle`; never succeeds. It sleeps to the earliest
 * moment that could be too late, so a wait is caught as soon as it is `idle` long.
 */
const silenceWatch = <E>(
  idle: Duration.Duration,
  waitingSince: () => number | undefined,
  onSilence: () => E
): Effect.Effect<never, E> =>
  Effect.clockWith((clock) => {
    const idleMs = Duration.toMillis(idle)
    const check = Effect.suspend(() => {
      const since = waitingSince()
      if (since === undefined) return Effect.sleep(idle)
      const waited = clock.unsafeCurrentTimeMillis() - since
      return waited >= idleMs ? Effect.fail(onSilence()) : Effect.sleep(idleMs - waited)
    })
    return Effect.forever(check)
  })

/**
 * Fails with `onSilence` once `progress()` has not moved for `idle`, as seen every `idle`; never
 * succeeds. Raced against a transfer that counts its chunks.
 */
export const silenceBound = <E>(
  progress: () => number,
  idle: Duration.Duration,
  onSilence: () => E
): Effect.Effect<never, E> =>
  Effect.clockWith((clock) =>
    Effect.suspend(() => {
      let seen = progress()
      let since = clock.unsafeCurrentTimeMillis()
      return silenceWatch(
        idle,
        () => {
          const now = progress()
          if (now !== seen) {
            seen = now
            since = clock.unsafeCurrentTimeMillis()
          }
          return since
        },
        onSilence
      )
    })
  )

type Pulled<A, E> = Exit.Exit<Chunk.Chunk<A>, Option.Option<E>>

/**
 * Reads `pull` (a stream's, see `Stream.toPull`) to its end in the calling fiber, each chunk handed to
 * `onChunk`; fails with `onSilence` once one read has waited `idle`, as {@link boundSilence} does. For a
 * reader that folds the chunks: no fiber hands them over, and `onChunk`'s time does not count.
 */
export const drainBounded = <A, E, E2, E3>(
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>,
  idle: Duration.Duration,
  onSilence: () => E2,
  onChunk: (chunk: Chunk.Chunk<A>) => Effect.Effect<void, E3>
): Effect.Effect<void, E | E2 | E3> =>
  Effect.clockWith((clock) => {
    let since: number | undefined
    const read: Effect.Effect<void, E | E3> = Effect.suspend(() => {
      since = clock.unsafeCurrentTimeMillis()
      return Effect.matchEffect(pull, {
        onFailure: (error) => (Option.isSome(error) ? Effect.fail(error.value) : Effect.void),
        onSuccess: (chunk) => {
          since = undefined
          return Effect.zipRight(onChunk(chunk), read)
        }
      })
    })
    return Effect.raceFirst(
      read,
      silenceWatch(idle, () => since, onSilence)
    )
  })

/**
 * `self`, failing with `onSilence` once one read has waited `idle` for its next chunk: the time the
 * consumer spends between reads does not count, as with `Stream.timeoutFail`. The reads run in one
 * fiber of the stream's own, which hands each chunk to the consumer, so that the silence fiber can end a
 * read that never returns without a race (two fibers) per read; both end with the stream, however it
 * ends. Nothing is read ahead of the consumer.
 */
export const boundSilence =
  <E2>(idle: Duration.Duration, onSilence: () => E2) =>
  <A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E | E2, R> =>
    Stream.fromPull(
      Effect.gen(function* () {
        const pull = yield* Stream.toPull(self)
        const clock = yield* Effect.clock
        /** The consumer's read, waiting for a chunk. */
        let reader: ((pulled: Pulled<A, E | E2>) => void) | undefined
        /** A read's outcome that no read waits for any more (it was interrupted). */
        let unclaimed: Pulled<A, E | E2> | undefined
        /** A read was asked for and has not returned yet. */
        let requested = false
        /** Wakes the reading fiber for the next read; set while it waits for one. */
        let wake: ((go: Effect.Effect<void>) => void) | undefined
        /** When the outstanding read began: what the silence fiber watches. */
        let since: number | undefined
        const deliver = (pulled: Pulled<A, E | E2>) => {
          const waiting = reader
          reader = undefined
          if (waiting !== undefined) waiting(pulled)
          else unclaimed = pulled
        }
        const settle = (pulled: Pulled<A, E>) => {
          since = undefined
          requested = false
          deliver(pulled)
        }
        const nextRead = Effect.async<void>((resume) => {
          if (requested) resume(Effect.void)
          else wake = resume
        })
        yield* nextRead.pipe(
          Effect.zipRight(
            Effect.suspend(() => {
              since = clock.unsafeCurrentTimeMillis()
              return Effect.exit(pull)
            })
          ),
          Effect.map(settle),
          Effect.forever,
          Effect.forkScoped
        )
        yield* silenceWatch(idle, () => since, onSilence).pipe(
          Effect.catchAll((error) => Effect.sync(() => deliver(Exit.fail(Option.some(error))))),
          Effect.forkScoped
        )
        return Effect.async<Chunk.Chunk<A>, Option.Option<E | E2>>((resume) => {
          if (unclaimed !== undefined) {
            const pulled = unclaimed
            unclaimed = undefined
            return resume(pulled)
          }
          reader = resume
          // A read still under way (its reader was interrupted) brings this one's chunk.
          if (!requested) {
            requested = true
            const go = wake
            wake = undefined
            if (go !== undefined) go(Effect.void)
          }
          return Effect.sync(() => {
            reader = undefined
          })
        })
      })
    )
