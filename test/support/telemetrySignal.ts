/**
 * Child process of test/Telemetry.test.ts for what only a real signal can show. Prints JSON lines
 * on stdout; the parent sends the signal after the `ready` line.
 *
 * - `sandbox`: a local sandbox under `NodeRuntime.runMain` whose telemetry prints each event; SIGINT
 *   or SIGTERM interrupts the program, and the terminate event says `signal`.
 * - `alone`: only the signal watcher listens; the signal must still end the process.
 * - `handled`: the program has its own listener; the watcher marks the signal and steps aside, so
 *   that the program's listener sees itself alone, as it would without the watcher.
 */
import * as fs from "node:fs"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Telemetry from "hf-sandbox/Telemetry"
import * as Signals from "../../src/internal/signals.js"
import { localLayer } from "./local.js"

const line = (value: unknown) => fs.writeSync(1, `${JSON.stringify(value)}\n`)

const mode = process.argv[2]

if (mode === "sandbox") {
  const program = Effect.gen(function* () {
    const sb = yield* Sandbox.make()
    line({ ready: true, pid: sb.details.pid })
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.merge(
        localLayer(),
        Telemetry.layer((event) => Effect.sync(() => line(event)))
      )
    )
  )
  NodeRuntime.runMain(program)
} else if (mode === "alone" || mode === "handled") {
  if (mode === "handled") {
    process.on("SIGTERM", () => {
      line({ handled: true, marked: marked?.() ?? null, others: process.listenerCount("SIGTERM") })
      process.exit(0)
    })
  }
  let marked: (() => string | undefined) | undefined
  Effect.runFork(
    Effect.scoped(
      Effect.gen(function* () {
        marked = yield* Signals.watch
        line({ ready: true })
        return yield* Effect.never
      })
    )
  )
} else {
  line({ error: `unknown mode ${mode}` })
  process.exit(2)
}
