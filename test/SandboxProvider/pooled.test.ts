/**
 * The seam's by-id operations on a pooled id (`<host>.<local>`), routed once for every provider, over
 * in-process fake hosts (test/support/fakeHost.ts): `kill` deletes only that sandbox on its host, with or
 * without an HttpClient in context. The real hosts (local and emulated HF Jobs) are in
 * test/SandboxPool.test.ts and test/SandboxPool/hfJobs.test.ts.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as SandboxPool from "hf-sandbox/SandboxPool"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as FakeHost from "../support/fakeHost.js"

describe("SandboxProvider by pooled id", () => {
  it.live("kill deletes only that sandbox on its host, which keeps running; again, it is NotFound", () =>
    Effect.gen(function* () {
      const k = FakeHost.knobs()
      yield* Effect.gen(function* () {
        const a = yield* SandboxPool.make()
        const b = yield* SandboxPool.make()
        const host = k.hosts[0]!
        const [hostId, localA] = a.id.split(".")
        assert.strictEqual(hostId, host.id)
        // Without an HttpClient in context (the accessor never required one), through `fetch`.
        yield* Effect.promise(() =>
          Effect.runPromise(SandboxProvider.kill(a.id).pipe(Effect.provide(FakeHost.layer(k))))
        )
        assert.isFalse(host.sandboxes.has(localA!), "deleted on its host")
        assert.isTrue(host.sandboxes.has(b.id.split(".")[1]!), "the other sandbox stays")
        assert.isFalse(host.closed, "the host keeps running")
        assert.include(host.requests, `DELETE /v1/sandboxes/${localA}`)
        const again = yield* Effect.flip(SandboxProvider.kill(a.id))
        assert.strictEqual(again._tag, "StartError")
        if (again._tag !== "StartError") return
        assert.strictEqual(again.reason, "NotFound")
        assert.include(again.message, `kill sandbox ${a.id}`)
        assert.include(again.message, `no longer exists on host ${hostId}`)
        const noHost = yield* Effect.flip(SandboxProvider.kill("fake-gone.0123456789abcdef"))
        assert.strictEqual(noHost._tag === "StartError" ? noHost.reason : undefined, "NotFound")
      }).pipe(
        Effect.scoped,
        Effect.provide(SandboxPool.layer()),
        Effect.provide(FakeHost.layer(k)),
        Effect.provide(NodeHttpClient.layerUndici)
      )
    })
  )
})
