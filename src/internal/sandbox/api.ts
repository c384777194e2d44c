/**
 * The API of a running sandbox (`Sandbox.Sandbox`), assembled from its rooms: commands, background
 * processes, files, its log, `terminate` and its metrics.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Sandbox } from "../../Sandbox.js"
import { BadRequestError } from "../../SandboxError.js"
import * as Schedules from "../../Schedules.js"
import * as FilesApi from "../files/files.js"
import { exec, execStream } from "./exec.js"
import { metrics } from "./metrics.js"
import { expose, waitForPort } from "./ports.js"
import { process, processes, spawn } from "./process.js"
import { guard, guardStream, type Running } from "./running.js"
import { sshCommand } from "./ssh.js"

/** Builds the API of a sandbox that answers. */
export const build = (running: Running, fileSystem: Option.Option<FileSystem.FileSystem>): Sandbox => {
  const { endpoint } = running
  const spawnIt = spawn(running)
  return {
    id: endpoint.id,
    execStream: execStream(running),
    spawn: spawnIt,
    // Killed when the scope closes, bounded: a process that is already gone is fine.
    spawnScoped: (command, spawnOptions) =>
      Effect.acquireRelease(spawnIt(command, spawnOptions), (process) =>
        process.kill().pipe(Effect.interruptible, Effect.timeout("10 seconds"), Effect.ignore)
      ),
    processes: processes(running),
    process: process(running),
    logs: logs(running),
    provider: endpoint.provider,
    details: endpoint.details,
    hardware: endpoint.hardware,
    lifetime: endpoint.lifetime,
    onThisMachine: endpoint.onThisMachine,
    backstop: endpoint.backstop,
    exec: exec(running),
    files: FilesApi.make({
      wire: running.wire,
      fileSystem,
      guard: (operation, effect, extra) => guard(running, operation, effect, extra),
      guardStream: (operation, stream, extra) => guardStream(running, operation, stream, extra),
      readRangeSize: endpoint.readRangeSize,
      execStream: execStream(running),
      hub: endpoint.hub
    }),
    terminate: terminate(running),
    sshCommand: sshCommand(running),
    expose: expose(running),
    waitForPort: waitForPort(running),
    metrics: metrics(running)
  }
}

/**
 * `sb.terminate`: stops the sandbox now (the endpoint's `kill` for one it does not own, then its scope),
 * at most once; a detached sandbox's telemetry reads `terminatedByUser` to tell this from a detach.
 */
const terminate = ({ attributes, endpoint, scope, state }: Running): Sandbox["terminate"] =>
  Effect.suspend(() => {
    const kill = state.terminated ? Effect.void : (endpoint.kill ?? Effect.void)
    if (!state.terminated) state.terminatedByUser = true
    state.terminated = true
    return Effect.zipRight(kill, Scope.close(scope, Exit.void))
  }).pipe(Effect.withSpan("Sandbox.terminate", { attributes }))

/** `sb.logs`: the provider's log of the sandbox, when it keeps one. */
const logs =
  ({ attributes, endpoint, schedules }: Running): Sandbox["logs"] =>
  (logOptions = {}) =>
    endpoint.logs === undefined
      ? Stream.fail(
          new BadRequestError({
            operation: "logs",
            status: 501,
            detail: `the ${endpoint.provider} provider keeps no log for its sandboxes`
          })
        )
      : endpoint.logs(logOptions).pipe(
          Stream.provideService(Schedules.Schedules, schedules),
          Stream.withSpan("Sandbox.logs", {
            attributes: {
              ...attributes,
              "logs.follow": logOptions.follow ?? false,
              ...(logOptions.tail !== undefined ? { "logs.tail": logOptions.tail } : {})
            }
          })
        )
