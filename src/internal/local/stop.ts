/**
 * Stopping a local sandbox's server and everything it started: SIGTERM first (the server then stops
 * what it started), a bounded wait, then SIGKILL of its process group and of every descendant left,
 * found in /proc (see internal/processTree) so that processes which left the group are found too.
 */
import * as fs from "node:fs"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as ProcessTree from "../processTree.js"
import { unrefChild } from "../shutdown.js"
import * as Owner from "./owner.js"
import { removeFiles, type State } from "./state.js"

/** How often a server that is not our child is looked at while it stops after SIGTERM. */
const stopPoll = Schedule.spaced("25 millis")

/**
 * Stops a server that is not our child: SIGTERM (it then stops everything it started), a bounded wait,
 * then SIGKILL of its process group and of every descendant left. A pid that is no longer the server is
 * never signalled.
 */
export const stopServer = (server: Owner.Owner, stopTimeout: Duration.Duration): Effect.Effect<void> =>
  Effect.gen(function* () {
    const pid = server.pid
    const same = () => Owner.isRunning(server)
    if (!same()) return
    const family = yield* ProcessTree.descendants(pid)
    ProcessTree.signal(pid, "SIGTERM")
    yield* Effect.suspend(() => (same() ? Effect.fail("running") : Effect.void)).pipe(
      Effect.retry(stopPoll.pipe(Schedule.upTo(stopTimeout))),
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
  stopServer(state, stopTimeout).pipe(Effect.zipRight(Effect.sync(() => removeFiles(dir, state.id, state.workdir))))

/** Stops a server that is our child (an owned sandbox's): the same steps, waiting on its exit code. */
export const stopChild = (proc: CommandExecutor.Process, stopTimeout: Duration.Duration): Effect.Effect<void> =>
  Effect.gen(function* () {
    const pid = proc.pid
    const family = yield* ProcessTree.descendants(pid)
    ProcessTree.signal(pid, "SIGTERM")
    yield* proc.exitCode.pipe(Effect.ignore, Effect.interruptible, Effect.timeout(stopTimeout), Effect.ignore)
    ProcessTree.signal(-pid, "SIGKILL")
    ProcessTree.signal(pid, "SIGKILL")
    for (const child of [...family, ...(yield* ProcessTree.descendants(pid))]) {
      ProcessTree.signal(child, "SIGKILL")
    }
  })

/** Kills a local sandbox's server and everything below it, and removes its directory, synchronously. */
const killLocalSync = (pid: number, workdir: string | undefined): void => {
  const family = Effect.runSync(ProcessTree.descendants(pid))
  ProcessTree.signal(-pid, "SIGKILL")
  ProcessTree.signal(pid, "SIGKILL")
  for (const child of family) ProcessTree.signal(child, "SIGKILL")
  if (workdir !== undefined) {
    try {
      fs.rmSync(workdir, { recursive: true, force: true })
    } catch {
      // Best effort: the process is exiting.
    }
  }
}

/**
 * The exit backstop of a server this process started as its child (`pid`, in `workdir`): what an
 * exiting process can still do about it synchronously.
 */
export const backstop = (pid: number, workdir: string | undefined): SandboxProvider.Backstop => ({
  unref: () => unrefChild(pid),
  killSync: () => killLocalSync(pid, workdir)
})
