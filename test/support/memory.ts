/**
 * Memory checks for the streaming suites: how much more memory this process holds while an effect runs.
 *
 * After a full collection V8 frees the backing stores of dead ArrayBuffers on a background thread (its
 * array buffer sweeper), so `process.memoryUsage().arrayBuffers` read right after one `gc()` still counts
 * them until that thread has run. On a loaded machine it runs late: a 200 MiB stream whose client held
 * under 1 MiB was once measured at 98 MiB this way (instrumented again: 0.4–0.9 MiB live at every point,
 * while the reading right after one collection said up to 30 MiB). A second full collection first
 * finishes the sweep of the one before (V8 completes all sweeping before it marks), so a reading after two
 * collections counts exactly what is live then, with no wait and no dependence on the machine's load.
 */
import * as Effect from "effect/Effect"

const gc = (globalThis as { gc?: () => void }).gc

/**
 * Live memory: the JS heap plus array buffers, after two full collections when `global.gc` is exposed
 * (see the module's note), else RSS.
 */
const reading = () => {
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  return gc ? m.heapUsed + m.arrayBuffers : m.rss
}

/** What this process keeps alive now (see the module's note on why it takes two collections). */
export const retained: Effect.Effect<number> = Effect.sync(reading)

/**
 * Samples what this process holds about every second while `effect` runs and yields the effect's value
 * and the largest growth seen. With `--expose-gc` (set in vitest.config.ts) each sample follows full
 * collections, so the figure is what the code keeps alive, not garbage V8 has not collected yet; without
 * it, RSS.
 */
export const peakRssGrowth = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = reading()
    let peak = start
    const timer = setInterval(() => {
      peak = Math.max(peak, reading())
    }, 1000)
    const value = yield* effect.pipe(Effect.ensuring(Effect.sync(() => clearInterval(timer))))
    return { value, growth: Math.max(peak, reading()) - start }
  })
