/**
 * Time bounds on one pass over a job's log stream. The Hub never says a log is complete: it replays
 * what there is and keeps the stream open (keep-alives only). How long the first line may take is a
 * different question from how long a pause between lines means "that was all": a Hub that is slow to
 * answer must not be taken for an empty log, so each has its own bound.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * Ends `self` quietly when its first element takes longer than `firstByte`, or when, after that,
 * `quiet()` gives a bound (it is asked before each element; `None`: wait as long as it takes) and the
 * next element takes longer. Failures pass through.
 */
export const boundedPass = <A, E, R>(
  self: Stream.Stream<A, E, R>,
  firstByte: Duration.Duration,
  quiet: () => Option.Option<Duration.Duration>
): Stream.Stream<A, E, R> =>
  Stream.unwrapScoped(
    Effect.map(Stream.toPull(self), (pull) => {
      let started = false
      const next = Effect.suspend(() => {
        const bound = started ? quiet() : Option.some(firstByte)
        const timed = Option.isNone(bound)
          ? pull
          : pull.pipe(Effect.timeoutFail({ duration: bound.value, onTimeout: () => Option.none<E>() }))
        return Effect.tap(timed, (chunk) =>
          Effect.sync(() => {
            if (chunk.length > 0) started = true
          })
        )
      })
      return Stream.repeatEffectChunkOption(next)
    })
  )
