/**
 * Sweeps (`SandboxProvider.sweep`, `HfJobs.sweep`, `hf-sandbox kill --label/--older-than/--name`): the
 * filters checked, the sandboxes old enough selected, and every selected one stopped whatever the others
 * do.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { StartError } from "../SandboxError.js"
import * as SandboxName from "./sandboxName.js"
import * as Validate from "./validate.js"

/** A sweep's filters, as given. */
export interface Filters {
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly name?: string | undefined
  readonly olderThan?: Duration.DurationInput | string | undefined
}

/** The filters checked: a bad one fails naming the option, before anything is listed. */
export const filters = (
  provider: string,
  options: Filters
): Effect.Effect<
  {
    readonly labels: Readonly<Record<string, string>> | undefined
    readonly name: string | undefined
    readonly olderThan: Duration.Duration | undefined
  },
  StartError
> =>
  Effect.try({
    try: () => ({
      labels: SandboxName.checkLabels("labels", options.labels),
      name: options.name === undefined ? undefined : SandboxName.check("name", options.name),
      olderThan: options.olderThan === undefined ? undefined : Validate.duration("olderThan", options.olderThan)
    }),
    catch: (cause) =>
      new StartError({
        provider,
        reason: "InvalidOptions",
        detail: `invalid sweep options: ${cause instanceof Error ? cause.message : String(cause)}`,
        during: "sweep sandboxes"
      })
  })

/** Whether a sandbox was created before `cutoff` (epoch ms); one of unknown age is not. */
const createdBefore = (createdAt: string | undefined, cutoff: number): boolean => {
  const at = createdAt === undefined ? Number.NaN : Date.parse(createdAt)
  return !Number.isNaN(at) && at < cutoff
}

/** The sandboxes created longer ago than `olderThan` (all, without it). */
export const select = <A extends { readonly createdAt: string | undefined }>(
  sandboxes: ReadonlyArray<A>,
  olderThan: Duration.Duration | undefined
): Effect.Effect<ReadonlyArray<A>> =>
  olderThan === undefined
    ? Effect.succeed(sandboxes)
    : Effect.map(Clock.currentTimeMillis, (now) =>
        sandboxes.filter((s) => createdBefore(s.createdAt, now - Duration.toMillis(olderThan)))
      )

/** Stops every one (8 at a time); when some could not be stopped, fails with the first error after the rest. */
export const stopAll = <A, E, R>(
  sandboxes: ReadonlyArray<A>,
  stop: (sandbox: A) => Effect.Effect<void, E, R>
): Effect.Effect<ReadonlyArray<A>, E, R> =>
  Effect.flatMap(
    Effect.forEach(sandboxes, (s) => Effect.either(stop(s)), { concurrency: 8 }),
    (results) => {
      const failed = results.find(Either.isLeft)
      return failed === undefined ? Effect.succeed(sandboxes) : Effect.fail(failed.left)
    }
  )
