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
import * as os from "node:os"
import * as path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Bootstrap from "./internal/bootstrap.js"
import * as Hub from "./internal/hub.js"
import { serverScriptPath } from "./internal/serverScript.js"
import { isJobProxyUrl, parseMarker } from "./internal/tunnel.js"
import { type HubError, StartError } from "./SandboxError.js"
import * as SandboxProvider from "./SandboxProvider.js"
import * as Schedules from "./Schedules.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** HF token. Default: `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, `$HF_HOME/token`, `~/.cache/huggingface/token`). */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Hub endpoint. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string | undefined
  /** Default namespace (user or org) for jobs. Default: the token's user, asked once per layer. */
  readonly namespace?: string | undefined
  /** Domain of the Jobs proxy's exposed URLs. Default `hf.jobs`. */
  readonly jobsDomain?: string | undefined
}

/** The in-sandbox server's port behind the Jobs proxy: unusual on purpose, so 3000/8000/8080 stay free. */
const SERVER_PORT = 49983
const DEFAULT_ENDPOINT = "https://huggingface.co"
const DEFAULT_FLAVOR = "cpu-basic"
const DEFAULT_LIFETIME = Duration.hours(1)
const DEFAULT_IDLE = Duration.minutes(10)
const LOG_TAIL_LINES = 20
const CANCEL_BOUND = Duration.seconds(30)
const VERSION = "0.1.0"

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
  Redacted.make(createHmac("sha256", Redacted.value(hfToken)).update(`hf-sandbox:${nonce}`).digest("hex"))

const clean = (token: string | undefined) => {
  const value = token?.replace(/[\r\n]/g, "").trim()
  return value === undefined || value === "" ? undefined : value
}

/** Token resolution in the order of `huggingface_hub`: option, environment, token file. */
const resolveToken = (fs: FileSystem.FileSystem, explicit: Redacted.Redacted<string> | undefined) =>
  Effect.gen(function* () {
    if (explicit !== undefined) return explicit
    const fromEnv = clean(process.env.HF_TOKEN) ?? clean(process.env.HUGGING_FACE_HUB_TOKEN)
    if (fromEnv !== undefined) return Redacted.make(fromEnv)
    const home =
      process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "huggingface")
    const file = process.env.HF_TOKEN_PATH ?? path.join(home, "token")
    const fromFile = yield* fs.readFileString(file).pipe(
      Effect.map(clean),
      Effect.orElseSucceed(() => undefined)
    )
    if (fromFile !== undefined) return Redacted.make(fromFile)
    return yield* new StartError({
      provider: "hf-jobs",
      reason: "NoToken",
      detail:
        "no Hugging Face token found. Log in with `hf auth login`, set HF_TOKEN, or pass " +
        'HfJobs.layer({ token: Redacted.make("hf_...") }). Jobs need a token with write access.'
    })
  })

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
 * Every line of the job's log once, across reconnects. The Hub ends a log stream early (e.g. while the
 * job is scheduling) and replays from the start on every request, so the stream is reopened on
 * `reconnect` and lines already seen are skipped by their position.
 */
const followLogs = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  reconnect: Schedule.Schedule<unknown>
): Stream.Stream<string, HubError> => {
  let seen = 0
  const pass = Stream.suspend(() => {
    let index = 0
    return hub.logs(namespace, jobId).pipe(
      Stream.filter(() => index++ >= seen),
      Stream.tap(() => Effect.sync(() => void seen++)),
      // A cut or refused stream is reopened; a rejection (401/403/404) is final.
      Stream.catchAll((error) => (Hub.isTransient(error) ? Stream.empty : Stream.fail(error)))
    )
  })
  return Stream.repeat(pass, reconnect)
}

const provider = (options: Options, fs: FileSystem.FileSystem): Effect.Effect<SandboxProvider.Service> =>
  Effect.gen(function* () {
    const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, "")
    const jobsDomain = options.jobsDomain ?? "hf.jobs"
    const userAgent = `hf-sandbox/${VERSION}; node/${process.versions.node}`
    const token = yield* Effect.cached(resolveToken(fs, options.token))
    const hub = yield* Effect.cached(Effect.map(token, (t) => Hub.make({ endpoint, token: t, userAgent })))
    const hubFailure = (error: HubError) =>
      new StartError({ provider: "hf-jobs", reason: "HubRejected", detail: error.message, cause: error })
    // whoami is strictly rate-limited: asked at most once for the provider's life.
    const whoami = yield* Effect.cached(
      Effect.flatMap(hub, (h) => h.whoami.pipe(Hub.retryTransient(Schedules.hubRetry), Effect.mapError(hubFailure)))
    )
    const serverSource = yield* Effect.cached(
      fs
        .readFileString(serverScriptPath)
        .pipe(
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

    const provision = (spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const hfToken = yield* token
        const client = yield* hub
        const retry = Hub.retryTransient(spec.schedules.hubRetry)
        const namespace = spec.namespace ?? options.namespace ?? (yield* whoami).name

        const nonce = randomBytes(16).toString("hex")
        const sandboxToken = deriveSandboxToken(hfToken, nonce)
        const idle = spec.idleTimeout ?? DEFAULT_IDLE
        const lifetime = spec.lifetime ?? DEFAULT_LIFETIME
        const command = Bootstrap.script({
          transport: spec.transport,
          serverSource: yield* serverSource,
          idleTimeoutSeconds: Duration.toSeconds(idle) > 0 ? Duration.toSeconds(idle) : undefined
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

        const findByNonce = client.listJobs(namespace).pipe(
          retry,
          Effect.map((jobs) => jobs.filter((job) => job.labels?.[LABEL.nonce] === nonce))
        )
        const cancel = (jobId: string) =>
          client.cancelJob(namespace, jobId).pipe(
            Effect.retry({ schedule: spec.schedules.cancelRetry, while: Hub.isTransient }),
            // A 4xx on a job that already ended is success: it is not running.
            Effect.catchAll((error) =>
              client
                .getJob(namespace, jobId)
                .pipe(Effect.flatMap((job) => (Hub.isTerminal(job.status.stage) ? Effect.void : Effect.fail(error))))
            ),
            Effect.tapError((error) =>
              Effect.logWarning(`hf-sandbox: could not cancel job ${jobId}; its timeout will end it`, error.message)
            ),
            Effect.interruptible,
            Effect.timeout(CANCEL_BOUND),
            Effect.ignore
          )

        // Registered before the create request: if that request is interrupted or its answer lost, the job
        // may still exist, and is found by its nonce and cancelled.
        let jobId: string | undefined
        yield* Effect.addFinalizer(() =>
          jobId !== undefined
            ? cancel(jobId)
            : findByNonce.pipe(
                Effect.flatMap((jobs) => Effect.forEach(jobs, (job) => cancel(job.id), { discard: true })),
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
        jobId = job.id
        const owner = job.owner?.name ?? namespace
        yield* Effect.annotateCurrentSpan({ "sandbox.id": job.id, "sandbox.transport": spec.transport })

        const jobFailed = (stage: string, message: string | null | undefined) =>
          Effect.flatMap(lastLines(client, owner, job.id), (lines) =>
            Effect.fail(
              new StartError({
                provider: "hf-jobs",
                reason: "JobFailed",
                detail: `job ${job.id} ended (${stage})${message ? `: ${message}` : ""}`,
                stderrTail: lines.join("\n")
              })
            )
          )
        const checks: Schedule.Schedule<unknown, Hub.JobInfo> = spec.schedules.stageCheck
        // Fails as soon as the job reaches a terminal stage; never succeeds.
        const died: Effect.Effect<never, StartError> = client.getJob(owner, job.id).pipe(
          retry,
          Effect.mapError(hubFailure),
          Effect.repeat({
            schedule: Schedule.passthrough(checks),
            until: (current) => Hub.isTerminal(current.status.stage)
          }),
          Effect.flatMap((current) => jobFailed(current.status.stage, current.status.message))
        )

        const baseUrl =
          spec.transport === "proxy"
            ? yield* proxyUrl(job, jobsDomain)
            : yield* followLogs(client, owner, job.id, spec.schedules.logReconnect).pipe(
                Stream.filterMap(parseMarker),
                Stream.runHead,
                Effect.mapError(hubFailure),
                Effect.flatMap(
                  Option.match({
                    onNone: () =>
                      Effect.fail(
                        new StartError({
                          provider: "hf-jobs",
                          reason: "TunnelFailed",
                          detail: "the job's logs ended without a tunnel URL"
                        })
                      ),
                    onSome: Effect.succeed
                  })
                ),
                (waitForUrl) => Effect.raceFirst(waitForUrl, died)
              )

        const endpointValue: SandboxProvider.Endpoint = {
          id: job.id,
          provider: "hf-jobs",
          baseUrl,
          token: sandboxToken,
          ...(spec.transport === "proxy"
            ? // The proxy wants the HF token as bearer; it is read per request, never stored in a header map.
              { headers: Effect.sync(() => ({ authorization: `Bearer ${Redacted.value(hfToken)}` })) }
            : {}),
          died,
          details: {
            jobId: job.id,
            namespace: owner,
            transport: spec.transport,
            flavor: jobSpec.flavor,
            url: `${endpoint}/jobs/${owner}/${job.id}`
          }
        }
        return endpointValue
      }).pipe(Effect.withSpan("HfJobs.provision"))

    const proxyUrl = (job: Hub.JobInfo, domain: string) => {
      const url = (job.status.exposeUrls ?? []).find((u) => isJobProxyUrl(u, job.id, SERVER_PORT, domain))
      return url === undefined
        ? Effect.fail(
            new StartError({
              provider: "hf-jobs",
              reason: "HubRejected",
              detail:
                `the Hub gave no proxy URL for port ${SERVER_PORT} of job ${job.id} under ${domain} ` +
                `(got ${JSON.stringify(job.status.exposeUrls ?? [])}); the HF token is not sent anywhere else`
            })
          )
        : Effect.succeed(url)
    }

    return { name: "hf-jobs", provision } satisfies SandboxProvider.Service
  })

/**
 * Builds the provider. Credentials and the namespace are resolved on first use and kept for the
 * provider's life.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<SandboxProvider.Service, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => provider(options, fs))

/**
 * Provides the HF Jobs provider. Needs `FileSystem` (e.g. `NodeContext.layer`); sandboxes also need an
 * `HttpClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<SandboxProvider.SandboxProvider, never, FileSystem.FileSystem> =>
  Layer.effect(SandboxProvider.SandboxProvider, make(options))

/**
 * Provides the HF Jobs provider from configuration: `HF_TOKEN` (optional; the token file is the
 * fallback), `HF_ENDPOINT`, `HF_SANDBOX_NAMESPACE`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Options> = Config.all({
    token: Config.option(Config.redacted("HF_TOKEN")).pipe(Config.map(Option.getOrUndefined)),
    endpoint: Config.option(Config.string("HF_ENDPOINT")).pipe(Config.map(Option.getOrUndefined)),
    namespace: Config.option(Config.string("HF_SANDBOX_NAMESPACE")).pipe(Config.map(Option.getOrUndefined))
  })
): Layer.Layer<SandboxProvider.SandboxProvider, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(Effect.map(config, layer))
