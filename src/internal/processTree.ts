/**
 * Process-tree helpers for releasing a local sandbox. On Linux the tree is read from /proc, so that
 * processes which left their process group (setsid, daemons) are still found and killed; elsewhere
 * the helpers degrade to the process-group kill the caller does anyway.
 */
import * as fs from "node:fs"
import * as Effect from "effect/Effect"
import { namesIn } from "./dirNames.js"

const readStat = (pid: string): { readonly ppid: number; readonly state: string } | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name is in parentheses and may itself contain spaces or parentheses.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: rest[0] ?? "", ppid: Number(rest[1]) }
  } catch {
    return undefined
  }
}

/** Every live descendant of `root` (not `root` itself), from a snapshot of /proc. */
export const descendants = (root: number): Effect.Effect<ReadonlyArray<number>> =>
  Effect.sync(() => {
    const entries = namesIn("/proc").filter((name) => /^\d+$/.test(name))
    const children = new Map<number, Array<number>>()
    for (const name of entries) {
      const stat = readStat(name)
      if (stat === undefined) continue
      const list = children.get(stat.ppid) ?? []
      list.push(Number(name))
      children.set(stat.ppid, list)
    }
    const found: Array<number> = []
    const queue = [root]
    while (queue.length > 0) {
      const next = children.get(queue.pop()!) ?? []
      found.push(...next)
      queue.push(...next)
    }
    return found
  })

/** Whether `pid` names a running process (a zombie counts as gone: it runs nothing). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
  return readStat(String(pid))?.state !== "Z"
}

/** Sends `signal` to a pid or a process group (negative pid), ignoring ones that are already gone. */
export const signal = (pid: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(pid, sig)
  } catch {
    // Already gone (ESRCH) or not ours (EPERM): either way there is nothing left to do.
  }
}
