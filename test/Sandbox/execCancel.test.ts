/**
 * A command abandoned before its id reached the client (interrupted while the answer was still in a
 * proxy's buffers) is killed all the same: the client cancels it by the idempotency key it sent
 * (`DELETE /v1/processes?idempotency_key=`), as it kills one whose id it knows. A spawn whose answer
 * was lost is sent again with its key, and starts one process, not two.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Sandbox from "hf-sandbox/Sandbox"
import { assertGone, eventually } from "../support/local.js"
import type { Relay } from "../support/relay.js"
import { relayed } from "../support/relayed.js"

const Relayed = relayed()

/** Waits until the relay has thrown away what the server answered (one write: head and first line). */
const answerSwallowed = (relay: Relay) =>
  eventually(Effect.suspend(() => (relay.swallowed() > 0 ? Effect.void : Effect.fail(new Error("no answer yet")))))

/** Reads a pid a command wrote into its sandbox's directory, on the local disk (not through the relay). */
const pidIn = (sb: Sandbox.Sandbox, name: string) =>
  eventually(
    Effect.try(() => fs.readFileSync(path.join(sb.details.workdir as string, name), "utf8")).pipe(
      Effect.filterOrFail(
        (text) => /^\d+\n$/.test(text),
        () => new Error(`no pid in ${name} yet`)
      ),
      Effect.map(Number)
    )
  )

describe("an exec interrupted before its start event", () => {
  it.live("is killed with everything it started: the client cancels it by its idempotency key", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const relay = Relayed.relayOf(sb)
      // The server answers as usual; the answer (its start event) never reaches the client.
      relay.swallow(true)
      const fiber = yield* Effect.fork(sb.exec("sleep 60 & echo $! > child.pid; echo $$ > shell.pid; wait"))
      const pids = [yield* pidIn(sb, "shell.pid"), yield* pidIn(sb, "child.pid")]
      yield* answerSwallowed(relay)
      relay.swallow(false)
      yield* Fiber.interrupt(fiber)
      // Without the cancel, the command would run until the server's reattach grace (60 s) ran out.
      yield* assertGone(pids)
      const r = yield* sb.exec("echo still here")
      assert.strictEqual(r.stdout, "still here\n")
    }).pipe(Effect.scoped, Effect.provide(Relayed.layer))
  )
})

describe("a spawn whose answer does not arrive", () => {
  it.live("interrupted, is killed: the client cancels it by its idempotency key", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const relay = Relayed.relayOf(sb)
      relay.swallow(true)
      const fiber = yield* Effect.fork(sb.spawn("echo $$ > bg.pid; exec sleep 60"))
      const pid = yield* pidIn(sb, "bg.pid")
      yield* answerSwallowed(relay)
      relay.swallow(false)
      yield* Fiber.interrupt(fiber)
      yield* assertGone([pid])
      assert.deepStrictEqual(
        (yield* sb.processes).map((p) => [p.pid, p.running]),
        [[pid, false]]
      )
    }).pipe(Effect.scoped, Effect.provide(Relayed.layer))
  )

  it.live("cut off, is sent again with its key and answers the one process it started", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const relay = Relayed.relayOf(sb)
      relay.swallow(true)
      const fiber = yield* Effect.fork(sb.spawn("echo $$ >> runs.txt; echo $$ > bg.pid; exec sleep 60"))
      const pid = yield* pidIn(sb, "bg.pid")
      yield* answerSwallowed(relay)
      relay.swallow(false)
      relay.cut()
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      const proc = Exit.isSuccess(exit) ? exit.value : undefined
      assert.strictEqual(proc?.pid, pid)
      const runs = fs.readFileSync(path.join(sb.details.workdir as string, "runs.txt"), "utf8")
      assert.strictEqual(runs, `${pid}\n`, "the command ran once")
      assert.lengthOf(yield* sb.processes, 1)
      yield* proc!.kill()
    }).pipe(Effect.scoped, Effect.provide(Relayed.layer))
  )
})
