/**
 * Shared pieces of the live suites: the local provider wired to real Node services, and process
 * checks that prove a release really killed what it started.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, beforeAll } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import { isAlive } from "../../src/internal/processTree.js"

/** The local provider plus an HttpClient: everything `Sandbox.make` needs. */
export const localLayer = (options: LocalSandbox.Options = {}) =>
  LocalSandbox.layer(options).pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(NodeHttpClient.layerUndici))

export { isAlive }

/** Fails unless every pid is gone within `within` (a process may take a moment to be reaped). */
export const assertGone = (pids: ReadonlyArray<number>, within: Duration.DurationInput = "5 seconds") =>
  Effect.suspend(() => {
    const alive = pids.filter(isAlive)
    return alive.length === 0 ? Effect.void : Effect.fail(new Error(`still running: ${alive.join(", ")}`))
  }).pipe(Effect.retry(Schedule.spaced("25 millis").pipe(Schedule.upTo(within))))

/** Retries `effect` on a short schedule, for waiting on something a command is about to do. */
export const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, within: Duration.DurationInput = "10 seconds") =>
  effect.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo(within))))

/**
 * A state directory and a temp directory of the file's own, made before its tests and removed after
 * them, with every local sandbox left in them killed first.
 */
export const useLocalDirs = (prefix: string) => {
  const dirs = { root: "", stateDir: "", tempDir: "" }
  beforeAll(() => {
    dirs.root = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
    dirs.stateDir = path.join(dirs.root, "state")
    dirs.tempDir = path.join(dirs.root, "tmp")
    fs.mkdirSync(dirs.tempDir)
  })
  afterAll(async () => {
    const { stateDir, tempDir } = dirs
    for (const info of await Effect.runPromise(LocalSandbox.list({ stateDir, tempDir }))) {
      await Effect.runPromise(LocalSandbox.kill(info.id, { stateDir, stopTimeout: "1 second" }))
    }
    fs.rmSync(dirs.root, { recursive: true, force: true })
  })
  return dirs
}
