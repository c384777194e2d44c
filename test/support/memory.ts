/**
 * Memory checks for the streaming suites: how much more memory this process holds while an effect runs.
 *
 * After a full collection V8 frees the backing stores of dead ArrayBuffers on a background thread, so
 * `process.memoryUsage().arrayBuffers` read right after `gc()` still counts them until that thread has
 * run. On a loaded machine it runs late: a stream whose client held under 1 MiB was once measured at
 * 98 MiB this way (and reproduced at 26 MiB, settling to 0.3 MiB 200 ms later). So every figure here is
 * the smallest of a few readings taken after short waits: each reading is at least what is live, so the
 * smallest is too, and a client that really piles data up still fails.
 */
import * as Effect from "effect/Effect"

const gc = (globalThis as { gc?: () => void }).gc

/** Live memory: the JS heap plus array buffers, after a full collection when `global.gc` is exposed. */
const reading = () => {
  gc?.()
  const m = process.memoryUsage()
  return gc ? m.heapUsed + m.arrayBuffers : m.rss
}

/** Real timers, not the Effect clock: the suites that measure may run under a TestClock. */
const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Waits between readings, long enough in total for a late background sweep on a loaded machine. */
const SETTLE_MS = [0, 10, 40, 150]

const settle = async () => {
  let smallest = Number.POSITIVE_INFINITY
  for (const ms of SETTLE_MS) {
    if (ms > 0) await pause(ms)
    smallest = Math.min(smallest, reading())
  }
  return smallest
}

/** What this process keeps alive now (see the module's note on why it takes a few readings). */
export const retained: Effect.Effect<number> = Effect.promise(settle)

/**
 * Samples what this process holds about every second while `effect` runs and yields the effect's value
 * and the largest growth seen. With `--expose-gc` (set in vitest.config.ts) each sample follows a full
 * collection, so the figure is what the code keeps alive, not garbage V8 has not collected yet; without
 * it, RSS.
 */
export const peakRssGrowth = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = yield* retained
    let peak = start
    let sampling: Promise<void> | undefined
    const timer = setInterval(() => {
      sampling ??= settle().then((value) => {
        peak = Math.max(peak, value)
        sampling = undefined
      })
    }, 1000)
    const value = yield* effect.pipe(Effect.ensuring(Effect.sync(() => clearInterval(timer))))
    if (sampling !== undefined) yield* Effect.promise(() => sampling!)
    const end = yield* retained
    return { value, growth: Math.max(peak, end) - start }
  })
