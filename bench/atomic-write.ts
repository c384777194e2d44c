/**
 * The cost of atomic single-request writes: `files.write` of 1 KiB and 1 MiB through the client, replacing
 * an existing file through a temp file and a rename (the default) beside the same write in place
 * (`inPlace: true`), interleaved in the same run so that both see the same machine. Prints p50 and p90 of
 * each and the ratio of the p50s.
 *
 *   npx tsx bench/atomic-write.ts
 */
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live, ms, now, percentile } from "./support.js"

const KiB = 1024
const RUNS = Number(process.env.BENCH_RUNS ?? 500)
const SIZES = [
  ["1 KiB", KiB],
  ["1 MiB", 1024 * KiB]
] as const

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  for (const [label, size] of SIZES) {
    const data = new Uint8Array(size).fill(7)
    const path = `bench-atomic/${size}.bin`
    yield* sb.files.write(path, data)
    const atomic: Array<number> = []
    const inPlace: Array<number> = []
    const time = (into: Array<number>, write: Effect.Effect<void, unknown>) =>
      Effect.suspend(() => {
        const t0 = now()
        return Effect.map(write, () => {
          into.push(now() - t0)
        })
      })
    // Warm-up, then alternate so that drift in the machine's load hits both alike.
    yield* Effect.repeatN(sb.files.write(path, data), 20)
    for (let i = 0; i < RUNS; i++) {
      yield* time(atomic, sb.files.write(path, data))
      yield* time(inPlace, sb.files.write(path, data, { inPlace: true }))
    }
    const a = percentile(atomic, 50)
    const p = percentile(inPlace, 50)
    console.log(
      `${label}: temp+rename p50 ${ms(a)} p90 ${ms(percentile(atomic, 90))} | in place p50 ${ms(p)} p90 ${ms(percentile(inPlace, 90))} | ratio ${(a / p).toFixed(3)}x (${RUNS} runs each)`
    )
  }
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
