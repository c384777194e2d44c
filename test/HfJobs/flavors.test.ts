/**
 * A list of flavors and the spend cap, against the Hub emulator: a flavor the Hub keeps in SCHEDULING
 * (the emulator's `unavailableFlavors`) is given up for the next after `Schedules.flavorFallback`, and
 * `maxCost` sets each job's timeout from the Hub's catalog (`GET /api/jobs/hardware`) or refuses a
 * `lifetime` it cannot pay for, before any job exists.
 */
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import { assertCancelled, emulator, resetFaults } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"

const Env = Layer.merge(emulatedHub(), Schedules.layer({ ...fastSchedules, flavorFallback: "500 millis" }))

/** The emulator's catalog, as the Hub serves it: micro-dollars per `unitLabel` (a minute). */
const pricePerMinute = (flavor: string) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.promise(async () => {
      const lines = (await (await fetch(`${emu.url}/api/jobs/hardware`)).json()) as Array<{
        name: string
        unitCostMicroUSD: number
        unitLabel: string
      }>
      const line = lines.find((l) => l.name === flavor)!
      assert.strictEqual(line.unitLabel, "minute")
      return line.unitCostMicroUSD
    })
  )

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs: flavors and cost (emulated Hub)", (it) => {
  for (const transport of ["proxy", "tunnel"] as const) {
    it.effect(
      `a flavor kept in SCHEDULING is cancelled after flavorFallback; the next one runs the sandbox (${transport})`,
      () =>
        Effect.gen(function* () {
          yield* resetFaults
          const emu = yield* emulator
          emu.faults.unavailableFlavors = ["h200"]
          const before = new Set((yield* emu.jobs).map((j) => j.id))
          const id = yield* Effect.gen(function* () {
            const sb = yield* Sandbox.make({ transport, flavor: ["h200", "a100-large"] })
            assert.strictEqual(sb.hardware, "a100-large")
            assert.strictEqual(sb.details.flavor, "a100-large")
            assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
            const made = (yield* emu.jobs).filter((j) => !before.has(j.id))
            const h200 = made.find((j) => (j.spec as { flavor: string }).flavor === "h200")!
            // Given up before the sandbox answered: cancelled while it still waited for a machine.
            assert.strictEqual(h200.stage, "CANCELED")
            assert.strictEqual(h200.pid, undefined, "it never ran")
            assert.deepStrictEqual(
              made.map((j) => (j.spec as { flavor: string }).flavor),
              ["h200", "a100-large"]
            )
            return sb.id
          }).pipe(Effect.scoped)
          yield* assertCancelled(id)
        })
    )
  }

  it.effect("a named sandbox falls back too: the job it gave up does not hold the name against it", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.unavailableFlavors = ["h200"]
      const name = `fallback-${Date.now().toString(36)}`
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy", name, flavor: ["h200", "a100-large"] })
        assert.strictEqual(sb.hardware, "a100-large")
        const found = yield* Sandbox.connect({ name })
        assert.strictEqual(found.id, sb.id)
      }).pipe(Effect.scoped)
    })
  )

  it.effect("a flavor that leaves SCHEDULING in time is kept: no fallback", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      yield* Effect.gen(function* () {
        // A bound far beyond the emulator's 150 ms in SCHEDULING: no race with a loaded machine.
        const sb = yield* Sandbox.make({
          transport: "proxy",
          flavor: ["t4-small", "cpu-basic"],
          schedules: { flavorFallback: "30 seconds" }
        })
        assert.strictEqual(sb.hardware, "t4-small")
      }).pipe(Effect.scoped)
      assert.strictEqual((yield* emu.jobs).length, before + 1)
    })
  )

  it.effect("maxCost without lifetime: the job's timeout is every whole minute the cap buys, per flavor", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      emu.faults.unavailableFlavors = ["a10g-small"]
      const before = new Set((yield* emu.jobs).map((j) => j.id))
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy", flavor: ["a10g-small", "cpu-basic"], maxCost: "$0.05" })
        const a10g = Math.floor(50_000 / (yield* pricePerMinute("a10g-small"))) * 60
        const cpu = Math.floor(50_000 / (yield* pricePerMinute("cpu-basic"))) * 60
        const made = (yield* emu.jobs).filter((j) => !before.has(j.id))
        assert.deepStrictEqual(
          made.map((j) => [
            (j.spec as { flavor: string }).flavor,
            (j.spec as { timeoutSeconds: number }).timeoutSeconds
          ]),
          [
            ["a10g-small", a10g],
            ["cpu-basic", cpu]
          ]
        )
        assert.strictEqual(Duration.toSeconds(sb.lifetime!), cpu, "the sandbox reports the timeout it got")
      }).pipe(Effect.scoped)
    })
  )

  it.effect("a lifetime that could cost more than maxCost fails before any job exists, naming the flavor", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      // Just short of two hours of a100-large, and far more than two hours of cpu-basic.
      const cap = (120 * (yield* pricePerMinute("a100-large")) - 1) / 1_000_000
      assert.isBelow(120 * (yield* pricePerMinute("cpu-basic")), cap * 1_000_000)
      const error = yield* Sandbox.make({ flavor: ["cpu-basic", "a100-large"], maxCost: cap, lifetime: "2h" }).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.reason, "InvalidOptions")
      assert.include(error.message, "a100-large")
      assert.include(error.message, `maxCost: $${cap} does not cover lifetime 2h on a100-large`)
      // The option is named apart from the prose: the CLI says it as its flag (--max-cost).
      assert.strictEqual(error.invalid?.option, "maxCost")
      assert.notInclude(error.message, "lifetime 2h on cpu-basic", "cpu-basic fits the cap")
      assert.strictEqual((yield* emu.jobs).length, before, "no job was created")
    })
  )

  it.effect("a cap below one minute's price, an unknown flavor and a malformed cap are refused before any job", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      const tooLow = yield* Sandbox.make({ flavor: "h200", maxCost: "$0.0001" }).pipe(Effect.scoped, Effect.flip)
      assert.include(tooLow.message, "maxCost: $0.0001 buys less than one minute of h200")
      assert.strictEqual(tooLow.invalid?.option, "maxCost")
      const unknown = yield* Sandbox.make({ flavor: "h9000", maxCost: 1 }).pipe(Effect.scoped, Effect.flip)
      assert.include(unknown.message, `flavor: "h9000" is not in the Hub's hardware catalog`)
      assert.strictEqual(unknown.invalid?.option, "flavor")
      for (const maxCost of ["two dollars", -1, 0, "$"]) {
        const bad = yield* Sandbox.make({ maxCost }).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(bad.reason, "InvalidOptions")
        assert.include(bad.message, `maxCost: ${JSON.stringify(maxCost)} is not an amount in US dollars`)
      }
      const emptyList = yield* Sandbox.make({ flavor: [] }).pipe(Effect.scoped, Effect.flip)
      assert.include(emptyList.message, "a flavor name or a non-empty list of them")
      assert.strictEqual((yield* emu.jobs).length, before)
    })
  )
})
