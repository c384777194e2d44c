/**
 * The named schedules hf-sandbox waits and retries on. Each is a value with a good default. The set
 * in force is a Context value, {@link Schedules}: replace some for a whole program (or test suite) with
 * {@link layer}, for one effect with {@link withSchedules}, or for one sandbox with
 * `Sandbox.make({ schedules: { ... } })`. The nearest wins: a `make`'s own `schedules` over the Context
 * value, and that over the defaults here (likewise `HfJobs.layer`'s `schedules` for its log reads).
 *
 * ```ts
 * // Every sandbox of the program retries the Hub quickly; this one also polls its health slowly.
 * const program = Sandbox.make({ schedules: { healthPoll: Schedule.spaced("1 second") } }).pipe(
 *   Schedules.withSchedules({ hubRetry: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(3))) })
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type { HubError, OperationError } from "./SandboxError.js"

/**
 * How `GET /health` is polled until the server answers: quickly at first (a local server is usually
 * up within milliseconds), backing off to one probe every 150 ms, the cadence HF's own client uses.
 * Through a fresh tunnel this rides out DNS not-found, 502 and 530 until the edge is ready. The overall
 * deadline is the sandbox's `startTimeout`, not this schedule.
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
 * When a job's log stream ends while the job is still alive (it does, e.g. while it is scheduling),
 * it is reopened on this schedule: at once, then backing off to every 2 s.
 *
 * @since 0.1.0
 * @category schedules
 */
export const logReconnect: Schedule.Schedule<unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.asVoid
)

/**
 * How long a log snapshot (`HfJobs.logs` without `follow`) waits for another line before it counts
 * the log as complete: the Hub replays the log and then keeps the stream open, and never says it is
 * done. 5 s, as `huggingface_hub`'s `fetch_job_logs`. The wait starts at the stream's first line, so
 * a slow first byte is not mistaken for the end (see {@link logFirstByte}).
 *
 * @since 0.2.0
 * @category schedules
 */
export const logQuietWindow: Duration.Duration = Duration.seconds(5)

/**
 * How long a log stream may take to send its first line (the Hub's banner) before the request is
 * given up: for a snapshot it then counts as empty, while starting it is reopened. This, not the
 * {@link logQuietWindow}, is what a slow first byte counts against.
 *
 * @since 0.2.0
 * @category schedules
 */
export const logFirstByte: Duration.Duration = Duration.seconds(30)

/**
 * How long the log stream followed while a tunnel sandbox starts may stay open with no new line
 * (the Hub's banner and keep-alives only) before it is reopened. The Hub sometimes serves such a
 * stream forever to a running job; a new request replays the log and goes on. Only until the tunnel
 * URL is found: afterwards a quiet log is normal.
 *
 * @since 0.2.0
 * @category schedules
 */
export const logStall: Duration.Duration = Duration.seconds(20)

/**
 * How long a job's metrics stream (`sb.metrics()` on HF Jobs) may stay silent before the job's stage is
 * asked. The Hub sends a sample a second but never ends the stream: it goes silent once the job has ended
 * (and while the job waits for hardware). After this silence the stream is reopened (on
 * {@link logReconnect}) while the job runs, and ends once it has ended. 10 s, ten samples' time:
 * `huggingface_hub`'s read timeout in `fetch_job_metrics`.
 *
 * @since 0.2.0
 * @category schedules
 */
export const metricsSilence: Duration.Duration = Duration.seconds(10)

/**
 * How often a starting job's stage is checked, so that a crash fails the start soon. Every 3 s: with the
 * log reconnects, a start waiting in the Hub's queue then costs about 0.8 Hub requests per second
 * (`bench/hub-rate.ts`), below the 1/s that keeps many parallel starts inside the Hub's rate limit.
 * A 429 delays the next check as long as the Hub says.
 *
 * @since 0.1.0
 * @category schedules
 */
export const stageCheck: Schedule.Schedule<unknown> = Schedule.spaced("3 seconds").pipe(Schedule.asVoid)

/**
 * Retries of transient Hub failures (429, 5xx, connection resets): jittered exponential backoff from
 * 500 ms, capped at 10 s, at most 6 retries. Whatever schedule is in force, a retry never comes sooner
 * than the Hub says: the reset of its `RateLimit` header (`"api";r=0;t=55`) on a 429, else `Retry-After`.
 *
 * @since 0.1.0
 * @category schedules
 */
export const hubRetry: Schedule.Schedule<unknown, HubError> = Schedule.exponential("500 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(10))),
  Schedule.intersect(Schedule.recurs(6)),
  Schedule.asVoid
)

/**
 * Retries of the job cancellation that releases a sandbox. The release as a whole is also bounded
 * (30 s), so a Hub outage cannot hold a program's exit.
 *
 * @since 0.1.0
 * @category schedules
 */
export const cancelRetry: Schedule.Schedule<unknown, HubError> = hubRetry

/**
 * When the connection of an `exec`/`execStream` drops (a transport error, a stream cut short, a
 * tunnel edge's 502/530), the command keeps running in the sandbox and the client reattaches on
 * this schedule, resuming each stream at the byte it had reached: at once, backing off to every 2 s,
 * for about 2 minutes (a restarted quick tunnel gets a new URL within that). Each reattach that
 * receives something starts the schedule over. When it runs out, the caller gets
 * `ConnectionLostError` with what is known about the command. (The server kills a command nobody
 * has reattached to for 60 s, `SBX_EXEC_REATTACH`: a client that comes back later reads its output up
 * to then and an exit by signal 9.)
 *
 * @since 0.2.0
 * @category schedules
 */
export const reattach: Schedule.Schedule<unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.upTo("2 minutes"),
  Schedule.asVoid
)

/**
 * Retries of a streamed-stdin request whose connection failed (a dropped socket, a tunnel that is
 * restarting, the edge's 502/530, no answer in time): jittered exponential backoff from 200 ms, capped at
 * 5 s, for about 2 minutes. A retry is exact: the request names its stdin offset, and the server skips
 * what it already wrote.
 *
 * @since 0.2.0
 * @category schedules
 */
export const stdinRetry: Schedule.Schedule<unknown, OperationError> = Schedule.exponential("200 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5))),
  Schedule.intersect(Schedule.recurs(30)),
  Schedule.upTo("2 minutes"),
  Schedule.asVoid
)

/**
 * How often a detached local sandbox's server is checked while a client is attached to it, so that its
 * end (idle timeout, `kill`) fails the client's calls with the reason soon.
 *
 * @since 0.2.0
 * @category schedules
 */
export const localLivenessPoll: Schedule.Schedule<unknown> = Schedule.spaced("500 millis").pipe(Schedule.asVoid)

/**
 * How often a followed local sandbox log (`logs({ follow: true })` on the local provider) is read again
 * while nothing new has been written to it.
 *
 * @since 0.2.0
 * @category schedules
 */
export const localLogPoll: Schedule.Schedule<unknown> = Schedule.spaced("200 millis").pipe(Schedule.asVoid)

/**
 * How `waitForPort` asks the sandbox whether a port listens, and a port's quick tunnel whether it is up:
 * soon at first (a server binds in milliseconds), then every second. The wait's own `timeout` bounds it.
 *
 * @since 0.2.0
 * @category schedules
 */
export const portPoll: Schedule.Schedule<unknown> = Schedule.exponential("20 millis", 2).pipe(
  Schedule.either(Schedule.spaced("1 second")),
  Schedule.asVoid
)

/**
 * How long an HF Jobs sandbox made with a list of flavors (`flavor: ["h200", "a100-large"]`) may wait
 * for one in SCHEDULING (the Hub has no such machine free) before its job is cancelled and the next
 * flavor tried. The last flavor waits as long as the start may: `startTimeout` bounds the whole start,
 * fallbacks included, so give a longer one with a list. One minute.
 *
 * @since 0.2.0
 * @category schedules
 */
export const flavorFallback: Duration.Duration = Duration.minutes(1)

/**
 * Overrides for the schedules a sandbox uses. Anything left out keeps its default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides {
  /** Replaces {@link healthPoll}. */
  readonly healthPoll?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link healthProbeTimeout}. @since 0.2.0 */
  readonly healthProbeTimeout?: Duration.DurationInput | undefined
  /** Replaces {@link localLivenessPoll}. @since 0.2.0 */
  readonly localLivenessPoll?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link localLogPoll}. @since 0.2.0 */
  readonly localLogPoll?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link portPoll}. @since 0.2.0 */
  readonly portPoll?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link logReconnect}. */
  readonly logReconnect?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link stageCheck}. */
  readonly stageCheck?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link hubRetry}. */
  readonly hubRetry?: Schedule.Schedule<unknown, HubError> | undefined
  /** Replaces {@link cancelRetry}. */
  readonly cancelRetry?: Schedule.Schedule<unknown, HubError> | undefined
  /** Replaces {@link reattach}. @since 0.2.0 */
  readonly reattach?: Schedule.Schedule<unknown> | undefined
  /** Replaces {@link logQuietWindow}. */
  readonly logQuietWindow?: Duration.DurationInput | undefined
  /** Replaces {@link logFirstByte}. */
  readonly logFirstByte?: Duration.DurationInput | undefined
  /** Replaces {@link logStall}. */
  readonly logStall?: Duration.DurationInput | undefined
  /** Replaces {@link metricsSilence}. @since 0.2.0 */
  readonly metricsSilence?: Duration.DurationInput | undefined
  /** Replaces {@link stdinRetry}. @since 0.2.0 */
  readonly stdinRetry?: Schedule.Schedule<unknown, OperationError> | undefined
  /** Replaces {@link flavorFallback}. @since 0.2.0 */
  readonly flavorFallback?: Duration.DurationInput | undefined
}

/**
 * The whole set of schedules in force: every one of {@link Overrides}, none left out.
 *
 * @since 0.2.0
 * @category models
 */
export type Service = { readonly [K in keyof Overrides]-?: Exclude<Overrides[K], undefined> }

/**
 * The schedules in force, as a Context value; without one provided, the defaults of this module.
 * Provide replacements with {@link layer} or {@link withSchedules}.
 *
 * @since 0.2.0
 * @category tags
 */
export class Schedules extends Context.Reference<Schedules>()("hf-sandbox/Schedules", {
  defaultValue: (): Service => ({
    healthPoll,
    healthProbeTimeout,
    localLivenessPoll,
    localLogPoll,
    portPoll,
    logReconnect,
    stageCheck,
    hubRetry,
    cancelRetry,
    reattach,
    logQuietWindow,
    logFirstByte,
    logStall,
    metricsSilence,
    stdinRetry,
    flavorFallback
  })
}) {}

/**
 * `current` with the overrides given (an override that is `undefined` leaves its schedule as it is).
 *
 * @since 0.2.0
 * @category combinators
 */
export const override = (current: Service, overrides: Overrides | undefined): Service => {
  if (overrides === undefined) return current
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined))
  return { ...current, ...defined }
}

/**
 * Replaces some schedules for everything built with this layer (e.g. a test suite's sandboxes and the
 * HF Jobs provider's own Hub calls); the rest stay as they are in the context.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (overrides: Overrides): Layer.Layer<never> =>
  Layer.effectContext(Effect.map(Schedules, (current) => Context.make(Schedules, override(current, overrides))))

/**
 * Replaces some schedules while `self` runs; the rest stay as they are in the context. A `make`'s own
 * `schedules` still win over these.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withSchedules: {
  (overrides: Overrides): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, overrides: Overrides): Effect.Effect<A, E, R>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, overrides: Overrides): Effect.Effect<A, E, R> =>
    Effect.flatMap(Schedules, (current) => Effect.provideService(self, Schedules, override(current, overrides)))
)
