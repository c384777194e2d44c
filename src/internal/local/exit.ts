/**
 * Why a local sandbox's server ended, in the words its errors use: `the sandbox server exited (exit
 * code 1)`, `(signal 9)`. An owned server's supervisor says it on the server's stdout; a detached one's
 * writes it into its log.
 */
import * as NodeOs from "node:os"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { tailOf } from "./logs.js"
import * as Owner from "./owner.js"

/** The supervisor's line on stdout when the server has ended (`--supervise`). */
export const decodeExited = Schema.decodeUnknownOption(
  Schema.parseJson(
    Schema.Struct({
      event: Schema.Literal("exited"),
      exit_code: Schema.NullOr(Schema.Number),
      signal: Schema.NullOr(Schema.Number)
    })
  )
)

/** How long a transport failure waits for the news of the server's exit before it is reported as is. */
export const EXIT_NEWS_GRACE = Duration.seconds(1)

/**
 * How long after a transport failure a server still running is taken as not ending. A server's sockets
 * close only as its process ends: it leaves with `os._exit` after its cleanup (shutdown kills what it
 * started first), and the kernel closes a process's files at the last steps of its exit, after its
 * memory is gone. So a server whose socket closed because it is ending is a zombie, then reaped by its
 * supervisor, well within this.
 */
const EXIT_SETTLE = Duration.millis(50)

/**
 * When to stop waiting for the news of the `server` process's exit after a transport failure: after
 * {@link EXIT_SETTLE} when it is still running then — no news is coming, so a cut relay or a request body
 * whose source failed is reported without the whole grace — else after `EXIT_NEWS_GRACE`. Always ends:
 * it may run where interruption is off (a transfer's release), where a race cannot stop a wait that never
 * ends.
 */
const newsDeadline = (server: Owner.Owner): Effect.Effect<Option.Option<never>> =>
  Effect.sleep(EXIT_SETTLE).pipe(
    Effect.zipRight(
      Effect.suspend(() =>
        Owner.isRunning(server)
          ? Effect.succeedNone
          : Effect.as(Effect.sleep(Duration.subtract(EXIT_NEWS_GRACE, EXIT_SETTLE)), Option.none())
      )
    )
  )

/**
 * Why the server ended, as `news` says it (`the sandbox server exited (…)`), or none once `server` is
 * seen running: a socket error may arrive a moment before the news of the exit that caused it, and a
 * server still running cuts that wait short. Both sides may be interrupted even where the caller may not
 * be (a transfer's release), so the loser stops at once. The waits are on the operating system, so they
 * run on the real clock: under a TestClock (an `it.effect` test) they would never end, and a failed
 * request would hang.
 */
export const exitNews = (
  news: Effect.Effect<Option.Option<string>>,
  server: Owner.Owner
): Effect.Effect<Option.Option<string>> =>
  Effect.raceFirst(Effect.interruptible(news), Effect.interruptible(newsDeadline(server))).pipe(
    Effect.withClock(Clock.make())
  )

/** How often a detached sandbox's log is looked at for its supervisor's line, within `EXIT_NEWS_GRACE`. */
const exitNewsPoll = Schedule.spaced("50 millis")

/** The supervisor's line in a detached sandbox's log when its server has ended (see the server's `supervise`). */
const SUPERVISOR_SAW = /supervisor: the server (?:was killed by signal (\d+)|exited with status (\d+))/g

/**
 * Why a detached sandbox's server ended, from its log: no pipe to its supervisor is left to say it. The
 * line is written the moment the server has ended, so a socket error waits for it a moment (on the real
 * clock, as for an owned sandbox).
 */
export const detachedExitReason = (log: string): Effect.Effect<Option.Option<string>> =>
  Effect.suspend(() => {
    const found = [...tailOf(log).matchAll(SUPERVISOR_SAW)].at(-1)
    return found === undefined
      ? Effect.fail("not yet" as const)
      : Effect.succeed(
          `the sandbox server exited (${found[1] !== undefined ? exitText(null, Number(found[1])) : exitText(Number(found[2]), null)})`
        )
  }).pipe(
    Effect.retry(exitNewsPoll),
    Effect.timeoutOption(EXIT_NEWS_GRACE),
    Effect.orElseSucceed(() => Option.none()),
    Effect.withClock(Clock.make())
  )

export const exitText = (code: number | null, signal: number | null): string =>
  signal !== null ? `signal ${signal}` : `exit code ${code}`

/** `signal 9` from a Node signal name found in `text` (an exit error), else the text itself. */
export const signalOf = (text: string): string => {
  const name = /\b(SIG[A-Z0-9]+)\b/.exec(text)?.[1]
  const number = name === undefined ? undefined : NodeOs.constants.signals[name as NodeJS.Signals]
  return number === undefined ? text : `signal ${number}`
}
