/**
 * The one way the local provider records who keeps something alive. A detached sandbox's state file
 * (internal/local/state) and an owned sandbox's directory marker (internal/local/ownedDirs) both name an
 * owner process; whoever finds a record whose owner is provably gone (its pid is free, or now belongs to
 * a process with another start time) removes what it guards. Both are written here, the same way.
 */
import * as fs from "node:fs"
import * as ProcessTree from "../processTree.js"

/** A process, told apart from a later one that got the same pid. */
export interface Owner {
  readonly pid: number
  /** The start time from /proc (Linux), so that a recycled pid is never taken for it. */
  readonly startTime: string | undefined
}

/** The start time of a process (field 22 of /proc/<pid>/stat), where there is a /proc. */
const processStartTime = (pid: number): string | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

/** The owner record of a live process `pid`. */
export const of = (pid: number): Owner => ({ pid, startTime: processStartTime(pid) })

/** Whether the owner still runs: its pid is alive and, where it can be told, the same process. */
export const isRunning = (owner: Owner): boolean =>
  ProcessTree.isAlive(owner.pid) && (owner.startTime === undefined || processStartTime(owner.pid) === owner.startTime)

/**
 * Writes a record as JSON, atomically (a reader sees the old one or the new one, never half of one), created
 * with mode 0600: never readable by anyone else, even briefly.
 */
export const write = (target: string, record: object): void => {
  const temp = `${target}.${process.pid}.tmp`
  fs.writeFileSync(temp, `${JSON.stringify(record)}\n`, { mode: 0o600, flag: "wx" })
  fs.renameSync(temp, target)
}
