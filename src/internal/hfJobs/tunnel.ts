/**
 * Finding the tunnel: the in-sandbox server prints one marker line once cloudflared's edge connection is
 * registered, and the client matches only that line. cloudflared's own output is never parsed: it contains
 * other trycloudflare URLs (the `api.trycloudflare.com` link in its banner and failure messages). The URL
 * is followed for the sandbox's life: a restarted quick tunnel announces a new one.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { StartError } from "../../SandboxError.js"
import { TUNNEL_MARKER } from "../bootstrap.js"
import { hubFailure } from "./context.js"
import * as Hub from "./hub.js"
import { followLogs, logSnapshot, type PassBounds } from "./logs.js"
import * as PublicDns from "./publicDns.js"
import type { HfSpec } from "./sandboxOptions.js"

const MARKER = new RegExp(`^\\s*${TUNNEL_MARKER}\\s+(\\{.*\\})\\s*$`)
const TUNNEL_URL = /^https:\/\/(?!api\.)[a-z0-9-]+\.trycloudflare\.com$/

/** The tunnel URL announced by a log line, if the line is the server's marker and the URL is a quick tunnel. */
export const parseMarker = (line: string): Option.Option<string> => {
  const match = MARKER.exec(line)
  if (match === null) return Option.none()
  try {
    const url = (JSON.parse(match[1]!) as { url?: unknown }).url
    return typeof url === "string" && TUNNEL_URL.test(url) ? Option.some(url) : Option.none()
  } catch {
    return Option.none()
  }
}

/**
 * Whether a Jobs-proxy URL is the one of this job's server port under the Jobs domain; only then may it
 * receive the HF token.
 */
export const isJobProxyUrl = (url: string, jobId: string, port: number, jobsDomain: string): boolean => {
  try {
    const parsed = new URL(url)
    return (
      parsed.protocol === "https:" &&
      parsed.username === "" &&
      parsed.password === "" &&
      parsed.hostname === `${jobId}--${port}.${jobsDomain}`
    )
  } catch {
    return false
  }
}

/**
 * How long `connect` lets the log's replay be silent, once it has begun, before it takes the last tunnel
 * URL so far. Shorter than `Schedules.logQuietWindow`, as every CLI command pays it: the replay comes in
 * one burst, and a cut that comes too early costs little, since the log is followed from there and a
 * newer URL replaces it.
 */
const TUNNEL_SETTLE = Duration.millis(500)

/** The sandbox job whose tunnel is followed. */
export interface TunnelJob {
  readonly client: Hub.HubClient
  readonly namespace: string
  readonly jobId: string
  readonly spec: HfSpec
  /** Fails when the job ends: the wait for a first URL ends with it. */
  readonly died: Effect.Effect<never, StartError>
  /** A job just created: its first marker is the URL. Else the last marker of the log so far is. */
  readonly fresh: boolean
}

/**
 * The URL of a tunnel sandbox, kept current for the endpoint's life. A fiber in the endpoint's scope
 * follows the job's log and switches to every new marker: the server restarts a dead cloudflared, and a
 * restarted quick tunnel has a new hostname. The first URL is the first marker of a job just created
 * (`fresh`), else the last one of the log so far. The DNS fallback follows the hostname.
 */
export const tunnelUrl = (publicDns: ReadonlyArray<string> | false, job: TunnelJob) =>
  Effect.gen(function* () {
    const { client, died, fresh, jobId, namespace, spec } = job
    const dnsFallback =
      publicDns !== false ? PublicDns.withFallback(undefined, publicDns, yield* PublicDns.PinnedConnect) : undefined
    if (dnsFallback !== undefined) yield* Effect.addFinalizer(() => dnsFallback.release)
    let current: string | undefined
    const first = yield* Deferred.make<string, StartError>()
    const announce = (url: string) =>
      Effect.gen(function* () {
        if (url === current) return
        const previous = current
        // The fallback moves first: a request that reads the new URL must find it there.
        if (dnsFallback !== undefined) yield* dnsFallback.retarget(new URL(url).hostname)
        current = url
        if (previous !== undefined) {
          yield* Effect.logDebug(`hf-sandbox: the tunnel of job ${jobId} was restarted; now ${url}`)
        }
        yield* Deferred.succeed(first, url)
      })
    const alive = Hub.jobAlive(client, namespace, jobId)
    // Until the first URL the reconnects are those of the start; afterwards they stop with the job.
    const reconnect = spec.schedules.logReconnect.pipe(
      Schedule.checkEffect(() =>
        Effect.flatMap(Deferred.isDone(first), (started) => (started ? alive : Effect.succeed(true)))
      )
    )
    // Until the first URL, a stream with nothing new (the Hub's banner and keep-alives only) is reopened.
    const bounds: PassBounds = {
      firstByte: spec.schedules.logFirstByte,
      stall: () => (current === undefined ? Option.some(spec.schedules.logStall) : Option.none())
    }
    const follow = (skip: number) =>
      followLogs(client, namespace, jobId, reconnect, skip, bounds).pipe(
        Stream.filterMap(parseMarker),
        Stream.runForEach(announce),
        Effect.zipRight(
          Deferred.fail(
            first,
            new StartError({
              provider: "hf-jobs",
              reason: "TunnelFailed",
              detail: "the job's logs ended without a tunnel URL"
            })
          )
        ),
        Effect.catchAll((error) =>
          Effect.flatMap(Deferred.fail(first, hubFailure(error)), (starting) =>
            starting
              ? Effect.void
              : Effect.logWarning(
                  `hf-sandbox: stopped following the log of job ${jobId}; a restarted tunnel will not be found`,
                  error.message
                )
          )
        )
      )
    const start = Effect.gen(function* () {
      let skip = 0
      if (!fresh) {
        // The log so far may announce several tunnels: only the last one can still be up.
        const lines = yield* logSnapshot(client, namespace, jobId, {
          quiet: TUNNEL_SETTLE,
          firstByte: spec.schedules.logFirstByte
        }).pipe(Effect.mapError(hubFailure))
        skip = lines.length
        const latest = lines.reduce<Option.Option<string>>(
          (found, line) => Option.orElse(parseMarker(line), () => found),
          Option.none()
        )
        if (Option.isSome(latest)) yield* announce(latest.value)
      }
      yield* Effect.forkScoped(follow(skip))
      return yield* Deferred.await(first)
    })
    const initial = yield* Effect.raceFirst(start, died)
    return {
      initial,
      current: Effect.sync(() => current ?? initial),
      transformClient: dnsFallback?.transform
    }
  })
