/**
 * Plain-Promise process helpers for the suites that drive the server process directly (no Effect, no
 * library code): waiting with bounds, and "reaped" checks by pid.
 */
import * as fs from "node:fs"

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export const withTimeout = <A>(p: Promise<A>, ms: number): Promise<A | "timeout"> =>
  Promise.race([p, sleep(ms).then(() => "timeout" as const)])

/**
 * Polls `probe` until it gives a value (anything but `undefined` or `false`) and returns it. After `ms` it
 * throws, naming `what` was awaited (a function is called then, so the message shows the state at the
 * deadline, e.g. a process's output so far). A guard against a hang that fails with a message instead of
 * the test timeout, not a measure of speed: keep `ms` generous. An error thrown by `probe` fails at once.
 */
export const until = async <A>(
  what: string | (() => string),
  probe: () => A | undefined | false | Promise<A | undefined | false>,
  ms = 10_000,
  every = 25
): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) {
      throw new Error(`not within ${ms} ms: ${typeof what === "function" ? what() : what}`)
    }
    await sleep(every)
  }
}

/** Whether `pid` still exists. A zombie counts as alive here: the assertion is "reaped". */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
  return process.platform === "linux" ? fs.existsSync(`/proc/${pid}`) : true
}

/** Polls until every pid is gone; returns the ones still alive after `ms`. */
export const waitGone = async (pids: ReadonlyArray<number>, ms = 5_000): Promise<Array<number>> => {
  const deadline = Date.now() + ms
  for (;;) {
    const alive = pids.filter(isAlive)
    if (alive.length === 0 || Date.now() > deadline) return alive
    await sleep(25)
  }
}

/** The pids (Linux: from /proc) whose command line has `arg` as one of its words; elsewhere none. */
export const pidsWithArg = (arg: string): Array<number> => {
  if (process.platform !== "linux") return []
  const found: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(arg)) found.push(Number(entry))
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found.filter(isAlive)
}

/** Polls until no process runs with `arg` on its command line; returns those still running after `ms`. */
export const waitNoneWithArg = async (arg: string, ms = 5_000): Promise<Array<number>> => {
  const deadline = Date.now() + ms
  for (;;) {
    const alive = pidsWithArg(arg)
    if (alive.length === 0 || Date.now() > deadline) return alive
    await sleep(25)
  }
}
