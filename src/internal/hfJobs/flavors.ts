/**
 * A sandbox made with a list of flavors: one job spec per flavor (each with its own timeout under a spend
 * cap), and the fallback from one to the next when the Hub keeps a job in SCHEDULING (no machine free)
 * longer than `Schedules.flavorFallback`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { StartError } from "../../SandboxError.js"
import { defaults } from "./config.js"
import { hubFailure } from "./context.js"
import * as Hub from "./hub.js"
import type { HfSpec } from "./sandboxOptions.js"
import * as SpendCap from "./spendCap.js"

/** One job of a sandbox: its spec, with the flavor that job is created with. */
export interface Attempt extends HfSpec {
  readonly flavor: string
}

/**
 * The spec of each attempt, in order: one per flavor (the default flavor when none is given), each with
 * the lifetime its price allows under `maxCost`. The catalog is asked only when there is a cap.
 */
export const attemptsOf = (client: Hub.HubClient, spec: HfSpec): Effect.Effect<ReadonlyArray<Attempt>, StartError> => {
  const flavors = spec.flavors.length > 0 ? spec.flavors : [defaults.flavor]
  if (spec.maxCostMicroUsd === undefined) return Effect.succeed(flavors.map((flavor) => ({ ...spec, flavor })))
  const catalog = client.hardware.pipe(Hub.retryTransient(spec.schedules.hubRetry), Effect.mapError(hubFailure))
  return Effect.map(
    SpendCap.timeouts(catalog, flavors, spec.maxCostMicroUsd, spec.lifetime, defaults.lifetime),
    (lifetimes) => flavors.map((flavor, i) => ({ ...spec, flavor, lifetime: lifetimes[i] }))
  )
}

/**
 * Whether the job left SCHEDULING (to RUNNING, or an end the start then reports) within the attempt's
 * `flavorFallback`, checked on `stageCheck`.
 */
const leavesScheduling = (
  client: Hub.HubClient,
  namespace: string,
  job: Hub.JobInfo,
  spec: HfSpec
): Effect.Effect<boolean, StartError> =>
  job.status.stage !== "SCHEDULING"
    ? Effect.succeed(true)
    : client
        .getJob(namespace, job.id)
        .pipe(
          Hub.retryTransient(spec.schedules.hubRetry),
          Effect.mapError(hubFailure),
          Effect.repeat({ schedule: spec.schedules.stageCheck, until: (j) => j.status.stage !== "SCHEDULING" }),
          Effect.timeoutOption(spec.schedules.flavorFallback),
          Effect.map(Option.isSome)
        )

/** A job created for one attempt, and how to give it up (cancel it now, and not again at the scope's end). */
export interface Created {
  readonly job: Hub.JobInfo
  readonly request: Hub.JobSpec
  readonly namespace: string
  readonly abandon: Effect.Effect<void>
}

/**
 * Creates the job of each attempt in turn until one leaves SCHEDULING in time; the last attempt is kept
 * whatever its stage (the start's own timeout bounds it). Gives up the ones passed over.
 */
export const firstScheduled = <R>(
  client: Hub.HubClient,
  attempts: ReadonlyArray<Attempt>,
  create: (spec: Attempt) => Effect.Effect<Created, StartError, R>,
  index = 0
): Effect.Effect<Created & { readonly spec: Attempt }, StartError, R> => {
  const spec = attempts[index]!
  return Effect.flatMap(create(spec), (created) =>
    index === attempts.length - 1
      ? Effect.succeed({ ...created, spec })
      : Effect.flatMap(leavesScheduling(client, created.namespace, created.job, spec), (left) =>
          left
            ? Effect.succeed({ ...created, spec })
            : created.abandon.pipe(
                Effect.zipRight(
                  Effect.logInfo(
                    `hf-sandbox: job ${created.job.id} still waits for flavor ${spec.flavor} after ${Duration.format(spec.schedules.flavorFallback)} (SCHEDULING); cancelled it, trying ${attempts[index + 1]!.flavor}`
                  )
                ),
                Effect.zipRight(firstScheduled(client, attempts, create, index + 1))
              )
        )
  )
}
