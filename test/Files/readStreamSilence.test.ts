/**
 * `files.readStream`'s silence bound, end to end: a local sandbox reached through a TCP relay
 * (test/support/relay.ts) that can swallow what the server sends. Only the time a read waits for bytes
 * counts against `timeouts.streamIdle`, never the time the consumer takes between reads.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import { relayed } from "../support/relayed.js"

const { layer: Relayed, relayOf } = relayed()
const MiB = 1024 * 1024

/** A file of `size` bytes (a counter's), written on the local disk: no request through the relay. */
const fileOf = (sb: Sandbox.Sandbox, name: string, size: number) => {
  // A counter modulo 251, filled natively (a loop over 64 Mi bytes cost a third of a second of CPU).
  const bytes = Buffer.alloc(
    size,
    Uint8Array.from({ length: 251 }, (_, i) => i)
  )
  fs.writeFileSync(path.join(sb.details.workdir as string, name), bytes)
  return bytes
}

describe("files.readStream's silence bound", () => {
  it.live("a read whose server stops sending mid-file is a lost connection once it waited streamIdle", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ timeouts: { streamIdle: "1 second" } })
      // Far more than every socket buffer between server and client can hold: once the relay swallows
      // the rest, the client is left waiting mid-file.
      fileOf(sb, "big.bin", 64 * MiB)
      const pull = yield* Stream.toPull(sb.files.readStream("big.bin"))
      assert.isAbove(Chunk.size(yield* pull), 0)
      relayOf(sb).swallow(true)
      const error = yield* Effect.forever(pull).pipe(
        Effect.flip,
        // Generous: the bound is one second; without one, the read would wait here for ever.
        Effect.timeoutFail({
          duration: "30 seconds",
          onTimeout: () => new Error("the stalled readStream did not fail within 30 s: no silence bound")
        })
      )
      assert.isTrue(Option.isSome(error), "the stream ended instead of failing")
      if (Option.isNone(error)) return
      assert.strictEqual(error.value._tag, "ConnectionLostError")
      assert.match(error.value.message, /no data for 1s/)
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("a consumer slower than streamIdle between reads reads the whole file", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ timeouts: { streamIdle: "1 second" } })
      const bytes = fileOf(sb, "slow.bin", 8 * MiB)
      const pull = yield* Stream.toPull(sb.files.readStream("slow.bin"))
      const parts: Array<Uint8Array> = []
      // Two waits, each twice the bound, while the server's bytes wait in the buffers.
      for (let i = 0; i < 2; i++) {
        parts.push(...(yield* pull))
        yield* Effect.sleep("2 seconds")
      }
      const rest = yield* Effect.forever(Effect.map(pull, (chunk) => parts.push(...chunk))).pipe(Effect.flip)
      assert.isTrue(Option.isNone(rest), `the read failed: ${Option.isSome(rest) ? rest.value.message : ""}`)
      assert.deepStrictEqual(Buffer.concat(parts), Buffer.from(bytes))
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )
})
