/**
 * A resource sample on the wire (the HF Jobs metrics' snake_case fields, which the sandbox's server
 * answers too) and as users see it (`Sandbox.MetricsSample`), and the interval users ask for.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Protocol from "../../Protocol.js"
import type { GpuSample, MetricsOptions, MetricsSample } from "../../Sandbox.js"
import { InvalidArgumentError } from "../../SandboxError.js"

/** A line of JSON as a sample, or none when it is not one (a ping, a newer event). */
export const decodeLine: (line: string) => Option.Option<Protocol.MetricsLine> = Schema.decodeUnknownOption(
  Schema.parseJson(Protocol.MetricsLine)
)

/** The sample a user sees: camelCase, GPUs as a list sorted by id. */
export const fromLine = (line: Protocol.MetricsLine): MetricsSample => ({
  cpuPercent: line.cpu_usage_pct,
  cpuMillicores: line.cpu_millicores,
  memoryUsedBytes: line.memory_used_bytes,
  memoryTotalBytes: line.memory_total_bytes,
  rxBps: line.rx_bps,
  txBps: line.tx_bps,
  gpus: Object.keys(line.gpus ?? {})
    .sort()
    .map(
      (id): GpuSample => ({
        id,
        utilization: line.gpus![id]!.utilization,
        memoryUsedBytes: line.gpus![id]!.memory_used_bytes,
        memoryTotalBytes: line.gpus![id]!.memory_total_bytes
      })
    )
})

/** The server's bounds on the time between two samples. */
const MIN_INTERVAL = Duration.millis(100)
const MAX_INTERVAL = Duration.hours(1)

/** The interval asked for (default 1 second), checked against the server's bounds. */
export const intervalOf = (options: MetricsOptions): Effect.Effect<Duration.Duration, InvalidArgumentError> => {
  const raw = options.interval ?? "1 second"
  const interval = Duration.decodeUnknown(raw)
  if (
    Option.isNone(interval) ||
    Duration.lessThan(interval.value, MIN_INTERVAL) ||
    Duration.greaterThan(interval.value, MAX_INTERVAL)
  ) {
    return Effect.fail(
      new InvalidArgumentError({
        operation: "metrics",
        argument: "interval",
        detail: `${JSON.stringify(String(raw))} is not a duration from 100 millis to 1 hour (e.g. "2 seconds")`
      })
    )
  }
  return Effect.succeed(interval.value)
}
