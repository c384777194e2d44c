/**
 * Notes that the process received SIGINT or SIGTERM while a watch is open (for telemetry's
 * termination reason), without changing what the signal does.
 *
 * One listener per signal is installed while at least one watch is open (refcounted). It is
 * prepended, so it runs before the other listeners, and on a signal it marks every open watch and
 * removes itself at once — a watch, once marked, needs nothing more. The other listeners then see
 * the listener count they would have seen without it: a handler that acts only when it is alone
 * (e.g. the Promise facade's) still acts. When it was the only listener, it raises the signal again
 * after removing itself, since Node applies the default action (termination) only to a signal that
 * has no listener: the process ends as it would have without it.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

const SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM"]

interface Watch {
  signal: NodeJS.Signals | undefined
}

const watches = new Set<Watch>()
let installed = false

const onSignal = (signal: NodeJS.Signals) => {
  for (const watch of watches) watch.signal ??= signal
  const alone = process.listenerCount(signal) === 1
  uninstall()
  if (alone) process.kill(process.pid, signal)
}

const install = () => {
  if (installed) return
  installed = true
  for (const signal of SIGNALS) process.prependListener(signal, onSignal)
}

const uninstall = () => {
  if (!installed) return
  installed = false
  for (const signal of SIGNALS) process.removeListener(signal, onSignal)
}

/**
 * Watches for SIGINT/SIGTERM for as long as the scope is open. The result tells the first signal
 * received since the watch began, if any.
 */
export const watch: Effect.Effect<() => NodeJS.Signals | undefined, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    const entry: Watch = { signal: undefined }
    watches.add(entry)
    install()
    return entry
  }),
  (entry) =>
    Effect.sync(() => {
      watches.delete(entry)
      if (watches.size === 0) uninstall()
    })
).pipe(Effect.map((entry) => () => entry.signal))

/** Whether the listeners are installed (for tests). */
export const listening = (): boolean => installed
