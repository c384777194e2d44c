/**
 * The working directories of owned local sandboxes, and what is left of them after a crash.
 *
 * An owned sandbox's directory is removed when its server ends (the server's supervisor removes it) and
 * again when its scope closes. Both can be skipped: a client and its server killed together (SIGKILL to
 * the whole process group, a machine that lost power). So beside each directory `hf-sandbox-XXXX` a
 * marker `hf-sandbox-XXXX.owner` says which process keeps it alive: the client until its server has
 * started, the server's supervisor after that. A directory whose marker names a process that is provably
 * gone (its pid is free, or now belongs to a process with another start time) is swept by the next
 * local `make` or `LocalSandbox.list`; a directory with no readable marker is never touched.
 *
 * A marker is an owner record like a detached sandbox's state file (both written by internal/local/owner),
 * but not one: it holds no address or token (an owned sandbox is reachable only by the process that made
 * it, so it has no id to be found by), its owner changes while the directory lives (client, then
 * supervisor), and it sits beside its directory, where a sweep of `tempDir` finds it, not in the state
 * directory.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import { namesIn } from "../dirNames.js"
import * as TransferJournal from "../files/journal.js"
import * as Owner from "./owner.js"

const PREFIX = "hf-sandbox-"
const SUFFIX = ".owner"

/** The marker file of a working directory. */
export const markerPath = (workdir: string): string => `${workdir}${SUFFIX}`

/** Records (atomically) that `pid` keeps `workdir` alive. */
export const claim = (workdir: string, pid: number): void => Owner.write(markerPath(workdir), Owner.of(pid))

/** Removes a marker (after its directory is gone). */
export const unclaim = (workdir: string): void => {
  fs.rmSync(markerPath(workdir), { force: true })
}

const read = (file: string): Owner.Owner | undefined => {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as Owner.Owner
    return Number.isInteger(parsed.pid) && parsed.pid > 1 ? parsed : undefined
  } catch {
    return undefined
  }
}

/**
 * Removes every `hf-sandbox-*` directory in `root` whose marker names a process that is gone, with its
 * marker. Returns the directories removed.
 */
export const sweep = (root: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.sync(() => {
    const removed: Array<string> = []
    for (const name of namesIn(root)) {
      if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue
      const marker = read(path.join(root, name))
      if (marker === undefined || Owner.isRunning(marker)) continue
      const workdir = path.join(root, name.slice(0, -SUFFIX.length))
      try {
        // The unfinished writes of a server that died with its supervisor (see internal/files/journal).
        TransferJournal.replay(workdir)
        fs.rmSync(workdir, { recursive: true, force: true })
        fs.rmSync(path.join(root, name), { force: true })
        removed.push(workdir)
      } catch {
        // Not ours to remove after all, or removed meanwhile: left for the next sweep.
      }
    }
    return removed
  })
