/**
 * Named local sandboxes. The name is kept in the sandbox's state file (internal/local/state), so a named
 * sandbox has one whether it is detached or owned; names are unique per state directory. Whether a name
 * is free and the write of the state file that takes it happen together, under a lock on the state
 * directory (a directory made with `mkdir`, atomic across processes), so two starts racing never both
 * get a name: the one that writes first keeps it, the other stops its server and fails with `NameTaken`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as SandboxName from "../sandboxName.js"
import { invalidOptions } from "../startError.js"
import { startError } from "./errors.js"
import * as LocalState from "./state.js"

/** Makes the state directory (and parents), the user's alone; a failure is the sandbox's start error. */
export const ensureStateDirectory = (dir: string) =>
  Effect.try({
    try: () => LocalState.ensureDirectory(dir),
    catch: (e) => startError("SpawnFailed", `cannot create the state directory ${dir}: ${String(e)}`)
  })

/** The lock is held for one synchronous check and write; one older than this was left by a crash. */
const STALE_LOCK_MS = 10_000

/** How often a held lock is tried again, and for how long at most. */
const lockRetry = Schedule.spaced("10 millis").pipe(Schedule.upTo("15 seconds"))

const lockPath = (dir: string) => path.join(dir, ".names.lock")

/** The live sandbox of the directory that has the name, if any (the earliest, should there be two). */
const holder = (dir: string, name: string): Effect.Effect<LocalState.State | undefined> =>
  Effect.map(LocalState.list(dir), (states) => states.find((s) => s.name === name))

/** The refusal of a second live sandbox with a name, naming the one that has it. */
const taken = (name: string, state: LocalState.State) =>
  new StartError({
    provider: "local",
    reason: "NameTaken",
    holder: { id: state.id, name },
    detail:
      `local sandbox ${state.id} (pid ${state.pid}) is already named ${JSON.stringify(name)}: attach to it with ` +
      `Sandbox.connect({ name }) or Sandbox.getOrCreate({ name }), stop it with SandboxProvider.kill("${state.id}"), ` +
      "or choose another name"
  })

/** Before starting: fails with `NameTaken` when a live sandbox already has the name. */
export const checkFree = (dir: string, name: string): Effect.Effect<void, StartError> =>
  Effect.flatMap(holder(dir, name), (state) => (state === undefined ? Effect.void : Effect.fail(taken(name, state))))

/** Takes the lock of the directory, once (fails when another holds it; a stale one is removed first). */
const lockOnce = (dir: string) =>
  Effect.try({
    try: () => {
      try {
        fs.mkdirSync(lockPath(dir), { mode: 0o700 })
      } catch (error) {
        const stat = fs.statSync(lockPath(dir), { throwIfNoEntry: false })
        if (stat !== undefined && Date.now() - stat.mtimeMs > STALE_LOCK_MS)
          fs.rmSync(lockPath(dir), { force: true, recursive: true })
        throw error
      }
    },
    catch: (error) => error
  })

/**
 * Writes the state file of a named sandbox if its name is still free, under the directory's lock; else
 * fails with `NameTaken` naming the holder (and writes nothing).
 */
export const claim = (dir: string, state: LocalState.State & { readonly name: string }) =>
  Effect.acquireUseRelease(
    lockOnce(dir).pipe(
      Effect.retry(lockRetry),
      Effect.mapError((e) => startError("SpawnFailed", `cannot lock the state directory ${dir}: ${String(e)}`))
    ),
    () =>
      Effect.flatMap(holder(dir, state.name), (other) =>
        other !== undefined && other.id !== state.id
          ? Effect.fail(taken(state.name, other))
          : Effect.try({
              try: () => LocalState.write(dir, state),
              catch: (e) => startError("SpawnFailed", `cannot write the state file in ${dir}: ${String(e)}`)
            })
      ),
    () => Effect.sync(() => fs.rmSync(lockPath(dir), { force: true, recursive: true }))
  )

/**
 * The labels a local sandbox keeps: HF Jobs' `labels` option, which the local provider honours for
 * `list`/`sweep` filters on sandboxes with a state file (named or detached). A bad one is `InvalidOptions`.
 */
export const labelsOf = (
  spec: SandboxProvider.Spec
): Effect.Effect<Readonly<Record<string, string>> | undefined, StartError> =>
  Effect.try({
    try: () => SandboxName.checkLabels("labels", spec.providerOptions.labels),
    catch: (cause) => invalidOptions("local", cause)
  })
