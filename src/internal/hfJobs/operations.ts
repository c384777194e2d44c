/**
 * Operations on sandboxes by id, beyond the one a program holds: find, list, kill, read the log and the
 * metrics. Ids are checked before any request; jobs that are not sandboxes are refused.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import type { SandboxInfo, Service } from "../../HfJobs.js"
import { StartError } from "../../SandboxError.js"
import * as Schedules from "../../Schedules.js"
import * as SandboxName from "../sandboxName.js"
import * as StartErrors from "../startError.js"
import * as Sweep from "../sweep.js"
import * as Validate from "../validate.js"
import { hubFailure, type ProviderContext } from "./context.js"
import * as Hub from "./hub.js"
import * as JobLabels from "./jobLabels.js"
import * as JobRef from "./jobRef.js"
import { cancelJob, isSandboxJob, LABEL } from "./jobs.js"
import { jobLogs, timingOf } from "./logs.js"
import { jobMetrics } from "./metrics.js"

/** Finds a live sandbox job by `[namespace/]id`, refusing anything else (a malformed id before any request). */
export const findSandbox = (ctx: ProviderContext, ref: string, explicitNamespace: string | undefined) =>
  Effect.gen(function* () {
    const parsed = JobRef.parse(ref, explicitNamespace)
    if (Either.isLeft(parsed)) {
      return yield* new StartError({ provider: "hf-jobs", reason: "InvalidOptions", detail: parsed.left })
    }
    const id = parsed.right.id
    const client = yield* ctx.hub
    const namespace = yield* ctx.namespaceOf(parsed.right.namespace)
    const job = yield* client
      .getJob(namespace, id)
      .pipe(Hub.retryTransient((yield* Schedules.Schedules).hubRetry), Effect.mapError(hubFailure))
    if (!isSandboxJob(job)) {
      return yield* new StartError({
        provider: "hf-jobs",
        reason: "NotReady",
        detail: `job ${id} is not an hf-sandbox sandbox (it lacks the hf-sandbox labels)`
      })
    }
    return { client, job, namespace: job.owner?.name ?? namespace }
  })

/**
 * Sandbox jobs of a namespace (default: the token's user); only live ones unless `all` or `stage`. The
 * labels, name and stages are filtered by the Hub (`label=k=v`, `stage=S`, as `huggingface_hub` asks).
 */
export const list = (ctx: ProviderContext, listOptions: Parameters<Service["list"]>[0] = {}) =>
  Effect.gen(function* () {
    const filter = yield* listFilter(listOptions)
    const client = yield* ctx.hub
    const namespace = yield* ctx.namespaceOf(listOptions.namespace)
    const jobs = yield* client.listJobs(namespace, filter, (yield* Schedules.Schedules).hubRetry)
    // The Hub answered with the filter's stages and labels only (as huggingface_hub's list_jobs relies
    // on); its sandbox label alone does not make a job one of ours.
    const sandboxes = jobs.filter((job) => isSandboxJob(job))
    yield* Effect.annotateCurrentSpan("hfjobs.count", sandboxes.length)
    return sandboxes.map(
      (job): SandboxInfo => ({
        id: job.id,
        namespace: job.owner?.name ?? namespace,
        stage: job.status.stage,
        image: job.dockerImage ?? job.spaceId ?? undefined,
        flavor: job.flavor ?? undefined,
        createdAt: job.createdAt ?? undefined,
        labels: job.labels ?? {},
        url: `${ctx.config.endpoint}/jobs/${job.owner?.name ?? namespace}/${job.id}`,
        name: job.labels?.[LABEL.name]
      })
    )
  }).pipe(
    Effect.mapError((error) => StartErrors.during("list sandboxes", error)),
    Effect.withSpan("HfJobs.list", {
      attributes: { "sandbox.provider": "hf-jobs", "hfjobs.all": listOptions.all ?? false }
    })
  )

/** The Hub's filter of a listing: its options checked (a bad one fails naming it, before any request). */
const listFilter = (listOptions: Parameters<Service["list"]>[0] & {}) =>
  Effect.try({
    try: (): Hub.ListFilter => {
      const labels = SandboxName.checkLabels("labels", listOptions.labels) ?? {}
      const badLabel = JobLabels.problem(labels)
      if (badLabel !== undefined) throw new Validate.Invalid("labels", badLabel)
      const name = listOptions.name === undefined ? undefined : SandboxName.check("name", listOptions.name)
      const stage = listOptions.stage
      const stages = stage === undefined ? undefined : typeof stage === "string" ? [stage] : stage
      if (stages?.some((s) => typeof s !== "string" || s.length === 0)) {
        throw new Validate.Invalid("stage", `${JSON.stringify(stage)} is not a job stage (e.g. "RUNNING")`)
      }
      return {
        // The sandbox label last: a filter cannot widen the listing to jobs that are not sandboxes.
        labels: { ...labels, ...(name !== undefined ? { [LABEL.name]: name } : {}), [LABEL.sandbox]: "1" },
        stages: stages?.map((s) => s.toUpperCase()) ?? (listOptions.all ? undefined : Hub.LIVE_STAGES)
      }
    },
    catch: (cause) =>
      new StartError({
        provider: "hf-jobs",
        reason: "InvalidOptions",
        detail: `invalid list options: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })

/**
 * Stops the live sandbox jobs that match every filter (labels, name, created longer ago than
 * `olderThan`) and returns them; with `dryRun`, only returns them.
 */
export const sweep = (ctx: ProviderContext, sweepOptions: Parameters<Service["sweep"]>[0] = {}) =>
  Effect.gen(function* () {
    const filters = yield* Sweep.filters("hf-jobs", sweepOptions)
    const live = yield* list(ctx, { namespace: sweepOptions.namespace, labels: filters.labels, name: filters.name })
    const matches = yield* Sweep.select(live, filters.olderThan)
    if (sweepOptions.dryRun) return matches
    const client = yield* ctx.hub
    const { cancelRetry } = yield* Schedules.Schedules
    // The listing found each one a sandbox job: it is cancelled as listed, not fetched again as `kill` does.
    return yield* Sweep.stopAll(matches, (s) => cancelJob(client, s.namespace, s.id, cancelRetry))
  }).pipe(
    Effect.mapError((error) => StartErrors.during("sweep sandboxes", error)),
    Effect.withSpan("HfJobs.sweep", {
      attributes: { "sandbox.provider": "hf-jobs", "sweep.dryRun": sweepOptions.dryRun ?? false }
    })
  )

/** Stops a sandbox by id (cancels its job); refuses jobs that are not sandboxes. */
export const kill = (ctx: ProviderContext, id: string, killOptions: Parameters<Service["kill"]>[1] = {}) =>
  Effect.gen(function* () {
    const { client, job, namespace } = yield* findSandbox(ctx, id, killOptions.namespace)
    yield* cancelJob(client, namespace, job.id, (yield* Schedules.Schedules).cancelRetry)
  }).pipe(
    Effect.mapError((error) => StartErrors.during(`kill sandbox ${id}`, error)),
    Effect.withSpan("HfJobs.kill", { attributes: { "sandbox.id": id, "sandbox.provider": "hf-jobs" } })
  )

/** A sandbox's refusal to attach to a job that has ended. */
export const notRunning = (id: string, stage: string) =>
  new StartError({ provider: "hf-jobs", reason: "JobFailed", detail: `sandbox ${id} is not running (${stage})` })

/**
 * A running sandbox's resource samples by id, from the Hub's metrics stream alone: neither its tunnel nor
 * its log is looked up, since the samples do not come from its server. (The Hub sends one a second: no
 * interval applies.)
 */
export const metrics = (ctx: ProviderContext, id: string) =>
  Stream.unwrap(
    Effect.gen(function* () {
      const { client, job, namespace } = yield* findSandbox(ctx, id, undefined)
      if (Hub.isTerminal(job.status.stage)) return yield* notRunning(id, job.status.stage)
      // The provider's own `schedules` option wins over the Context value for its by-id calls.
      const schedules = Schedules.override(yield* Schedules.Schedules, ctx.config.schedules)
      return jobMetrics(client, namespace, job.id, {
        reconnect: schedules.logReconnect,
        silence: Duration.decode(schedules.metricsSilence)
      })
    })
  ).pipe(
    Stream.mapError((error) => StartErrors.during(`read the metrics of sandbox ${id}`, error)),
    Stream.withSpan("HfJobs.metrics", { attributes: { "sandbox.id": id, "sandbox.provider": "hf-jobs" } })
  )

/** A sandbox's log by id: the log so far, or with `follow` until the sandbox ends. */
export const logs = (ctx: ProviderContext, id: string, logOptions: Parameters<Service["logs"]>[1] = {}) =>
  Stream.unwrap(
    Effect.map(
      Effect.zip(findSandbox(ctx, id, logOptions.namespace), Schedules.Schedules),
      ([{ client, job, namespace }, current]) => {
        // The provider's own `schedules` option wins over the Context value for its by-id calls.
        const schedules = Schedules.override(current, ctx.config.schedules)
        return jobLogs(client, namespace, job.id, logOptions, schedules.logReconnect, timingOf(schedules))
      }
    )
  ).pipe(
    Stream.mapError((error) => StartErrors.during(`read the log of sandbox ${id}`, error)),
    Stream.withSpan("HfJobs.logs", {
      attributes: {
        "sandbox.id": id,
        "sandbox.provider": "hf-jobs",
        "logs.follow": logOptions.follow ?? false,
        ...(logOptions.tail !== undefined ? { "logs.tail": logOptions.tail } : {})
      }
    })
  )
