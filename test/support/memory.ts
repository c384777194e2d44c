/**
 * Memory checks for the streaming suites: how much more memory this process holds while an effect runs.
 */
import * as Effect from "effect/Effect"

const gc = (globalThis as { gc?: () => void }).gc

/** Live memory: the JS heap plus array buffers, after a full collection when `global.gc` is exposed. */
export const retained = () => {
  gc?.()
  const m = process.memoryUsage()
  return gc ? m.heapUsed + m.arrayBuffers : m.rss
}

/**
 * Samples what this process holds every second while `effect` runs and yields the effect's value and the
 * largest growth seen. With `--expose-gc` (set in vitest.config.ts) each sample follows a full collection,
 * so the figure is what the code keeps alive, not garbage V8 has not collected yet; without it, RSS.
 */
export const peakRssGrowth = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const start = retained()
    let peak = start
    const timer = setInterval(() => {
      peak = Math.max(peak, retained())
    }, 1000)
    return effect.pipe(
      Effect.ensuring(Effect.sync(() => clearInterval(timer))),
      Effect.map((value) => ({ value, growth: Math.max(peak, retained()) - start }))
    )
  })
