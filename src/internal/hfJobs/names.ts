/**
 * Named HF sandboxes: the name is the job label `hf-sandbox-name`, looked up on the Hub with its label
 * filter. A `make({ name })` checks it is free before creating the job, and after creating looks again:
 * of the live sandbox jobs with the name, the earlier created (then the lower id) keeps it; every other
 * creator fails with `NameTaken`, and its provision's release cancels its own job. The Hub gives a job
 * its `createdAt` when it creates it, and lists it from then on, so a creator that sees no earlier job
 * after its own create is the earliest: every racer agrees on one winner.
 */
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import { type HubError, StartError } from "../../SandboxError.js"
import * as SandboxName from "../sandboxName.js"
import * as Hub from "./hub.js"
import { isSandboxJob, LABEL } from "./jobs.js"

/** The live sandbox jobs named `name` in a namespace, the one that keeps the name first. */
const liveNamed = (
  client: Hub.HubClient,
  namespace: string,
  name: string,
  retry: Schedule.Schedule<unknown, HubError>
): Effect.Effect<ReadonlyArray<Hub.JobInfo>, HubError> =>
  Effect.map(
    client.listJobs(
      namespace,
      { labels: { [LABEL.sandbox]: "1", [LABEL.name]: name }, stages: Hub.LIVE_STAGES },
      retry
    ),
    // The Hub answered with live jobs of that name only; its sandbox label alone does not make a job ours.
    (jobs) => sorted(jobs.filter((job) => isSandboxJob(job)))
  )

const sorted = (jobs: ReadonlyArray<Hub.JobInfo>) =>
  [...jobs].sort((a, b) =>
    SandboxName.byAge(
      { id: a.id, createdAt: a.createdAt ?? undefined },
      { id: b.id, createdAt: b.createdAt ?? undefined }
    )
  )

/** The refusal of a second live sandbox with a name, naming the one that has it. */
export const taken = (name: string, holder: Hub.JobInfo, namespace: string) =>
  new StartError({
    provider: "hf-jobs",
    reason: "NameTaken",
    holder: { id: holder.id, name },
    detail:
      `sandbox ${holder.id} (${holder.status.stage}) in ${namespace} is already named ${JSON.stringify(name)}: ` +
      `attach to it with Sandbox.connect({ name }) or Sandbox.getOrCreate({ name }), stop it with ` +
      `SandboxProvider.kill("${holder.id}"), or choose another name`
  })

/** Before creating: fails with {@link taken} when a live sandbox already has the name. */
export const checkFree = (
  client: Hub.HubClient,
  namespace: string,
  name: string,
  retry: Schedule.Schedule<unknown, HubError>,
  givenUp: ReadonlySet<string> = new Set()
): Effect.Effect<void, HubError | StartError> =>
  Effect.flatMap(liveNamed(client, namespace, name, retry), (jobs) => {
    const holder = jobs.find((job) => !givenUp.has(job.id))
    return holder === undefined ? Effect.void : Effect.fail(taken(name, holder, namespace))
  })

/**
 * After creating `own`: fails with {@link taken} when an earlier live sandbox has the name (`own` lost a
 * race, and its release cancels it). `own` counts even when the listing does not show it yet.
 */
export const settle = (
  client: Hub.HubClient,
  namespace: string,
  name: string,
  own: Hub.JobInfo,
  retry: Schedule.Schedule<unknown, HubError>,
  givenUp: ReadonlySet<string> = new Set()
): Effect.Effect<void, HubError | StartError> =>
  Effect.flatMap(liveNamed(client, namespace, name, retry), (jobs) => {
    const [winner] = sorted([own, ...jobs.filter((job) => job.id !== own.id && !givenUp.has(job.id))])
    return winner === undefined || winner.id === own.id ? Effect.void : Effect.fail(taken(name, winner, namespace))
  })
