/**
 * Process-exit safety for the Promise facade. Effect programs close their scopes themselves; a plain
 * `await` program has no scope, so the facade keeps the sandboxes it created in a registry and ends
 * them when the process is about to go away:
 *
 * - SIGINT / SIGTERM / SIGHUP: terminate every open sandbox (bounded), then die of the same signal. Only
 *   when nobody else listens for that signal: a program with its own handler has taken charge of its
 *   shutdown, and its sandboxes are left to it (and to `exit` below).
 * - `beforeExit` (the event loop ran dry): terminate every open sandbox; the process then exits with the
 *   exit code it already had.
 * - `exit` (synchronous only, e.g. after `process.exit()`): kill what can be killed synchronously — a
 *   local server by pid. An HF job cannot be cancelled synchronously; its idle timeout stops it.
 *
 * The process-wide listeners exist only while at least one sandbox is open.
 */

import { ChildProcess } from "node:child_process"

/** A sandbox the process must end before it exits. */
export interface Entry {
  /** Ends the sandbox (asynchronously, bounded by the caller). */
  readonly terminate: () => Promise<void>
  /** Ends what can be ended synchronously, for the `exit` event. */
  readonly killSync: () => void
}

const SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP"]

/** How long the termination of all open sandboxes may take before the process goes on exiting. */
export const TERMINATE_BOUND_MS = 10_000

const open = new Set<Entry>()
let installed = false
let cleaning: Promise<void> | undefined
let dying = false

/**
 * True once a signal is going to end the process: results of calls still in flight are then never
 * delivered (the process dies of the signal instead, as it would have without this library).
 */
export const isDying = (): boolean => dying

const terminateAll = (): Promise<void> =>
  (cleaning ??= (async () => {
    const entries = [...open]
    let timer: ReturnType<typeof setTimeout> | undefined
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, TERMINATE_BOUND_MS)
    })
    await Promise.race([Promise.allSettled(entries.map((entry) => entry.terminate())), bound])
    clearTimeout(timer)
    // Whatever did not end within the bound gets what can be done synchronously, and is let go.
    for (const entry of entries) {
      if (open.has(entry)) entry.killSync()
      open.delete(entry)
    }
    if (open.size === 0) uninstall()
  })().finally(() => {
    cleaning = undefined
  }))

const onSignal = (signal: NodeJS.Signals) => {
  // Ours is one of the listeners; any other means the program handles this signal itself.
  if (process.listenerCount(signal) > 1) return
  if (dying) {
    // A second signal while terminating: end at once.
    for (const entry of open) entry.killSync()
    open.clear()
    uninstall()
    process.kill(process.pid, signal)
    return
  }
  dying = true
  void terminateAll().finally(() => {
    uninstall()
    // With no listener left, the signal's default action ends the process with that signal.
    process.kill(process.pid, signal)
  })
}

const listeners = new Map(SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const))

const onBeforeExit = () => {
  if (open.size > 0) void terminateAll()
}

const onExit = () => {
  for (const entry of open) entry.killSync()
  open.clear()
}

function install() {
  if (installed) return
  installed = true
  for (const [signal, listener] of listeners) process.on(signal, listener)
  process.on("beforeExit", onBeforeExit)
  process.on("exit", onExit)
}

function uninstall() {
  if (!installed) return
  installed = false
  for (const [signal, listener] of listeners) process.removeListener(signal, listener)
  process.removeListener("beforeExit", onBeforeExit)
  process.removeListener("exit", onExit)
}

/** Adds a sandbox to the registry; the returned function removes it. */
export const register = (entry: Entry): (() => void) => {
  open.add(entry)
  install()
  return () => {
    if (open.delete(entry) && open.size === 0 && cleaning === undefined) uninstall()
  }
}

let inFlight = 0
let keepAliveTimer: ReturnType<typeof setInterval> | undefined

/**
 * Keeps the event loop alive while a call is in flight. Some waits have no handle of their own that
 * does (a local sandbox's log is fed from an unref'd pipe), and without one the loop could run dry
 * in the middle of a call.
 */
export const holdOpen = (): (() => void) => {
  if (inFlight++ === 0) keepAliveTimer = setInterval(() => {}, 2 ** 31 - 1)
  let released = false
  return () => {
    if (released) return
    released = true
    if (--inFlight === 0) clearInterval(keepAliveTimer)
  }
}

/**
 * Lets the event loop end while a local sandbox's server runs: its child process and pipes stop
 * counting as work, so a finished program reaches `beforeExit` (and terminates the sandbox) instead
 * of waiting forever. The platform's command executor does not expose the child, so it is found among
 * the process's active handles by pid; if it is not there (another runtime), nothing changes.
 */
export const unrefChild = (pid: number): void => {
  const handles = (process as unknown as { _getActiveHandles?: () => Array<unknown> })._getActiveHandles?.() ?? []
  for (const handle of handles) {
    if (handle instanceof ChildProcess && handle.pid === pid) {
      handle.unref()
      for (const stream of [handle.stdin, handle.stdout, handle.stderr]) {
        ;(stream as { unref?: () => void } | null)?.unref?.()
      }
    }
  }
}
