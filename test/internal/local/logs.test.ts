/** The ring that keeps an owned local sandbox's last log lines (src/internal/local/logs.ts). */
import { assert, describe, it } from "@effect/vitest"
import { lineRing } from "../../../src/internal/local/logs.js"

describe("lineRing", () => {
  it("keeps the last lines in order, before and after it wraps, and gives the last n of them", () => {
    const ring = lineRing(3)
    assert.deepStrictEqual(ring.last(), [])
    ring.push("a")
    ring.push("b")
    assert.deepStrictEqual(ring.last(), ["a", "b"])
    assert.deepStrictEqual(ring.last(5), ["a", "b"])
    for (const line of ["c", "d", "e", "f", "g"]) ring.push(line)
    assert.deepStrictEqual(ring.last(), ["e", "f", "g"])
    assert.deepStrictEqual(ring.last(2), ["f", "g"])
    assert.deepStrictEqual(ring.last(0), [])
    assert.deepStrictEqual(ring.last(-1), [])
  })

  it("holds 10,000 lines of 25,000 as the log did: the newest, oldest first", () => {
    const ring = lineRing(10_000)
    for (let i = 0; i < 25_000; i++) ring.push(String(i))
    const kept = ring.last()
    assert.strictEqual(kept.length, 10_000)
    assert.strictEqual(kept[0], "15000")
    assert.strictEqual(kept.at(-1), "24999")
    assert.deepStrictEqual(ring.last(2), ["24998", "24999"])
  })
})
