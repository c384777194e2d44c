/**
 * A pooled sandbox's log (internal/pool/hostLog): its host's log filtered to the lines that name it, its
 * `tail` counted in its own lines, and `follow` ending with its delete line.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as HostLog from "../../../src/internal/pool/hostLog.js"
import type * as SandboxProvider from "../../../src/SandboxProvider.js"

const A = "0123456789abcdef"
const B = "fedcba9876543210"
const prefix = "hf-sandbox rpc-server:"

const soFar = [
  `${prefix} host mode: capacity 4, homes in /tmp/h, isolation uid+landlock`,
  `${prefix} created 2 sandbox(es): ${A} ${B}`,
  `${prefix} sandbox ${B} deleted`,
  `${prefix} created 1 sandbox(es): 00000000000000aa`,
  `${prefix} sandbox ${A}: a request of its failed`
]
const later = [`${prefix} sandbox ${A} idle for 5s: deleting it`, `${prefix} sandbox ${A} deleted`, `${prefix} after`]

/** A host's log: `soFar`, and with `follow` the lines after; the calls it got. */
const host = () => {
  const asked: Array<SandboxProvider.LogOptions> = []
  const logs = (options: SandboxProvider.LogOptions) => {
    asked.push(options)
    return Stream.fromIterable(options.follow ? [...soFar, ...later] : soFar)
  }
  return { asked, logs }
}

const lines = <E>(stream: Stream.Stream<string, E>) => Effect.map(Stream.runCollect(stream), Chunk.toArray)

describe("a pooled sandbox's log", () => {
  it.effect("the host's lines that name it; with follow, up to its delete line", () =>
    Effect.gen(function* () {
      const { logs } = host()
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, B, {})), [soFar[1], soFar[2]])
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, A, { follow: true })), [
        soFar[1],
        soFar[4],
        later[0],
        later[1]
      ])
    })
  )

  it.effect("tail counts its own lines; with follow, the lines after the log so far follow them once", () =>
    Effect.gen(function* () {
      const { asked, logs } = host()
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, A, { tail: 1 })), [soFar[4]])
      assert.deepStrictEqual(asked, [{}], "the host's whole log so far, not its own tail")
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, A, { tail: 1, follow: true })), [
        soFar[4],
        later[0],
        later[1]
      ])
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, B, { tail: 5, follow: true })), [soFar[1], soFar[2]])
      assert.deepStrictEqual(yield* lines(HostLog.of(logs, A, { tail: 0 })), [])
    })
  )
})
