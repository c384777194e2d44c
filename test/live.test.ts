/**
 * The live conformance suite (test/live/suite.ts) against the Hub emulator with realistic delays: the
 * same code `npm run test:live` runs on huggingface.co, so it cannot rot. Every check must pass here.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Testing from "hf-sandbox/testing"
import * as Live from "./live/suite.js"
import { emulatorLayer } from "./support/hub.js"

describe("live conformance suite, on the emulator", () => {
  it.live(
    "every check holds, and the report names each fact",
    () =>
      Effect.gen(function* () {
        const emulator = yield* Testing.make(Testing.realistic)
        const report = yield* Live.run({
          name: "emulator",
          endpoint: emulator.url,
          token: emulator.token,
          namespace: emulator.user,
          image: "python:3.12-slim",
          flavor: "cpu-basic",
          roundTripBytes: 8 * 1024 * 1024,
          execSamples: 5,
          startTimeout: "60 seconds",
          // The realistic image has no cloudflared: the server fetches the pinned release from the emulated host.
          cloudflared: emulator.cloudflaredRelease(),
          // The emulator replays a log in one burst: a snapshot need not wait 5 s for more (see Target).
          schedules: { logQuietWindow: "1 second" }
        }).pipe(
          Effect.provide(
            Layer.provideMerge(
              emulatorLayer(emulator, false, { schedules: { logQuietWindow: "1 second" } }),
              NodeContext.layer
            )
          )
        )
        console.log(Live.format(report))
        const failed = report.checks.filter((check) => !check.ok)
        assert.deepStrictEqual(failed, [])
        assert.deepStrictEqual(
          report.timings.map((t) => t.transport),
          ["tunnel", "proxy"]
        )
        // The emulated Jobs proxy forwards the caller's Authorization header (the cautious assumption until a
        // live run says otherwise), and the job's server says so in its log without the value.
        const forwarded = report.checks.find((check) => check.name.includes("forward Authorization"))
        assert.match(forwarded?.detail ?? "", /^yes/)
        // The tunnel's cloudflared came the way a stock image gets it: downloaded, after a redirect, verified.
        const downloads = yield* emulator.downloads
        assert.isTrue(downloads.some((d) => d.host === "github.com" && d.status === 302))
        const names = report.checks.map((check) => check.name).join("\n")
        for (const fact of [
          "page size and filters",
          "cancel's answer",
          "create command",
          "fresh-name DNS",
          "forward Authorization",
          "rate-limit headers"
        ]) {
          assert.include(names, fact)
        }
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
