/**
 * A job's resource samples from the Hub's metrics stream, followed as `huggingface_hub`'s
 * `fetch_job_metrics` follows it: the Hub sends one sample a second while the job runs, never ends the
 * stream (it goes silent once the job has ended, and while it waits for hardware), and answers a job
 * that has ended with a 500. So a pass that stays silent for `Schedules.metricsSilence` (ten samples'
 * time), fails with a 500 or a transient error, or ends, is followed by a look at the job's stage: the
 * stream is reopened while the job runs, and ends once it has ended. A rejection (401/403/404) is final.
 */
import type * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { MetricsSample } from "../../Sandbox.js"
import type { HubError } from "../../SandboxError.js"
import { fromLine } from "../metrics/sample.js"
import * as Hub from "./hub.js"
import { boundedPass } from "./logs.js"

export const jobMetrics = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  schedules: { readonly reconnect: Schedule.Schedule<unknown>; readonly silence: Duration.Duration }
): Stream.Stream<MetricsSample, HubError> => {
  const { reconnect, silence } = schedules
  const pass = boundedPass(hub.metrics(namespace, jobId), silence, () => Option.some(silence)).pipe(
    // A 500 (the job has ended) and what is transient end the pass; a 429 no sooner than the Hub says.
    Stream.catchAll(Hub.endPassOnTransient)
  )
  const running = Hub.jobAlive(hub, namespace, jobId)
  return Stream.repeat(pass, reconnect.pipe(Schedule.checkEffect(() => running))).pipe(Stream.map(fromLine))
}
