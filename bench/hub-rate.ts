/**
 * Hub requests per second of a starting tunnel sandbox whose job waits 60 s in SCHEDULING, as a busy GPU
 * queue makes it wait, with the default schedules (stage checks and log reconnects). Target ≤ 1
 * request/s per sandbox, so that 50 parallel starts stay far below the Hub's 1,000 requests per 5
 * minutes. Counted from the emulator's own record of the Hub requests it got.
 *
 * `SANDBOXES` (default 3) start in parallel; `WAIT_SECONDS` (default 60) is the scheduling delay.
 */

import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"

const SANDBOXES = Number(process.env.SANDBOXES ?? 3)
const WAIT_SECONDS = Number(process.env.WAIT_SECONDS ?? 60)

const program = Effect.gen(function* () {
  const emulator = yield* Testing.make({ schedulingDelay: `${WAIT_SECONDS} seconds` })
  const Hf = Layer.mergeAll(
    HfJobs.layer({ token: emulator.token, endpoint: emulator.url, publicDns: false }).pipe(
      Layer.provide(NodeContext.layer)
    ),
    Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emulator))).pipe(
      Layer.provide(NodeHttpClient.layerUndici)
    )
  )
  const hf = yield* Layer.build(Hf)
  // The provider asks whoami once for its life, not per sandbox: done before the clock starts.
  yield* HfJobs.list().pipe(Effect.provide(hf))

  const started = Date.now()
  const ids = yield* Effect.forEach(
    Array.from({ length: SANDBOXES }),
    () =>
      Sandbox.make({ transport: "tunnel", startTimeout: `${WAIT_SECONDS + 120} seconds` }).pipe(
        Effect.provide(hf),
        Effect.map((sb) => sb.id)
      ),
    { concurrency: "unbounded" }
  )
  const requests = (yield* emulator.requests).filter((r) => r.at >= started)
  const jobs = yield* emulator.jobs

  console.log(
    `Hub requests of ${SANDBOXES} tunnel starts that wait ${WAIT_SECONDS} s in SCHEDULING (default schedules)`
  )
  const rates: Array<number> = []
  for (const id of ids) {
    const job = jobs.find((j) => j.id === id)!
    const mine = requests.filter((r) => r.path.includes(id) || (r.route === "create" && r.status === 200))
    // The create of each sandbox is one request of its own; the others name the job in their path.
    const own = mine.filter((r) => r.route !== "create").length + 1
    const seconds = (Date.now() - started) / 1000
    const byRoute = new Map<string, number>()
    for (const r of mine) if (r.route !== "create") byRoute.set(r.route, (byRoute.get(r.route) ?? 0) + 1)
    const rate = own / seconds
    rates.push(rate)
    console.log(
      `${id} (${job.stage}): ${own} requests in ${seconds.toFixed(1)} s = ${rate.toFixed(2)} req/s  ${[...byRoute]
        .map(([route, n]) => `${route} ${n}`)
        .join(", ")}`
    )
  }
  const mean = rates.reduce((a, b) => a + b, 0) / rates.length
  console.log(
    `mean ${mean.toFixed(2)} Hub requests/s per starting sandbox (target <= 1); ${requests.length} requests in all`
  )
})

Effect.runPromise(program.pipe(Effect.scoped))
