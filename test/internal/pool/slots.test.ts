/**
 * Where a pool's leases go (internal/pool/slots): a slot is freed once, however many paths of a lease
 * free it, so a double release can never give away another lease's slot.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Host from "../../../src/internal/pool/host.js"
import * as Slots from "../../../src/internal/pool/slots.js"

const readyHost = (capacity: number) =>
  Effect.gen(function* () {
    const host = yield* Host.record(yield* Scope.make(), 1, capacity)
    host.status = "ready"
    return host
  })

describe("pool slots", () => {
  it.effect("a slot freed twice frees one: the other lease keeps its slot and the host stays full", () =>
    Effect.gen(function* () {
      const host = yield* readyHost(2)
      const slots = Slots.empty()
      slots.hosts.push(host)
      const first = Slots.reserveExisting(slots)!
      const second = Slots.reserveExisting(slots)!
      assert.strictEqual(host.reserved, 2)
      assert.isUndefined(Slots.reserveExisting(slots), "the host is full")
      yield* first.free
      yield* first.free
      assert.strictEqual(host.reserved, 1, "the second free of one slot frees nothing")
      const third = Slots.reserveExisting(slots)!
      assert.strictEqual(third.host, host)
      assert.isUndefined(Slots.reserveExisting(slots), "one lease's double release gave no slot away")
      yield* second.free
      yield* third.free
      assert.strictEqual(host.reserved, 0)
    })
  )
})
