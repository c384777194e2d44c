/**
 * The Hugging Face Jobs provider: every sandbox is an HF Job running any Docker image on any HF
 * hardware, with the in-sandbox server inside. The client reaches it through a Cloudflare quick tunnel
 * (found by following the job's logs) or through the HF Jobs proxy. The job is cancelled when the
 * sandbox's scope closes — on success, failure, interruption or Ctrl-C — and the job's own timeout and
 * the server's idle timeout stop the billing even if this process is killed outright.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const sb = yield* Sandbox.make({ image: "python:3.12", flavor: "cpu-basic" })
 *   yield* sb.exec("nvidia-smi || echo no gpu")
 * }).pipe(Effect.scoped, Effect.provide(HfJobs.layer()))
 * ```
 *
 * @since 0.1.0
 */

import { createHmac, randomBytes } from "node:crypto"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Bootstrap from "./internal/bootstrap.js"
import * as Credentials from "./internal/credentials.js"
import * as Hub from "./internal/hub.js"
import * as JobLabels from "./internal/jobLabels.js"
import * as JobRef from "./internal/jobRef.js"
import { boundedPass } from "./internal/logTiming.js"
import * as NamespaceCache from "./internal/namespaceCache.js"
import * as PublicDns from "./internal/publicDns.js"
import { readServerPackage } from "./internal/serverScript.js"
import * as ServerShutdown from "./internal/serverShutdown.js"
import * as StartErrors from "./internal/startError.js"
import { isJobProxyUrl, parseMarker } from "./internal/tunnel.js"
import { VERSION } from "./internal/version.js"
import { type HubError, StartError } from "./SandboxError.js"
import * as SandboxProvider from "./SandboxProvider.js"
import * as Schedules from "./Schedules.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * HF token. Default: found as `huggingface_hub` finds it — the OIDC exchange when `HF_OIDC_RESOURCE`
   * is set, else `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the token file (`HF_TOKEN_PATH`, else
   * `$HF_HOME/token`, else `~/.cache/huggingface/token`), an OAuth login's token refreshed near expiry.
   * Blank counts as unset; CR/LF and surrounding spaces are removed.
   */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Hub endpoint. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string | undefined
  /** Default namespace (user or org) for jobs. Default: the token's user, asked once per layer. */
  readonly namespace?: string | undefined
  /** Domain of the Jobs proxy's exposed URLs. Default `hf.jobs`. */
  readonly jobsDomain?: string | undefined
  /**
   * Public DNS resolvers (`ip` or `ip:port`) asked when the system resolver cannot find a fresh tunnel
   * name, which it may cache as missing for 30 minutes. `false` turns the fallback off. Default
   * `["1.1.1.1", "8.8.8.8"]`. The fallback needs `@effect/platform-node`.
   */
  readonly publicDns?: ReadonlyArray<string> | false | undefined
  /**
   * Schedules of the operations by id (`logs`): `logReconnect`, `logQuietWindow` and `logFirstByte`
   * are used; sandboxes take theirs from `Sandbox.make({ schedules })`.
   */
  readonly schedules?: Pick<Schedules.Overrides, "logReconnect" | "logQuietWindow" | "logFirstByte"> | undefined
  /**
   * A directory where the token's namespace is kept between processes (one 0600 file per token and
   * endpoint, named by a hash of them, holding only the name; asked again after a day). The Hub's
   * `whoami-v2` is strictly rate-limited: a program that starts often (a CLI) should set it. Default:
   * none, the namespace is asked once per layer. The CLI keeps it in its state directory.
   */
  readonly namespaceCache?: string | undefined
}

/** The in-sandbox server's port behind the Jobs proxy: unusual on purpose, so 3000/8000/8080 stay free. */
const SERVER_PORT = 49983
const DEFAULT_ENDPOINT = "https://huggingface.co"
const DEFAULT_FLAVOR = "cpu-basic"
const DEFAULT_LIFETIME = Duration.hours(1)
const DEFAULT_IDLE = Duration.minutes(10)
const LOG_TAIL_LINES = 20
const CANCEL_BOUND = Duration.seconds(30)
/** How long a failed request waits for the Hub's word on whether the job ended: one inspect, not a retry loop. */
const EXIT_REASON_BOUND = Duration.seconds(5)

/** Labels every sandbox job carries. */
const LABEL = { sandbox: "hf-sandbox", mode: "hf-sandbox-mode", nonce: "hf-sandbox-nonce" } as const

/**
 * The sandbox token is derived from the HF token and a nonce kept in a job label, so a client holding the
 * same HF token can re-attach to a sandbox with nothing stored.
 *
 * @since 0.1.0
 * @category utils
 */
export const deriveSandboxToken = (hfToken: Redacted.Redacted<string>, nonce: string): Redacted.Redacted<string> =>
  // Cleaned as every token is before use: a CRLF `.env` value must derive what the clean value derives.
  Redacted.make(
    createHmac("sha256", Credentials.cleanToken(Redacted.value(hfToken)) ?? "")
      .update(`hf-sandbox:${nonce}`)
      .digest("hex")
  )

/** The job's last log lines, for errors. Bounded: a start failure must not wait on a slow log stream. */
const lastLines = (hub: Hub.HubClient, namespace: string, jobId: string) =>
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
interface PassBounds {
  readonly firstByte: Duration.Duration
  readonly stall: () => Option.Option<Duration.Duration>
}

/**
 * Every line of the job's log once, across reconnects, starting after the first `skip` lines. The Hub
 * ends a log stream early (e.g. while the job is scheduling) and replays from the start on every
 * request, so the stream is reopened on `reconnect` and lines already seen are skipped by position.
 * With `bounds`, a pass that stays silent too long ends too, and is reopened the same way.
 */
const followLogs = (
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
      Stream.catchAll((error) =>
        Hub.isTransient(error)
          ? error.retryAfterMs === undefined
            ? Stream.empty
            : Stream.drain(Stream.fromEffect(Effect.sleep(Duration.millis(error.retryAfterMs))))
          : Stream.fail(error)
      )
    )
  })
  return Stream.repeat(pass, reconnect)
}

/** The Hub's own first line of every log, which says nothing about the sandbox. */
const isStartBanner = (line: string) => /^===== Job started at .* =====$/.test(line)

/**
 * How long `connect` lets the log's replay be silent, once it has begun, before it takes the last tunnel
 * URL so far. Shorter than `Schedules.logQuietWindow`, as every CLI command pays it: the replay comes in
 * one burst, and a cut that comes too early costs little, since the log is followed from there and a
 * newer URL replaces it.
 */
const TUNNEL_SETTLE = Duration.millis(500)

/** The time bounds of log snapshots: the quiet window that ends one, and how long its first line may take. */
interface SnapshotTiming {
  readonly quiet: Duration.Duration
  readonly firstByte: Duration.Duration
}

const timingOf = (schedules: {
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
const logSnapshot = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  timing: SnapshotTiming
): Effect.Effect<ReadonlyArray<string>, HubError> =>
  Effect.map(Stream.runCollect(logSnapshotStream(hub, namespace, jobId, timing)), (chunk) => Array.from(chunk))

/** A job's log for users: the log so far, or (`follow`) everything until the job ends. */
const jobLogs = (
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
  const alive = hub.getJob(namespace, jobId).pipe(
    Effect.map((job) => !Hub.isTerminal(job.status.stage)),
    Effect.orElseSucceed(() => true)
  )
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

/** How a job ended, as errors say it: `job ID ended (STAGE): message`. */
const jobEnded = (jobId: string, job: Hub.JobInfo) =>
  `job ${jobId} ended (${job.status.stage})${job.status.message ? `: ${job.status.message}` : ""}`

/**
 * Why a sandbox's job no longer serves, asked of the Hub when a request to it failed: a job in a terminal
 * stage (`the job ended (ERROR): …`), else `None` (a blip, or a Hub that does not answer in time).
 */
const jobExitReason = (hub: Hub.HubClient, namespace: string, jobId: string): Effect.Effect<Option.Option<string>> =>
  hub.getJob(namespace, jobId).pipe(
    Effect.map((job) =>
      Hub.isTerminal(job.status.stage) ? Option.some(`the ${jobEnded(jobId, job)}`) : Option.none()
    ),
    Effect.timeout(EXIT_REASON_BOUND),
    Effect.orElseSucceed(() => Option.none())
  )

/**
 * Cancels a job, retrying what is transient, bounded; a job that already ended counts as cancelled. A
 * rate limit that resets later than {@link CANCEL_BOUND} is not waited for: the error comes at once.
 */
const cancelJob = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  schedule: Schedule.Schedule<unknown, HubError>
): Effect.Effect<void, HubError> =>
  hub.cancelJob(namespace, jobId).pipe(
    Hub.retryTransient(schedule, CANCEL_BOUND),
    Effect.catchAll((error) =>
      hub
        .getJob(namespace, jobId)
        .pipe(Effect.flatMap((job) => (Hub.isTerminal(job.status.stage) ? Effect.void : Effect.fail(error))))
    )
  )

/**
 * The release of a sandbox: a cancel that never fails and never holds the program for long.
 * `serverStopped` says whether the sandbox's own server already agreed to shut down (so the job ends
 * with it even when the Hub refuses the cancel).
 */
const releaseJob = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  schedule: Schedule.Schedule<unknown, HubError>,
  serverStopped: () => boolean = () => false
) =>
  cancelJob(hub, namespace, jobId, schedule).pipe(
    Effect.tapError((error) =>
      Effect.logWarning(
        serverStopped()
          ? `hf-sandbox: could not cancel job ${jobId}; its server has shut down, so the job ends with it`
          : `hf-sandbox: could not cancel job ${jobId} nor reach its server; the server's idle timeout or the job's timeout will end it`,
        error.message
      )
    ),
    Effect.interruptible,
    Effect.timeout(CANCEL_BOUND),
    Effect.ignore
  )

/** Fails with the job's end (stage, message, last log lines) as soon as it reaches a terminal stage. */
const watchForDeath = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  spec: SandboxProvider.Spec,
  hubFailure: (error: HubError) => StartError
): Effect.Effect<never, StartError> => {
  const checks: Schedule.Schedule<unknown, Hub.JobInfo> = spec.schedules.stageCheck
  return hub.getJob(namespace, jobId).pipe(
    Hub.retryTransient(spec.schedules.hubRetry),
    // A rate limit delays the next check, as long as the Hub says; the start's own timeout bounds it.
    Hub.retryRateLimited(spec.schedules.stageCheck),
    Effect.mapError(hubFailure),
    Effect.repeat({ schedule: Schedule.passthrough(checks), until: (job) => Hub.isTerminal(job.status.stage) }),
    Effect.flatMap((job) =>
      Effect.flatMap(lastLines(hub, namespace, jobId), (lines) =>
        Effect.fail(
          new StartError({
            provider: "hf-jobs",
            reason: "JobFailed",
            detail: jobEnded(jobId, job),
            stderrTail: lines.filter((l) => !isStartBanner(l)).join("\n")
          })
        )
      )
    )
  )
}

/**
 * Asks the server behind an endpoint (once there is one) to shut down, and remembers whether it agreed.
 * Uses the application's HttpClient (`Sandbox.make` requires one); without it, only the Hub can end the job.
 */
const serverStopper = Effect.map(Effect.serviceOption(HttpClient.HttpClient), (http) => {
  let endpoint: SandboxProvider.Endpoint | undefined
  let stopped = false
  return {
    attach: (value: SandboxProvider.Endpoint) => {
      endpoint = value
    },
    stop: Effect.suspend(() =>
      endpoint === undefined ? Effect.succeed(false) : ServerShutdown.request(http, endpoint)
    ).pipe(
      Effect.tap((accepted) =>
        Effect.sync(() => {
          stopped ||= accepted
        })
      )
    ),
    stopped: () => stopped
  }
})

const isSandboxJob = (job: Hub.JobInfo) =>
  job.labels?.[LABEL.sandbox] === "1" && job.labels?.[LABEL.mode] === "dedicated" && !!job.labels?.[LABEL.nonce]

/**
 * A sandbox job as `list` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxInfo {
  readonly id: string
  readonly namespace: string
  /** The job's stage, e.g. `RUNNING` (an open set: the Hub may add stages). */
  readonly stage: string
  readonly image: string | undefined
  readonly flavor: string | undefined
  readonly createdAt: string | undefined
  readonly labels: Readonly<Record<string, string>>
  /** The job's page on the Hub. */
  readonly url: string
}

/**
 * Operations on sandboxes by id, beyond the one a program holds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Sandbox jobs of the namespace (default: the token's user); only live ones unless `all`. */
  readonly list: (options?: {
    readonly namespace?: string | undefined
    readonly all?: boolean | undefined
  }) => Effect.Effect<ReadonlyArray<SandboxInfo>, HubError | StartError>
  /**
   * Stops a sandbox by id (cancels its job). Refuses jobs that are not sandboxes. The id may be
   * `namespace/id`; anything but a job id fails with `StartError` (`InvalidOptions`) before any request.
   */
  readonly kill: (
    id: string,
    options?: { readonly namespace?: string | undefined }
  ) => Effect.Effect<void, HubError | StartError>
  /** A sandbox's log by id (or `namespace/id`). */
  readonly logs: (
    id: string,
    options?: SandboxProvider.LogOptions & { readonly namespace?: string | undefined }
  ) => Stream.Stream<string, HubError | StartError>
}

/**
 * The HF Jobs operations service, provided by {@link layer} next to the provider.
 *
 * @since 0.1.0
 * @category tags
 */
export class HfJobs extends Context.Tag("hf-sandbox/HfJobs")<HfJobs, Service>() {}

const build = (options: Options, fs: FileSystem.FileSystem) =>
  Effect.gen(function* () {
    const configured = yield* Config.option(Config.string("HF_ENDPOINT")).pipe(
      Effect.map(Option.filter((e) => e.trim() !== "")),
      Effect.orElseSucceed(() => Option.none<string>())
    )
    const endpoint = (options.endpoint ?? Option.getOrElse(configured, () => DEFAULT_ENDPOINT)).replace(/\/+$/, "")
    const jobsDomain = options.jobsDomain ?? "hf.jobs"
    const userAgent = `hf-sandbox/${VERSION}; node/${process.versions.node}`
    // The environment is read once, on first use; the credential is found again when a refresh comes due.
    const env = yield* Effect.cached(
      Credentials.readEnv.pipe(
        Effect.mapError(
          (e) =>
            new StartError({ provider: "hf-jobs", reason: "InvalidOptions", detail: `bad configuration: ${e.message}` })
        )
      )
    )
    const credential = yield* Credentials.cachedUntilRecheck(
      Effect.flatMap(env, (e) => Credentials.resolve({ fs, env: e, endpoint, userAgent, explicit: options.token }))
    )
    const clientOf = (c: Credentials.Credential) =>
      Hub.make({ endpoint, token: c.token, userAgent, tokenSource: Credentials.describeSource(c.source) })
    const hub = Effect.map(credential, clientOf)
    const hubFailure = (error: HubError) =>
      new StartError({
        provider: "hf-jobs",
        reason: error.unreachable !== undefined ? "HubUnreachable" : "HubRejected",
        detail: error.message,
        cause: error
      })
    // whoami is strictly rate-limited: asked at most once for the provider's life.
    const whoami = yield* Effect.cached(
      Effect.flatMap(hub, (h) => h.whoami.pipe(Hub.retryTransient(Schedules.hubRetry), Effect.mapError(hubFailure)))
    )
    const userNamespace = yield* Effect.cached(
      options.namespaceCache === undefined
        ? Effect.map(whoami, (w) => w.name)
        : Effect.flatMap(credential, (c) =>
            NamespaceCache.cached(
              fs,
              options.namespaceCache!,
              endpoint,
              c.token,
              Effect.map(whoami, (w) => w.name)
            )
          )
    )
    // A namespace becomes a segment of Hub paths: it is checked like an id.
    const namespaceOf = (explicit: string | undefined) => {
      const given = explicit ?? options.namespace
      if (given === undefined) return userNamespace
      return JobRef.isNamespace(given)
        ? Effect.succeed(given)
        : Effect.fail(
            new StartError({
              provider: "hf-jobs",
              reason: "InvalidOptions",
              detail: `namespace ${JSON.stringify(given)} is not a Hub user or organisation name`
            })
          )
    }
    const serverFiles = yield* Effect.cached(
      readServerPackage(fs).pipe(
        Effect.mapError(
          (e) =>
            new StartError({
              provider: "hf-jobs",
              reason: "SpawnFailed",
              detail: `cannot read the sandbox server: ${e.message}`
            })
        )
      )
    )

    /**
     * The URL of a tunnel sandbox, kept current for the endpoint's life. A fiber in the endpoint's scope
     * follows the job's log and switches to every new marker: the server restarts a dead cloudflared, and a
     * restarted quick tunnel has a new hostname. The first URL is the first marker of a job just created
     * (`fresh`), else the last one of the log so far. The DNS fallback follows the hostname.
     */
    const tunnelUrl = (
      client: Hub.HubClient,
      namespace: string,
      jobId: string,
      spec: SandboxProvider.Spec,
      died: Effect.Effect<never, StartError>,
      fresh: boolean
    ) =>
      Effect.gen(function* () {
        const dnsFallback =
          options.publicDns !== false
            ? PublicDns.withFallback(
                undefined,
                options.publicDns ?? PublicDns.DEFAULT_SERVERS,
                yield* PublicDns.PinnedConnect
              )
            : undefined
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
        const alive = client.getJob(namespace, jobId).pipe(
          Effect.map((job) => !Hub.isTerminal(job.status.stage)),
          Effect.orElseSucceed(() => true)
        )
        // Until the first URL the reconnects are those of the start; afterwards they stop with the job.
        const reconnect = spec.schedules.logReconnect.pipe(
          Schedule.checkEffect(() =>
            Effect.flatMap(Deferred.isDone(first), (started) => (started ? alive : Effect.succeed(true)))
          )
        )
        // Until the first URL, a stream with nothing new (the Hub's banner and keep-alives only) is reopened.
        const bounds: PassBounds = {
          firstByte: spec.schedules.logFirstByte ?? Schedules.logFirstByte,
          stall: () =>
            current === undefined ? Option.some(spec.schedules.logStall ?? Schedules.logStall) : Option.none()
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
              firstByte: spec.schedules.logFirstByte ?? Schedules.logFirstByte
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

    /** The endpoint of a created or found sandbox job: URL by transport, token, liveness, logs. */
    const endpointOf = (
      client: Hub.HubClient,
      hfToken: Redacted.Redacted<string>,
      job: Hub.JobInfo,
      namespace: string,
      transport: "tunnel" | "proxy",
      spec: SandboxProvider.Spec,
      fresh: boolean,
      extra: Partial<SandboxProvider.Endpoint>
    ) =>
      Effect.gen(function* () {
        const died = watchForDeath(client, namespace, job.id, spec, hubFailure)
        const tunnel =
          transport === "tunnel" ? yield* tunnelUrl(client, namespace, job.id, spec, died, fresh) : undefined
        const value: SandboxProvider.Endpoint = {
          id: job.id,
          provider: "hf-jobs",
          baseUrl: tunnel !== undefined ? tunnel.initial : yield* proxyUrl(job),
          ...(tunnel !== undefined ? { currentBaseUrl: tunnel.current } : {}),
          ...(tunnel?.transformClient !== undefined ? { transformClient: tunnel.transformClient } : {}),
          token: deriveSandboxToken(hfToken, job.labels?.[LABEL.nonce] ?? ""),
          ...(transport === "proxy"
            ? // The proxy wants the HF token as bearer; it is read per request, never stored in a header map,
              // and is the current one: a sandbox may outlive the token it was made with, once refreshed.
              {
                headers: credential.pipe(
                  Effect.map((c) => c.token),
                  Effect.orElseSucceed(() => hfToken),
                  Effect.map((t) => ({ authorization: `Bearer ${Redacted.value(t)}` }))
                )
              }
            : {}),
          died,
          exitReason: jobExitReason(client, namespace, job.id),
          logs: (logOptions) =>
            jobLogs(client, namespace, job.id, logOptions, spec.schedules.logReconnect, {
              quiet: spec.schedules.logQuietWindow ?? Schedules.logQuietWindow,
              firstByte: spec.schedules.logFirstByte ?? Schedules.logFirstByte
            }),
          details: {
            jobId: job.id,
            namespace,
            transport,
            flavor: job.flavor ?? spec.flavor ?? DEFAULT_FLAVOR,
            url: `${endpoint}/jobs/${namespace}/${job.id}`
          },
          ...extra
        }
        return value
      })

    const proxyUrl = (job: Hub.JobInfo) => {
      const url = (job.status.exposeUrls ?? []).find((u) => isJobProxyUrl(u, job.id, SERVER_PORT, jobsDomain))
      return url === undefined
        ? Effect.fail(
            new StartError({
              provider: "hf-jobs",
              reason: "HubRejected",
              detail:
                `the Hub gave no proxy URL for port ${SERVER_PORT} of job ${job.id} under ${jobsDomain} ` +
                `(got ${JSON.stringify(job.status.exposeUrls ?? [])}); the HF token is not sent anywhere else`
            })
          )
        : Effect.succeed(url)
    }

    const provision = (spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const badLabel = JobLabels.problem(spec.labels)
        if (badLabel !== undefined) {
          return yield* new StartError({
            provider: "hf-jobs",
            reason: "InvalidOptions",
            detail: `labels: ${badLabel} (the Hub refuses anything else)`
          })
        }
        const current = yield* credential
        const hfToken = current.token
        const client = clientOf(current)
        const retry = Hub.retryTransient(spec.schedules.hubRetry)
        const namespace = yield* namespaceOf(spec.namespace)
        const server = yield* serverStopper

        const nonce = randomBytes(16).toString("hex")
        const sandboxToken = deriveSandboxToken(hfToken, nonce)
        const idle = spec.idleTimeout ?? DEFAULT_IDLE
        const lifetime = spec.lifetime ?? DEFAULT_LIFETIME
        const command = Bootstrap.script({
          transport: spec.transport,
          serverFiles: yield* serverFiles,
          idleTimeoutSeconds: Duration.toSeconds(idle) > 0 ? Duration.toSeconds(idle) : undefined,
          // The client waits this long for its first answer; the idle timeout must not end the sandbox sooner.
          startGraceSeconds: Math.ceil(Duration.toSeconds(spec.startTimeout))
        })
        const image = spec.image.replace(/^(https?:\/\/)?(hf\.co|huggingface\.co)\/spaces\//, "")
        const isSpace = image !== spec.image
        // Reserved keys come last, so the caller's env and secrets cannot override them.
        const environment: Record<string, string> = {
          ...spec.env,
          ...(spec.cloudflared.version ? { SBX_CLOUDFLARED_VERSION: spec.cloudflared.version } : {}),
          ...(spec.cloudflared.sha256 ? { SBX_CLOUDFLARED_SHA256: spec.cloudflared.sha256 } : {}),
          ...(spec.cloudflared.baseUrl ? { SBX_CLOUDFLARED_BASE_URL: spec.cloudflared.baseUrl } : {}),
          ...(spec.transport === "proxy" ? { SBX_PORT: String(SERVER_PORT) } : {})
        }
        const secrets: Record<string, string> = {
          ...Object.fromEntries(Object.entries(spec.secrets).map(([k, v]) => [k, Redacted.value(v)])),
          ...(spec.forwardHfToken ? { HF_TOKEN: Redacted.value(hfToken) } : {}),
          SBX_TOKEN: Redacted.value(sandboxToken)
        }
        const labels = { ...spec.labels, [LABEL.sandbox]: "1", [LABEL.mode]: "dedicated", [LABEL.nonce]: nonce }
        const jobSpec: Hub.JobSpec = {
          ...(isSpace ? { spaceId: image } : { dockerImage: spec.image }),
          command: ["/bin/sh", "-c", command],
          environment,
          secrets,
          flavor: spec.flavor ?? DEFAULT_FLAVOR,
          timeoutSeconds: Math.max(1, Math.ceil(Duration.toSeconds(lifetime))),
          labels,
          ...(spec.transport === "proxy" ? { expose: { ports: [SERVER_PORT] } } : {})
        }

        // Asked of the Hub by label: among hundreds of jobs, on any page.
        const findByNonce = client
          .listJobs(namespace, { labels: { [LABEL.sandbox]: "1", [LABEL.nonce]: nonce } }, spec.schedules.hubRetry)
          .pipe(Effect.map((jobs) => jobs.filter((job) => job.labels?.[LABEL.nonce] === nonce)))
        // Registered before the create request: if that request is interrupted or its answer lost, the job
        // may still exist, and is found by its nonce and cancelled. A detached sandbox that started is left
        // running (its idle timeout and job timeout end it); a failed start is cancelled all the same.
        let created: Hub.JobInfo | undefined
        yield* Effect.addFinalizer((exit) =>
          spec.detach && Exit.isSuccess(exit) && created !== undefined
            ? Effect.void
            : created !== undefined
              ? releaseJob(
                  client,
                  created.owner?.name ?? namespace,
                  created.id,
                  spec.schedules.cancelRetry,
                  server.stopped
                )
              : findByNonce.pipe(
                  Effect.flatMap((jobs) =>
                    Effect.forEach(jobs, (job) => releaseJob(client, namespace, job.id, spec.schedules.cancelRetry), {
                      discard: true
                    })
                  ),
                  Effect.interruptible,
                  Effect.timeout(CANCEL_BOUND),
                  Effect.ignore
                )
        )

        // Creating is not idempotent: after an ambiguous failure (5xx, reset) look for the job before retrying.
        const createOnce = client.createJob(namespace, jobSpec).pipe(
          Effect.catchIf(
            (error) => Hub.isTransient(error) && error.status !== 429,
            (error) =>
              findByNonce.pipe(
                Effect.orElseSucceed(() => []),
                Effect.flatMap((jobs) => (jobs[0] ? Effect.succeed(jobs[0]) : Effect.fail(error)))
              )
          )
        )
        const job = yield* createOnce.pipe(retry, Effect.mapError(hubFailure))
        created = job
        yield* Effect.annotateCurrentSpan({
          "sandbox.id": job.id,
          "sandbox.transport": spec.transport,
          "sandbox.flavor": jobSpec.flavor
        })
        const owner = job.owner?.name ?? namespace
        const endpoint = yield* endpointOf(
          client,
          hfToken,
          job,
          owner,
          spec.transport,
          spec,
          true,
          spec.detach
            ? {
                kill: Effect.zipRight(
                  server.stop,
                  releaseJob(client, owner, job.id, spec.schedules.cancelRetry, server.stopped)
                )
              }
            : {}
        )
        server.attach(endpoint)
        // Runs before the endpoint's own finalizers (the DNS fallback still works) and before the cancel:
        // termination does not depend on the Hub.
        yield* Effect.addFinalizer((exit) => (spec.detach && Exit.isSuccess(exit) ? Effect.void : server.stop))
        return endpoint
      }).pipe(Effect.withSpan("HfJobs.provision", { attributes: { "sandbox.provider": "hf-jobs" } }))

    /** Finds a live sandbox job by `[namespace/]id`, refusing anything else (a malformed id before any request). */
    const findSandbox = (ref: string, explicitNamespace: string | undefined) =>
      Effect.gen(function* () {
        const parsed = JobRef.parse(ref, explicitNamespace)
        if (Either.isLeft(parsed)) {
          return yield* new StartError({ provider: "hf-jobs", reason: "InvalidOptions", detail: parsed.left })
        }
        const id = parsed.right.id
        const client = yield* hub
        const namespace = yield* namespaceOf(parsed.right.namespace)
        const job = yield* client
          .getJob(namespace, id)
          .pipe(Hub.retryTransient(Schedules.hubRetry), Effect.mapError(hubFailure))
        if (!isSandboxJob(job)) {
          return yield* new StartError({
            provider: "hf-jobs",
            reason: "NotReady",
            detail: `job ${id} is not an hf-sandbox sandbox (it lacks the hf-sandbox labels)`
          })
        }
        return { client, job, namespace: job.owner?.name ?? namespace }
      })

    const connect = (id: string, spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const { client, job, namespace } = yield* findSandbox(id, spec.namespace)
        const hfToken = (yield* credential).token
        if (Hub.isTerminal(job.status.stage)) {
          return yield* new StartError({
            provider: "hf-jobs",
            reason: "JobFailed",
            detail: `sandbox ${id} is not running (${job.status.stage})`
          })
        }
        const hasProxy = (job.status.exposeUrls ?? []).some((u) => isJobProxyUrl(u, job.id, SERVER_PORT, jobsDomain))
        const server = yield* serverStopper
        const endpoint = yield* endpointOf(
          client,
          hfToken,
          job,
          namespace,
          hasProxy ? "proxy" : "tunnel",
          spec,
          false,
          {
            kill: Effect.zipRight(
              server.stop,
              releaseJob(client, namespace, job.id, spec.schedules.cancelRetry, server.stopped)
            )
          }
        )
        server.attach(endpoint)
        return endpoint
      }).pipe(Effect.withSpan("HfJobs.connect", { attributes: { "sandbox.id": id, "sandbox.provider": "hf-jobs" } }))

    const service: Service = {
      list: (listOptions = {}) =>
        Effect.gen(function* () {
          const client = yield* hub
          const namespace = yield* namespaceOf(listOptions.namespace)
          const jobs = yield* client.listJobs(
            namespace,
            { labels: { [LABEL.sandbox]: "1" }, stages: listOptions.all ? undefined : Hub.LIVE_STAGES },
            Schedules.hubRetry
          )
          const sandboxes = jobs.filter(
            (job) => isSandboxJob(job) && (listOptions.all || !Hub.isTerminal(job.status.stage))
          )
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
              url: `${endpoint}/jobs/${job.owner?.name ?? namespace}/${job.id}`
            })
          )
        }).pipe(
          Effect.mapError((error) => StartErrors.during("list sandboxes", error)),
          Effect.withSpan("HfJobs.list", {
            attributes: { "sandbox.provider": "hf-jobs", "hfjobs.all": listOptions.all ?? false }
          })
        ),
      kill: (id, killOptions = {}) =>
        Effect.gen(function* () {
          const { client, job, namespace } = yield* findSandbox(id, killOptions.namespace)
          yield* cancelJob(client, namespace, job.id, Schedules.cancelRetry)
        }).pipe(
          Effect.mapError((error) => StartErrors.during(`kill sandbox ${id}`, error)),
          Effect.withSpan("HfJobs.kill", { attributes: { "sandbox.id": id, "sandbox.provider": "hf-jobs" } })
        ),
      logs: (id, logOptions = {}) =>
        Stream.unwrap(
          Effect.map(findSandbox(id, logOptions.namespace), ({ client, job, namespace }) =>
            jobLogs(
              client,
              namespace,
              job.id,
              logOptions,
              options.schedules?.logReconnect ?? Schedules.logReconnect,
              timingOf(options.schedules ?? {})
            )
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
    }

    const providerService: SandboxProvider.Service = { name: "hf-jobs", provision, connect }
    return { provider: providerService, service }
  })

/**
 * Builds the provider. Credentials and the namespace are resolved on first use and kept for the
 * provider's life.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<SandboxProvider.Service, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => Effect.map(build(options, fs), (built) => built.provider))

/**
 * Provides the HF Jobs provider. Needs `FileSystem` (e.g. `NodeContext.layer`); sandboxes also need an
 * `HttpClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<SandboxProvider.SandboxProvider | HfJobs, never, FileSystem.FileSystem> =>
  Layer.effectContext(
    Effect.flatMap(FileSystem.FileSystem, (fs) =>
      Effect.map(build(options, fs), (built) =>
        Context.make(SandboxProvider.SandboxProvider, built.provider).pipe(Context.add(HfJobs, built.service))
      )
    )
  )

/**
 * Sandbox jobs of a namespace (default: the token's user); only live ones unless `all`.
 *
 * @since 0.1.0
 * @category operations
 */
export const list = (options?: Parameters<Service["list"]>[0]) => Effect.flatMap(HfJobs, (s) => s.list(options))

/**
 * Stops a sandbox by id (cancels its job). The id may be `namespace/id`, as the job's page shows it.
 *
 * @since 0.1.0
 * @category operations
 */
export const kill = (id: string, options?: Parameters<Service["kill"]>[1]) =>
  Effect.flatMap(HfJobs, (s) => s.kill(id, options))

/**
 * A sandbox's log by id (or `namespace/id`): the log so far (ended by `Schedules.logQuietWindow` of
 * silence after its first line), or with `follow` until the sandbox ends.
 *
 * @since 0.1.0
 * @category operations
 */
export const logs = (id: string, options?: Parameters<Service["logs"]>[1]) =>
  Stream.unwrap(Effect.map(HfJobs, (s) => s.logs(id, options)))

/**
 * Provides the HF Jobs provider from configuration. Each option is a `Config` (or the whole `Options`
 * one); what is left out is read as `layer` reads it: the token is found as `huggingface_hub` finds it
 * (`HF_OIDC_RESOURCE`, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the token file; see {@link Options}), the
 * endpoint is `HF_ENDPOINT`, and the namespace `HF_SANDBOX_NAMESPACE`. Blank values count as unset.
 *
 * ```ts
 * import * as Config from "effect/Config"
 * import * as HfJobs from "hf-sandbox/HfJobs"
 *
 * const Provider = HfJobs.layerConfig({ namespace: Config.string("MY_ORG") })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = {}
): Layer.Layer<SandboxProvider.SandboxProvider | HfJobs, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      // `Config.unwrap` cannot take an empty record.
      const given: Options =
        !Config.isConfig(config) && Object.keys(config).length === 0 ? {} : yield* Config.unwrap<Options>(config)
      const blank = (value: string | undefined) => (value === undefined || value.trim() === "" ? undefined : value)
      const namespace =
        blank(given.namespace) ??
        blank(Option.getOrUndefined(yield* Config.option(Config.string("HF_SANDBOX_NAMESPACE"))))
      return layer({ ...given, namespace })
    })
  )
