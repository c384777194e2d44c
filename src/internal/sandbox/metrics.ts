/**
 * `sb.metrics`: the sandbox's resource samples, from its provider when the platform measures them (HF
 * Jobs' metrics stream), else from the sandbox's own server (`/v1/metrics`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { MetricsSample, Sandbox } from "../../Sandbox.js"
import type { HubError, OperationError } from "../../SandboxError.js"
import { fromLine, intervalOf } from "../metrics/sample.js"
import { guardStream, type Running } from "./running.js"

export const metrics =
  (running: Running): Sandbox["metrics"] =>
  (options = {}) =>
    Stream.unwrap(
      Effect.map(intervalOf(options), (interval) =>
        guardStream<MetricsSample, OperationError | HubError, never>(
          running,
          "metrics",
          running.endpoint.metrics !== undefined
            ? running.endpoint.metrics(options)
            : Stream.map(running.wire.metrics(interval), fromLine),
          {
            "metrics.source": running.endpoint.metrics !== undefined ? running.endpoint.provider : "server",
            "metrics.interval_ms": Duration.toMillis(interval)
          }
        )
      )
    )
