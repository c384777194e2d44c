/** The operations on detached local sandboxes by id, outside any provider: list, kill, logs. */
import * as NodeOs from "node:os"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as LocalSandbox from "../../LocalSandbox.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as StartErrors from "../startError.js"
import { DEFAULT_STOP_TIMEOUT, resolveStateDir } from "./context.js"
import { unknownSandbox } from "./errors.js"
import { logLines } from "./logs.js"
import * as OwnedDirs from "./ownedDirs.js"
import * as Owner from "./owner.js"
import * as LocalState from "./state.js"
import { stop } from "./stop.js"

export const list = (
  options: Pick<LocalSandbox.Options, "stateDir" | "tempDir"> = {}
): Effect.Effect<ReadonlyArray<LocalSandbox.DetachedInfo>> =>
  Effect.zipRight(
    OwnedDirs.sweep(options.tempDir ?? NodeOs.tmpdir()),
    Effect.flatMap(resolveStateDir(options), LocalState.list)
  ).pipe(
    Effect.map((states) =>
      states.map(
        (s): LocalSandbox.DetachedInfo => ({
          id: s.id,
          pid: s.pid,
          port: s.port,
          workdir: s.workdir,
          createdAt: new Date(s.createdAtMs).toISOString(),
          idleTimeoutSeconds: s.idleTimeoutSeconds,
          serverVersion: s.serverVersion,
          ...(s.name !== undefined ? { name: s.name } : {}),
          ...(s.labels !== undefined ? { labels: s.labels } : {})
        })
      )
    )
  )

export const kill = (
  id: string,
  options: Pick<LocalSandbox.Options, "stateDir" | "stopTimeout"> = {}
): Effect.Effect<void, StartError> =>
  Effect.flatMap(resolveStateDir(options), (dir) => {
    const state = LocalState.read(dir, id)
    return state === undefined
      ? Effect.fail(StartErrors.during(`kill sandbox ${id}`, unknownSandbox(id, dir)))
      : stop(dir, state, Duration.decode(options.stopTimeout ?? DEFAULT_STOP_TIMEOUT))
  })

export const logs = (
  id: string,
  options: SandboxProvider.LogOptions & Pick<LocalSandbox.Options, "stateDir"> = {}
): Stream.Stream<string, StartError> =>
  Stream.unwrap(
    Effect.map(resolveStateDir(options), (dir) => {
      const state = LocalState.read(dir, id)
      return state === undefined
        ? Stream.fail(StartErrors.during(`read the log of sandbox ${id}`, unknownSandbox(id, dir)))
        : logLines(LocalState.logPath(dir, id), options, () => Owner.isRunning(state))
    })
  )
