/**
 * The named schedules hf-sandbox waits and retries on. Each is a value with a good default;
 * every one can be replaced per sandbox through `Sandbox.make({ schedules: { ... } })`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"

/**
 * How `GET /health` is polled until the server answers: quickly at first (a local server is usually
 * up within milliseconds), backing off to one probe every 150 ms, the cadence HF's own client uses.
 * The overall deadline is the sandbox's `startTimeout`, not this schedule.
 *
 * @since 0.1.0
 * @category schedules
 */
export const healthPoll: Schedule.Schedule<unknown> = Schedule.exponential("5 millis", 2).pipe(
  Schedule.union(Schedule.spaced("150 millis")),
  Schedule.asVoid
)

/**
 * How long one health probe may take before it counts as failed and the next one is sent.
 *
 * @since 0.1.0
 * @category schedules
 */
export const healthProbeTimeout: Duration.Duration = Duration.seconds(5)

/**
 * Overrides for the schedules a sandbox uses. Anything left out keeps its default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides {
  /** Replaces {@link healthPoll}. */
  readonly healthPoll?: Schedule.Schedule<unknown> | undefined
}
