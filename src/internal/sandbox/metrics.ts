/**
 * `sb.metrics`: the sandbox's resource samples, from its provider when the platform measures them (HF
 * Jobs' metrics stream), else from the sandbox's own server (`/v1/metrics`). Either way the stream ends
 * when the sandbox does: the Jobs stream once the job has ended, the server's when its provider says the
 * server has exited (the connection it cut is no failure then).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MetricsSample, Sandbox } from "../../Sandbox.js"
import type { HubError, OperationError } from "../../SandboxError.js"
import { fromLine, intervalOf } from "../metrics/sample.js"
import { guardStream, type Running } from "./running.js"

/** The server's samples, ending quietly when the server is known to have exited. */
const fromServer = (running: Running, interval: Duration.Duration): Stream.Stream<MetricsSample, OperationError> =>
  Stream.map(running.wire.metrics(interval), fromLine).pipe(
    Stream.catchTag("ConnectionLostError", (error) =>
      Stream.unwrap(
        Effect.map(running.wire.serverExit, (reason) => (Option.isSome(reason) ? Stream.empty : Stream.fail(error)))
      )
    )
  )

export const metrics =
  (running: Running): Sandbox["metrics"] =>
  (options = {}) =>
    Stream.unwrap(
      Effect.map(intervalOf(options), (interval) =>
        guardStream<MetricsSample, OperationError | HubError, never>(
          running,
          "metrics",
          running.endpoint.metrics !== undefined ? running.endpoint.metrics(options) : fromServer(running, interval),
          {
            "metrics.source": running.endpoint.metrics !== undefined ? running.endpoint.provider : "server",
            "metrics.interval_ms": Duration.toMillis(interval)
          }
        )
      )
    )
