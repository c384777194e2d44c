/**
 * Shared pieces of the benchmarks: the local provider with a real HttpClient, and percentiles.
 * Benchmarks print figures; they never pass or fail on speed.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Layer from "effect/Layer"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"

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
