import { Effect } from "effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "/work/wt-s2/test/support/local.ts"
const one = Effect.gen(function* () {
  const t0 = Date.now()
  let t1 = 0
  yield* Effect.gen(function* () {
    const sb = yield* Sandbox.make()
    t1 = Date.now()
    yield* sb.exec("true")
  }).pipe(Effect.scoped)
  const t2 = Date.now()
  console.log(`start ${t1 - t0} ms, exec+close ${t2 - t1} ms`)
})
Effect.runPromise(Effect.repeatN(one, 5).pipe(Effect.provide(localLayer())))
