import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/**
 * Fails with `onSilence` once `progress()` has not moved for `idle`; never succeeds. Raced against a
 * transfer, it bounds silence at no cost per chunk (a per-chunk timeout costs a fiber per pull).
 */
export const silenceBound = <E>(
  progress: () => number,
  idle: Duration.Duration,
  onSilence: () => E
): Effect.Effect<never, E> => {
  let seen = -1
  return Effect.suspend(() => {
    const now = progress()
    if (now === seen) return Effect.fail(onSilence())
    seen = now
    return Effect.void
  }).pipe(Effect.repeat(Schedule.spaced(idle)), Effect.zipRight(Effect.never))
}

/**
 * An exact silence bound: `bound` fails with `onSilence` once `idle` has passed (by the Clock) since
 * the last `touch()`, or since it was made; it never succeeds. Raced against a read that touches it on
 * every chunk, it fails when a per-read timeout would, at the cost of one sleep per `idle` rather than
 * two fibers per read. The reader's own time between reads counts as silence: for quick readers.
 */
export const silenceDeadline = <E>(
  idle: Duration.Duration,
  onSilence: () => E
): Effect.Effect<{ readonly touch: () => void; readonly bound: Effect.Effect<never, E> }> =>
  Effect.clockWith((clock) =>
    Effect.sync(() => {
      const idleMs = Duration.toMillis(idle)
      let last = clock.unsafeCurrentTimeMillis()
      const wait = Effect.suspend(() => {
        const silent = clock.unsafeCurrentTimeMillis() - last
        return silent >= idleMs ? Effect.fail(onSilence()) : Effect.sleep(idleMs - silent)
      })
      return {
        touch: () => {
          last = clock.unsafeCurrentTimeMillis()
        },
        bound: Effect.forever(wait)
      }
    })
  )
