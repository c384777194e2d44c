/**
 * Detached local sandboxes: their state files, liveness checks, stopping, and logs.
 *
 * A detached local sandbox is a server in a session of its own that outlives the process that made it.
 * What another process needs to reach it (id, pid, port, token, working directory) is kept in
 * `<stateDir>/<id>.json`, readable by the user only (the directory is 0700, the file 0600), and its
 * stderr goes to `<stateDir>/<id>.log`. A state file whose server is gone is stale: whoever finds it
 * removes it, with the log and the working directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TransferJournal from "./files/journal.js"
import * as ProcessTree from "./processTree.js"

/** What a state file holds. The token is the sandbox token: the file is the user's alone. */
export interface State {
  readonly id: string
  readonly pid: number
  /** The server's start time from /proc (Linux), so that a recycled pid is never taken for it. */
  readonly startTime: string | undefined
  readonly port: number
  readonly token: string
  readonly workdir: string
  readonly python: string
  readonly serverVersion: string
  readonly createdAtMs: number
  /** Seconds without a request after which the server stops itself (0: never). */
  readonly idleTimeoutSeconds: number
}

/** Ids of detached local sandboxes; checked before an id becomes part of a file path. */
export const ID_PATTERN = /^local-[0-9a-f]{6,32}$/

/**
 * Where state files live: `HF_SANDBOX_STATE_DIR`, else `$XDG_STATE_HOME/hf-sandbox/local`, else
 * `~/.local/state/hf-sandbox/local`.
 */
export const defaultDirectory = (env: Readonly<Record<string, string | undefined>> = process.env): string => {
  const explicit = env.HF_SANDBOX_STATE_DIR
  if (explicit !== undefined && explicit !== "") return path.resolve(explicit)
  const xdg = env.XDG_STATE_HOME
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".local", "state")
  return path.join(base, "hf-sandbox", "local")
}

/**
 * Where the CLI keeps the namespace of each token (see internal/namespaceCache): next to the local
 * sandboxes' state, `<HF_SANDBOX_STATE_DIR>/namespaces`, else `$XDG_STATE_HOME/hf-sandbox/namespaces`,
 * else `~/.local/state/hf-sandbox/namespaces`.
 */
export const namespaceCacheDirectory = (env: Readonly<Record<string, string | undefined>> = process.env): string => {
  const explicit = env.HF_SANDBOX_STATE_DIR
  if (explicit !== undefined && explicit !== "") return path.join(path.resolve(explicit), "namespaces")
  return path.join(path.dirname(defaultDirectory(env)), "namespaces")
}

export const statePath = (dir: string, id: string) => path.join(dir, `${id}.json`)
export const logPath = (dir: string, id: string) => path.join(dir, `${id}.log`)

/** Creates the directory (and parents) and makes sure only the user can enter it. */
export const ensureDirectory = (dir: string): void => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(dir, 0o700)
}

/** The start time of a process (field 22 of /proc/<pid>/stat), where there is a /proc. */
export const processStartTime = (pid: number): string | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

/** Whether the state's server still runs: its pid is alive and, where it can be told, the same process. */
export const isRunning = (state: Pick<State, "pid" | "startTime">): boolean =>
  ProcessTree.isAlive(state.pid) && (state.startTime === undefined || processStartTime(state.pid) === state.startTime)

/** Writes a state file atomically, created with mode 0600 (never readable by anyone else, even briefly). */
export const write = (dir: string, state: State): void => {
  const target = statePath(dir, state.id)
  const temp = `${target}.${process.pid}.tmp`
  fs.writeFileSync(temp, `${JSON.stringify(state)}\n`, { mode: 0o600, flag: "wx" })
  fs.renameSync(temp, target)
}

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
 * Stops a server that is not our child: SIGTERM (it then stops everything it started), a bounded wait,
 * then SIGKILL of its process group and of every descendant left. A pid that is no longer the server is
 * never signalled.
 */
export const stopServer = (
  pid: number,
  startTime: string | undefined,
  stopTimeout: Duration.Duration
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const same = () => ProcessTree.isAlive(pid) && (startTime === undefined || processStartTime(pid) === startTime)
    if (!same()) return
    const family = yield* ProcessTree.descendants(pid)
    ProcessTree.signal(pid, "SIGTERM")
    yield* Effect.suspend(() => (same() ? Effect.fail("running") : Effect.void)).pipe(
      Effect.retry(Schedule.spaced("25 millis").pipe(Schedule.upTo(stopTimeout))),
      Effect.ignore
    )
    const left = same() ? [...(yield* ProcessTree.descendants(pid))] : []
    if (same()) {
      ProcessTree.signal(-pid, "SIGKILL")
      ProcessTree.signal(pid, "SIGKILL")
    }
    for (const child of [...family, ...left]) ProcessTree.signal(child, "SIGKILL")
  })

/** Stops a sandbox (if its server still runs) and removes its files. */
export const stop = (dir: string, state: State, stopTimeout: Duration.Duration): Effect.Effect<void> =>
  stopServer(state.pid, state.startTime, stopTimeout).pipe(
    Effect.zipRight(Effect.sync(() => removeFiles(dir, state.id, state.workdir)))
  )

/**
 * The live sandboxes in `dir`, oldest first. Stale state files (their server is gone) are removed on the
 * way, with their logs and working directories; so are unreadable ones and leftover temp files.
 */
export const list = (dir: string): Effect.Effect<ReadonlyArray<State>> =>
  Effect.sync(() => {
    let names: Array<string>
    try {
      names = fs.readdirSync(dir)
    } catch {
      return []
    }
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
      if (isRunning(state)) live.push(state)
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

/** The last `bytes` of a file as text, for errors. */
export const tailOf = (file: string, bytes = 8 * 1024): string => {
  try {
    const data = fs.readFileSync(file)
    return data.subarray(Math.max(0, data.length - bytes)).toString("utf8")
  } catch {
    return ""
  }
}

/** How often a followed log file is looked at again while nothing new has been written to it. */
const followPoll = Schedule.spaced("200 millis")

/**
 * A sandbox's log: the lines so far (the last `tail` of them), then, with `follow`, new lines as the
 * server writes them, until it is gone.
 */
export const logLines = (
  file: string,
  options: { readonly follow?: boolean | undefined; readonly tail?: number | undefined },
  running: () => boolean
): Stream.Stream<string> =>
  Stream.suspend(() => {
    let data: Buffer
    try {
      data = fs.readFileSync(file)
    } catch {
      data = Buffer.alloc(0)
    }
    const text = data.toString("utf8")
    const complete = text.lastIndexOf("\n") + 1
    const lines = text.slice(0, complete).split("\n").slice(0, -1)
    const snapshot = options.tail === undefined ? lines : options.tail <= 0 ? [] : lines.slice(-options.tail)
    let position = Buffer.byteLength(text.slice(0, complete))
    if (!options.follow) {
      const rest = text.slice(complete)
      return Stream.fromIterable(rest === "" ? snapshot : [...snapshot, rest])
    }
    let partial = ""
    let finished = false
    const decoder = new TextDecoder()
    // One look at the file: new lines, the end (the server is gone), or nothing yet (looked at again on
    // the `followPoll` schedule).
    const look: Effect.Effect<ReadonlyArray<string>, Option.Option<"nothing yet">> = Effect.suspend(() => {
      if (finished) return Effect.fail(Option.none())
      const alive = running()
      const chunk = readFrom(file, position)
      position += chunk.length
      const pieces = (partial + decoder.decode(chunk, { stream: alive })).split("\n")
      partial = pieces.pop() ?? ""
      if (chunk.length > 0) return Effect.succeed(pieces)
      if (!alive) {
        finished = true
        return Effect.succeed(partial === "" ? pieces : [...pieces, partial])
      }
      return Effect.fail(Option.some("nothing yet" as const))
    })
    const poll = look.pipe(
      Effect.retry({ schedule: followPoll, while: Option.isSome }),
      Effect.mapError(() => Option.none<never>())
    )
    return Stream.fromIterable(snapshot).pipe(
      Stream.concat(Stream.repeatEffectOption(poll).pipe(Stream.flattenIterables))
    )
  })

const readFrom = (file: string, position: number): Buffer => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const size = fs.fstatSync(fd).size
    if (size <= position) return Buffer.alloc(0)
    const buffer = Buffer.alloc(Math.min(size - position, 1024 * 1024))
    const read = fs.readSync(fd, buffer, 0, buffer.length, position)
    return buffer.subarray(0, read)
  } catch {
    return Buffer.alloc(0)
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
