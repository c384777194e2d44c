/**
 * Preloaded (`node --import tsx --import ./test/support/stretchTimers.ts …`) into a child program whose
 * test must show that the program never waits for a timer of 2 s or more, with no clock in the
 * assertion: every such timer lasts a thousand times longer here, so a program that waited for one
 * would not end within its test's bound, however loaded the machine. Shorter timers are untouched.
 */
const LONG_MS = 2_000
const STRETCH = 1_000
/** Node runs a longer delay after 1 ms. */
const MAX_MS = 2 ** 31 - 1

const original = globalThis.setTimeout
globalThis.setTimeout = Object.assign(
  (handler: (...args: Array<unknown>) => void, ms?: number, ...args: Array<unknown>) =>
    original(handler, typeof ms === "number" && ms >= LONG_MS ? Math.min(ms * STRETCH, MAX_MS) : ms, ...args),
  original
) as typeof setTimeout

export {}
