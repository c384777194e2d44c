/**
 * A job's log, as users, errors and the tunnel read it. The Hub never says a log is complete: it replays
 * what there is and keeps the stream open (keep-alives only). How long the first line may take is a
 * different question from how long a pause between lines means "that was all": a Hub that is slow to
 * answer must not be taken for an empty log, so each has its own bound.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { HubError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import * as Hub from "./hub.js"

/** How many of the last log lines an error carries. */
const LOG_TAIL_LINES = 20

/**
 * Ends `self` quietly when its first element takes longer than `firstByte`, or when, after that,
 * `quiet()` gives a bound (it is asked before each element; `None`: wait as long as it takes) and the
 * next element takes longer. Failures pass through.
 */
export const boundedPass = <A, E, R>(
  self: Stream.Stream<A, E, R>,
  firstByte: Duration.Duration,
  quiet: () => Option.Option<Duration.Duration>
): Stream.Stream<A, E, R> =>
  Stream.unwrapScoped(
    Effect.map(Stream.toPull(self), (pull) => {
      let started = false
      const next = Effect.suspend(() => {
        const bound = started ? quiet() : Option.some(firstByte)
        const timed = Option.isNone(bound)
          ? pull
          : pull.pipe(Effect.timeoutFail({ duration: bound.value, onTimeout: () => Option.none<E>() }))
        return Effect.tap(timed, (chunk) =>
          Effect.sync(() => {
            if (chunk.length > 0) started = true
          })
        )
      })
      return Stream.repeatEffectChunkOption(next)
    })
  )

/** The job's last log lines, for errors. Bounded: a start failure must not wait on a slow log stream. */
export const lastLines = (hub: Hub.HubClient, namespace: string, jobId: string) =>
  hub.logs(namespace, jobId).pipe(
    Stream.runFold([] as Array<string>, (acc, line) => {
      acc.push(line)
      if (acc.length > LOG_TAIL_LINES) acc.shift()
      return acc
    }),
    Effect.timeout("10 seconds"),
    Effect.orElseSucceed((): Array<string> => [])
  )

/**
 * When one pass over a log stream is given up and reopened: after `firstByte` without its first line,
 * or once it has started, after `stall()` without another (`None`: never).
 */
export interface PassBounds {
  readonly firstByte: Duration.Duration
  readonly stall: () => Option.Option<Duration.Duration>
}

/**
 * Every line of the job's log once, across reconnects, starting after the first `skip` lines. The Hub
 * ends a log stream early (e.g. while the job is scheduling) and replays from the start on every
 * request, so the stream is reopened on `reconnect` and lines already seen are skipped by position.
 * With `bounds`, a pass that stays silent too long ends too, and is reopened the same way.
 */
export const followLogs = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  reconnect: Schedule.Schedule<unknown>,
  skip = 0,
  bounds?: PassBounds
): Stream.Stream<string, HubError> => {
  let seen = skip
  const pass = Stream.suspend(() => {
    let index = 0
    const lines = hub.logs(namespace, jobId)
    return (bounds === undefined ? lines : boundedPass(lines, bounds.firstByte, bounds.stall)).pipe(
      Stream.filter(() => index++ >= seen),
      Stream.tap(() => Effect.sync(() => void seen++)),
      // A cut or refused stream is reopened; a rejection (401/403/404) is final. A 429 is reopened no
      // sooner than the Hub says, whatever the reconnect schedule.
      Stream.catchAll(Hub.endPassOnTransient)
    )
  })
  return Stream.repeat(pass, reconnect)
}

/** The Hub's own first line of every log, which says nothing about the sandbox. */
export const isStartBanner = (line: string) => /^===== Job started at .* =====$/.test(line)

/** The time bounds of log snapshots: the quiet window that ends one, and how long its first line may take. */
export interface SnapshotTiming {
  readonly quiet: Duration.Duration
  readonly firstByte: Duration.Duration
}

export const timingOf = (schedules: {
  readonly logQuietWindow?: Duration.DurationInput | undefined
  readonly logFirstByte?: Duration.DurationInput | undefined
}): SnapshotTiming => ({
  quiet: Duration.decode(schedules.logQuietWindow ?? Schedules.logQuietWindow),
  firstByte: Duration.decode(schedules.logFirstByte ?? Schedules.logFirstByte)
})

/**
 * The job's log so far: what one request replays until the stream ends or, once its first line has come,
 * is silent for the quiet window. The wait for the first line is bounded apart (a slow Hub is not an
 * empty log).
 */
const logSnapshotStream = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  timing: SnapshotTiming
): Stream.Stream<string, HubError> =>
  boundedPass(hub.logs(namespace, jobId), timing.firstByte, () => Option.some(timing.quiet)).pipe(
    Stream.catchAll((error) => (Hub.isTransient(error) ? Stream.empty : Stream.fail(error)))
  )

/** The lines of {@link logSnapshotStream}, with their positions in the replay (the Hub's banner included). */
export const logSnapshot = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  timing: SnapshotTiming
): Effect.Effect<ReadonlyArray<string>, HubError> =>
  Effect.map(Stream.runCollect(logSnapshotStream(hub, namespace, jobId, timing)), (chunk) => Array.from(chunk))

/** A job's log for users: the log so far, or (`follow`) everything until the job ends. */
export const jobLogs = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  options: SandboxProvider.LogOptions,
  reconnect: Schedule.Schedule<unknown>,
  timing: SnapshotTiming
): Stream.Stream<string, HubError> => {
  const snapshot = logSnapshotStream(hub, namespace, jobId, timing)
  const visible = (stream: Stream.Stream<string, HubError>) => Stream.filter(stream, (line) => !isStartBanner(line))
  if (!options.follow) {
    return options.tail === undefined ? visible(snapshot) : visible(snapshot).pipe(Stream.takeRight(options.tail))
  }
  // Following ends when the job does: the stream is reopened only while the job is alive.
  const alive = Hub.jobAlive(hub, namespace, jobId)
  const whileAlive = reconnect.pipe(Schedule.checkEffect(() => alive))
  if (options.tail === undefined) return visible(followLogs(hub, namespace, jobId, whileAlive))
  const tail = options.tail
  return Stream.unwrap(
    Effect.map(Stream.runCollect(snapshot), (chunk) => {
      const lines = Array.from(chunk)
      return Stream.fromIterable(lines.filter((l) => !isStartBanner(l)).slice(-tail)).pipe(
        Stream.concat(visible(followLogs(hub, namespace, jobId, whileAlive, lines.length)))
      )
    })
  )
}
