/**
 * Shared pieces of the benchmarks: the local provider with a real HttpClient, and percentiles.
 * Benchmarks print figures; they never pass or fail on speed.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Testing from "hf-sandbox/testing"

export const Live = LocalSandbox.layer().pipe(
  Layer.provideMerge(NodeContext.layer),
  Layer.merge(NodeHttpClient.layerUndici)
)

export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

export const ms = (n: number) => `${n.toFixed(2)} ms`

export const now = () => performance.now()

/**
 * The HF Jobs provider on a Hub emulator made by the bench, with an HttpClient routed to it; its DNS
 * fallback is off (`publicDns: false`), as no public resolver knows the emulated tunnels.
 */
export const emulatedHfJobs = (emulator: Testing.HubEmulator) =>
  Layer.mergeAll(
    HfJobs.layer({ token: emulator.token, endpoint: emulator.url, publicDns: false }).pipe(
      Layer.provide(NodeContext.layer)
    ),
    Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emulator))).pipe(
      Layer.provide(NodeHttpClient.layerUndici)
    )
  )
