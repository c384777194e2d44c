import type * as Duration from "effect/Duration"
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
