/**
 * Named sandboxes (`Sandbox.make({ name })`, `connect({ name })`, `getOrCreate`) and the filters and
 * sweeps over them (`SandboxProvider.list`/`sweep`, `HfJobs.list`/`sweep`), on the local provider and on
 * HF Jobs through the Hub emulator. The races are real: two `getOrCreate`s started together, each
 * creating a sandbox; one must be left running, and both must hold it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Schedules from "hf-sandbox/Schedules"
import { assertCancelled, emulator, jobOf, resetFaults } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { assertGone, eventually, isAlive, localLayer, useLocalDirs } from "../support/local.js"

const dirs = useLocalDirs("sbx-names-test-")

describe("named sandboxes on the local provider", () => {
  const Env = Layer.suspend(() => localLayer({ stateDir: dirs.stateDir, tempDir: dirs.tempDir }))

  layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("local", (it) => {
    it.effect("a bad name fails before anything starts, naming the option", () =>
      Effect.gen(function* () {
        for (const name of ["", "a b", "x".repeat(64), "é", ".."]) {
          const error = yield* Effect.flip(Sandbox.make({ name }).pipe(Effect.scoped))
          assert.strictEqual(error.reason, "InvalidOptions", name)
          assert.include(error.message, "name:")
          assert.strictEqual(error.invalid?.option, "name", name)
        }
        const connectError = yield* Effect.flip(Sandbox.connect({ name: "no/slash" }).pipe(Effect.scoped))
        assert.strictEqual(connectError.reason, "InvalidOptions")
        assert.deepStrictEqual(connectError.invalid, {
          option: "name",
          problem: `"no/slash" is not a sandbox name (1 to 63 characters, each a letter, a digit, '.', '_' or '-')`
        })
      })
    )

    it.effect("an owned named sandbox: found by name while it runs, its name refused twice, gone after", () =>
      Effect.gen(function* () {
        const id = yield* Effect.gen(function* () {
          const sb = yield* Sandbox.make({ name: "owned-one", labels: { team: "ml" } })
          assert.strictEqual(sb.details.name, "owned-one")
          const taken = yield* Effect.flip(Sandbox.make({ name: "owned-one" }).pipe(Effect.scoped))
          assert.strictEqual(taken.reason, "NameTaken")
          assert.include(taken.message, sb.id)
          assert.deepStrictEqual(taken.holder, { id: sb.id, name: "owned-one" })
          const other = yield* Sandbox.connect({ name: "owned-one" })
          assert.strictEqual(other.id, sb.id)
          // Attached by name, it is still the owned sandbox it is: it ends with its maker's scope.
          assert.strictEqual(sb.details.detached, false)
          assert.strictEqual(other.details.detached, false)
          assert.strictEqual(other.details.name, "owned-one")
          assert.strictEqual((yield* other.exec("echo hi")).stdout, "hi\n")
          const listed = yield* SandboxProvider.list({ name: "owned-one" })
          assert.deepStrictEqual(
            listed.rows.map((r) => [r.id, r.name]),
            [[sb.id, "owned-one"]]
          )
          assert.strictEqual(listed.columns.at(-1), "NAME")
          assert.strictEqual((yield* SandboxProvider.list({ labels: { team: "ml" } })).rows.length, 1)
          assert.strictEqual((yield* SandboxProvider.list({ labels: { team: "other" } })).rows.length, 0)
          return sb.id
        }).pipe(Effect.scoped)
        const after = yield* SandboxProvider.list({ name: "owned-one" })
        assert.deepStrictEqual(after.rows, [], `${id} is still listed`)
        const missing = yield* Effect.flip(Sandbox.connect({ name: "owned-one" }).pipe(Effect.scoped))
        assert.strictEqual(missing.reason, "NotFound")
      })
    )

    it.effect("two getOrCreate racing get the same sandbox; the other one's server is gone", () =>
      Effect.gen(function* () {
        const [a, b] = yield* Effect.all(
          [Sandbox.getOrCreate({ name: "raced", detach: true }), Sandbox.getOrCreate({ name: "raced", detach: true })],
          { concurrency: 2 }
        )
        assert.strictEqual(a.id, b.id)
        assert.strictEqual(a.details.detached, true)
        assert.strictEqual(b.details.detached, true)
        const live = yield* SandboxProvider.list({ name: "raced" })
        assert.deepStrictEqual(
          live.rows.map((r) => r.id),
          [a.id]
        )
        // Exactly one sandbox is left: the loser's server was stopped and its working directory, state
        // file and log removed (they go once its server is gone).
        assert.isTrue(isAlive(a.details.pid as number))
        // (Its supervisor may still be removing the working directory a moment after it was stopped.)
        yield* eventually(
          Effect.try(() =>
            assert.deepStrictEqual(
              fs.readdirSync(dirs.tempDir).filter((n) => n.startsWith("hf-sandbox-") && !n.endsWith(".journal")),
              [path.basename(a.details.workdir as string)]
            )
          )
        )
        assert.deepStrictEqual(
          fs.readdirSync(dirs.stateDir).filter((n) => n.endsWith(".json")),
          [`${a.id}.json`]
        )
        yield* a.terminate
        yield* assertGone([a.details.pid as number])
        // A third call, alone, creates a new one.
        const c = yield* Sandbox.getOrCreate({ name: "raced" })
        assert.notStrictEqual(c.id, a.id)
        yield* c.terminate
      }).pipe(Effect.scoped)
    )

    it.effect("sweep stops the sandboxes that match, dry-run stops none", () =>
      Effect.gen(function* () {
        const keep = yield* Sandbox.make({ detach: true, labels: { sweep: "keep" } })
        const drop = yield* Sandbox.make({ detach: true, labels: { sweep: "drop" } })
        const dry = yield* SandboxProvider.sweep({ labels: { sweep: "drop" }, dryRun: true })
        assert.deepStrictEqual(
          dry.map((r) => r.id),
          [drop.id]
        )
        assert.isTrue(isAlive(drop.details.pid as number))
        const young = yield* SandboxProvider.sweep({ labels: { sweep: "drop" }, olderThan: "1h" })
        assert.deepStrictEqual(young, [])
        const swept = yield* SandboxProvider.sweep({ labels: { sweep: "drop" } })
        assert.deepStrictEqual(
          swept.map((r) => r.id),
          [drop.id]
        )
        yield* assertGone([drop.details.pid as number])
        assert.isTrue(isAlive(keep.details.pid as number))
        const bad = yield* Effect.flip(SandboxProvider.sweep({ olderThan: "soon" }))
        assert.strictEqual(bad._tag === "StartError" && bad.reason, "InvalidOptions")
        assert.include(bad.message, "olderThan")
        yield* keep.terminate
      }).pipe(Effect.scoped)
    )
  })
})

const HubEnv = Layer.merge(emulatedHub({ listPageSize: 3 }), Schedules.layer(fastSchedules))

layer(HubEnv, { excludeTestServices: true, timeout: "90 seconds" })(
  "named sandboxes on HF Jobs (emulated Hub)",
  (it) => {
    it.effect("the name is a job label; a second make is refused naming the first; connect finds it", () =>
      Effect.gen(function* () {
        yield* resetFaults
        const sb = yield* Sandbox.make({ name: "hf-named", transport: "proxy" })
        const job = yield* jobOf(sb.id)
        assert.strictEqual((job.spec as { labels: Record<string, string> }).labels["hf-sandbox-name"], "hf-named")
        const taken = yield* Effect.flip(Sandbox.make({ name: "hf-named", transport: "proxy" }).pipe(Effect.scoped))
        assert.strictEqual(taken.reason, "NameTaken")
        assert.include(taken.message, sb.id)
        assert.deepStrictEqual(taken.holder, { id: sb.id, name: "hf-named" })
        const other = yield* Sandbox.connect({ name: "hf-named" })
        assert.strictEqual(other.id, sb.id)
        const listed = yield* HfJobs.list({ name: "hf-named", stage: ["SCHEDULING", "RUNNING"] })
        assert.deepStrictEqual(
          listed.map((s) => [s.id, s.name]),
          [[sb.id, "hf-named"]]
        )
        yield* sb.terminate
        const missing = yield* Effect.flip(Sandbox.connect({ name: "hf-named" }).pipe(Effect.scoped))
        assert.strictEqual(missing.reason, "NotFound")
      }).pipe(Effect.scoped)
    )

    for (const transport of ["proxy", "tunnel"] as const) {
      it.effect(`two getOrCreate racing over the ${transport} get the same job; the other is cancelled`, () =>
        Effect.gen(function* () {
          yield* resetFaults
          const emu = yield* emulator
          const name = `raced-${transport}`
          const [a, b] = yield* Effect.all(
            [Sandbox.getOrCreate({ name, transport }), Sandbox.getOrCreate({ name, transport })],
            { concurrency: 2 }
          )
          assert.strictEqual(a.id, b.id)
          assert.strictEqual((yield* a.exec("echo one")).stdout, "one\n")
          const named = (yield* emu.jobs).filter(
            (j) => (j.spec as { labels?: Record<string, string> }).labels?.["hf-sandbox-name"] === name
          )
          for (const job of named.filter((j) => j.id !== a.id)) yield* assertCancelled(job.id)
          const live = yield* HfJobs.list({ name })
          assert.deepStrictEqual(
            live.map((s) => s.id),
            [a.id]
          )
        }).pipe(Effect.scoped)
      )
    }

    it.effect("HfJobs.sweep and the seam's sweep stop what matches; labels and stage are asked of the Hub", () =>
      Effect.gen(function* () {
        yield* resetFaults
        // A caller's own `hf-sandbox-name` label is dropped: only `name` names a sandbox, checked.
        const keep = yield* Sandbox.make({
          transport: "proxy",
          labels: { sweep: "keep", "hf-sandbox-name": "sneaky" },
          detach: true
        })
        const keepLabels = ((yield* jobOf(keep.id)).spec as { labels: Record<string, string> }).labels
        assert.strictEqual(keepLabels["hf-sandbox-name"], undefined)
        assert.strictEqual(keepLabels.sweep, "keep")
        const drop = yield* Sandbox.make({ transport: "proxy", labels: { sweep: "drop" }, detach: true })
        const dry = yield* HfJobs.sweep({ labels: { sweep: "drop" }, dryRun: true })
        assert.deepStrictEqual(
          dry.map((s) => s.id),
          [drop.id]
        )
        assert.deepStrictEqual(yield* HfJobs.sweep({ labels: { sweep: "drop" }, olderThan: "1h" }), [])
        const emu = yield* emulator
        const before = (yield* emu.requests).length
        const swept = yield* HfJobs.sweep({ labels: { sweep: "drop" } })
        assert.deepStrictEqual(
          swept.map((s) => s.id),
          [drop.id]
        )
        // The listing found the job: it is cancelled as listed, not fetched again first.
        assert.deepStrictEqual(
          (yield* emu.requests).slice(before).map((r) => r.route),
          ["list", "cancel"]
        )
        yield* assertCancelled(drop.id)
        const seam = yield* SandboxProvider.sweep({ labels: { sweep: "keep" } })
        assert.deepStrictEqual(
          seam.map((r) => r.id),
          [keep.id]
        )
        yield* assertCancelled(keep.id)
        const bad = yield* Effect.flip(HfJobs.list({ labels: { "bad key": "x" } }))
        assert.strictEqual(bad._tag === "StartError" && bad.reason, "InvalidOptions")
      }).pipe(Effect.scoped)
    )
  }
)
