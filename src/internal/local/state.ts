/**
 * Detached local sandboxes' state files (stopping one: internal/local/stop; its log: internal/local/logs).
 *
 * A detached local sandbox is a server in a session of its own that outlives the process that made it.
 * What another process needs to reach it (id, pid, the server's own pid, port, token, working
 * directory) is kept in `<stateDir>/<id>.json`, readable by the user only (the directory is 0700, the
 * file 0600), and its stderr goes to `<stateDir>/<id>.log`. A state file whose server is gone is stale:
 * whoever finds it removes it, with the log and the working directory.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { namesIn } from "../dirNames.js"
import * as TransferJournal from "../files/journal.js"
import * as Owner from "./owner.js"

/**
 * What a state file holds: its owner is the server (see internal/local/owner). The token is the sandbox
 * token: the file is the user's alone.
 */
export interface State extends Owner.Owner {
  readonly id: string
  readonly port: number
  readonly token: string
  readonly workdir: string
  readonly python: string
  readonly serverVersion: string
  readonly createdAtMs: number
  /** Seconds without a request after which the server stops itself (0: never). */
  readonly idleTimeoutSeconds: number
  /** Its name (`Sandbox.make({ name })`), unique among the live sandboxes of the directory (internal/local/names). */
  readonly name?: string | undefined
  /** The labels it was made with (HF Jobs' `labels` option), for `list`/`sweep` filters. */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /**
   * False for a named owned sandbox's file: its server ends with its maker's scope, whoever attaches.
   * Absent in the files of detached sandboxes (the only ones that had files before names).
   */
  readonly detached?: false | undefined
  /**
   * The serving process itself (on Linux the supervisor's child; elsewhere `pid` again), with its start
   * time: a lost request asks whether it still runs before waiting for the news of its exit. Absent in
   * files written before it was recorded: such a sandbox waits for that news as it did.
   */
  readonly serverPid?: number | undefined
  readonly serverStartTime?: string | undefined
}

/** What a started server's state record is made of, owned or detached alike. */
export interface Started {
  readonly id: string
  /** The server (on Linux its supervisor), as it was when it started. */
  readonly server: Owner.Owner
  /** The serving process itself, from its listening line (see `State.serverPid`). */
  readonly serverPid: number
  readonly port: number
  readonly token: string
  readonly workdir: string
  readonly python: string
  readonly serverVersion: string
  readonly idleTimeout: Duration.Duration | undefined
  readonly labels: Readonly<Record<string, string>> | undefined
  /** False for an owned sandbox (see `State.detached`). */
  readonly detached: boolean
}

/** The state record of a server started now (its name, if any, is added as it is claimed: ./names). */
export const record = (started: Started): State => ({
  ...started.server,
  id: started.id,
  port: started.port,
  token: started.token,
  workdir: started.workdir,
  python: started.python,
  serverVersion: started.serverVersion,
  createdAtMs: Date.now(),
  idleTimeoutSeconds: started.idleTimeout ? Duration.toSeconds(started.idleTimeout) : 0,
  ...(started.labels !== undefined ? { labels: started.labels } : {}),
  ...(started.detached ? {} : { detached: false }),
  serverPid: started.serverPid,
  serverStartTime: Owner.of(started.serverPid).startTime
})

/** The serving process of a sandbox, where its state file records it (see `State.serverPid`). */
export const serverOf = (state: State): Owner.Owner | undefined => {
  const pid = state.serverPid
  return Number.isInteger(pid) && (pid as number) > 1
    ? { pid: pid as number, startTime: typeof state.serverStartTime === "string" ? state.serverStartTime : undefined }
    : undefined
}

/** Ids of detached local sandboxes; checked before an id becomes part of a file path. */
export const ID_PATTERN = /^local-[0-9a-f]{6,32}$/

/** A new local sandbox id (owned sandboxes have one too, though no file is named after it). */
export const newId = (): string => `local-${randomBytes(6).toString("hex")}`

/** Whether an id is the local provider's (`local-…`): enough, on the command line, to choose it. */
export const ownsId = (id: string): boolean => id.startsWith("local-")

const statePath = (dir: string, id: string) => path.join(dir, `${id}.json`)
export const logPath = (dir: string, id: string) => path.join(dir, `${id}.log`)

/** Creates the directory (and parents) and makes sure only the user can enter it. */
export const ensureDirectory = (dir: string): void => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(dir, 0o700)
}

/** Writes a state file atomically, created with mode 0600 (never readable by anyone else, even briefly). */
export const write = (dir: string, state: State): void => Owner.write(statePath(dir, state.id), state)

const isState = (value: unknown): value is State => {
  const s = value as State
  return (
    typeof s === "object" &&
    s !== null &&
    typeof s.id === "string" &&
    ID_PATTERN.test(s.id) &&
    Number.isInteger(s.pid) &&
    s.pid > 1 &&
    Number.isInteger(s.port) &&
    typeof s.token === "string" &&
    typeof s.workdir === "string"
  )
}

/** The state of `id`, or undefined when there is none (or it is unreadable). */
export const read = (dir: string, id: string): State | undefined => {
  if (!ID_PATTERN.test(id)) return undefined
  try {
    const parsed: unknown = JSON.parse(fs.readFileSync(statePath(dir, id), "utf8"))
    return isState(parsed) && parsed.id === id ? parsed : undefined
  } catch {
    return undefined
  }
}

const removeQuietly = (target: string, recursive = false) => {
  try {
    fs.rmSync(target, { force: true, recursive })
  } catch {
    // Gone already, or not ours to remove: nothing else to do.
  }
}

/** Removes what a sandbox leaves behind: its state file, its log and its working directory. */
export const removeFiles = (dir: string, id: string, workdir: string | undefined): void => {
  removeQuietly(statePath(dir, id))
  removeQuietly(logPath(dir, id))
  // Only a directory this provider made (an `hf-sandbox-` temp directory) is ever removed recursively.
  if (workdir !== undefined && path.basename(workdir).startsWith("hf-sandbox-")) {
    // The unfinished writes of a server that died with its supervisor (see internal/files/journal).
    TransferJournal.replay(workdir)
    removeQuietly(workdir, true)
  }
}

/**
 * The live sandboxes in `dir`, oldest first. Stale state files (their server is gone) are removed on the
 * way, with their logs and working directories; so are unreadable ones and leftover temp files.
 */
export const list = (dir: string): Effect.Effect<ReadonlyArray<State>> =>
  Effect.sync(() => {
    const names = namesIn(dir)
    const live: Array<State> = []
    for (const name of names) {
      const full = path.join(dir, name)
      if (name.endsWith(".tmp")) {
        // A writer that died between write and rename; an hour is far longer than any write takes.
        const age = Date.now() - (fs.statSync(full, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
        if (age > 3_600_000) removeQuietly(full)
        continue
      }
      if (!name.endsWith(".json")) continue
      const id = name.slice(0, -".json".length)
      const state = read(dir, id)
      if (state === undefined) {
        if (ID_PATTERN.test(id)) removeFiles(dir, id, undefined)
        continue
      }
      if (Owner.isRunning(state)) live.push(state)
      else removeFiles(dir, state.id, state.workdir)
    }
    // Logs whose sandbox has no state file left (it was removed, or never written) go too.
    for (const name of names) {
      if (!name.endsWith(".log")) continue
      const id = name.slice(0, -".log".length)
      if (ID_PATTERN.test(id) && !fs.existsSync(statePath(dir, id)) && !isStarting(dir, id)) {
        removeQuietly(path.join(dir, name))
      }
    }
    return live.sort((a, b) => a.createdAtMs - b.createdAtMs)
  })

/** A log younger than the longest start, with no state file yet, may belong to a sandbox being made. */
const isStarting = (dir: string, id: string) => {
  const stat = fs.statSync(logPath(dir, id), { throwIfNoEntry: false })
  return stat !== undefined && Date.now() - stat.mtimeMs < 600_000
}
