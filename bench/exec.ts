/**
 * exec round-trip through the client, beside spawning the same program directly from Node in the
 * same run. Target (issue 2): exec("true") p50 ≤ 1.5× the direct spawn.
 */
import { spawn } from "node:child_process"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live, ms, now, percentile } from "./support.js"

const ROUNDS = 10
const PER_ROUND = 50

const spawnTrue = () =>
  new Promise<void>((resolve, reject) => {
    const child = spawn("true", { stdio: ["ignore", "pipe", "pipe"] })
    child.on("error", reject)
    child.on("close", () => resolve())
  })

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const direct: Array<number> = []
  const viaShell: Array<number> = []
  const viaArgv: Array<number> = []
  const time = <A, E>(into: Array<number>, effect: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const t0 = now()
      yield* effect
      into.push(now() - t0)
    })
  // Warm up both paths (JIT, connection pool, page cache).
  for (let i = 0; i < 30; i++) {
    yield* sb.exec("true")
    yield* Effect.promise(spawnTrue)
  }
  // Interleaved rounds, so that noise from the shared machine hits every series alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < PER_ROUND; i++) yield* time(direct, Effect.promise(spawnTrue))
    for (let i = 0; i < PER_ROUND; i++) yield* time(viaShell, sb.exec("true"))
    for (let i = 0; i < PER_ROUND; i++) yield* time(viaArgv, sb.exec(["true"]))
  }
  const base = percentile(direct, 50)
  const row = (name: string, samples: Array<number>) =>
    console.log(
      `${name.padEnd(34)} p50 ${ms(percentile(samples, 50)).padStart(9)}  p99 ${ms(percentile(samples, 99)).padStart(
        9
      )}  p50 ratio ${(percentile(samples, 50) / base).toFixed(2)}x`
    )
  console.log(`exec round-trip, ${ROUNDS * PER_ROUND} samples each (baseline: direct spawn from Node)`)
  row("node spawn('true') [baseline]", direct)
  row('sb.exec("true")  (via /bin/sh)', viaShell)
  row('sb.exec(["true"]) (argv)', viaArgv)
  console.log(`target: sb.exec("true") p50 <= 1.50x baseline -> ${(percentile(viaShell, 50) / base).toFixed(2)}x`)
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
