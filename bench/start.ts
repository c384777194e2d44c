/**
 * Local `make` → ready, beside the bare start of the Python interpreter in the same run.
 * Target (issue 2): p50 ≤ 250 ms.
 */
import { spawnSync } from "node:child_process"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live, ms, now, percentile } from "./support.js"

const RUNS = 25

const program = Effect.gen(function* () {
  const python: Array<number> = []
  const ready: Array<number> = []
  const terminate: Array<number> = []
  yield* Sandbox.make().pipe(Effect.scoped) // warm-up
  for (let run = 0; run < RUNS; run++) {
    const t0 = now()
    spawnSync("python3", ["-c", "pass"])
    python.push(now() - t0)
    const [up, down] = yield* Effect.gen(function* () {
      const t1 = now()
      const sb = yield* Sandbox.make()
      const t2 = now()
      yield* sb.terminate
      return [t2 - t1, now() - t2] as const
    }).pipe(Effect.scoped)
    ready.push(up)
    terminate.push(down)
  }
  const base = percentile(python, 50)
  const row = (name: string, samples: Array<number>) =>
    console.log(
      `${name.padEnd(40)} p50 ${ms(percentile(samples, 50)).padStart(10)}  p99 ${ms(percentile(samples, 99)).padStart(10)}  ${(
        percentile(samples, 50) / base
      ).toFixed(2)}x baseline`
    )
  console.log(`local sandbox start, ${RUNS} runs (baseline: python3 -c pass)`)
  row("python3 -c pass [baseline]", python)
  row("Sandbox.make -> ready", ready)
  row("terminate (server and workdir gone)", terminate)
  console.log(`target: make -> ready p50 <= 250 ms -> ${ms(percentile(ready, 50))}`)
})

Effect.runPromise(program.pipe(Effect.provide(Live)))
