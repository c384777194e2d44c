/**
 * Sandbox jobs on the Hub: what one is created with, the labels that mark it, how one ends (cancelled, bounded, or dead on its
 * own) and how that is said in errors.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { type HubError, StartError } from "../../SandboxError.js"
import * as Bootstrap from "../bootstrap.js"
import * as HostLabels from "../hostLabels.js"
import type { ServerFiles } from "../serverScript.js"
import { defaults } from "./config.js"
import type { Attempt } from "./flavors.js"
import * as Hub from "./hub.js"
import { isStartBanner, lastLines } from "./logs.js"
import type { HfSpec } from "./sandboxOptions.js"
import { deriveSandboxToken } from "./token.js"

/** The in-sandbox server's port behind the Jobs proxy: unusual on purpose, so 3000/8000/8080 stay free. */
export const SERVER_PORT = 49983
export const CANCEL_BOUND = Duration.seconds(30)
/** How long a failed request waits for the Hub's word on whether the job ended: one inspect, not a retry loop. */
const EXIT_REASON_BOUND = Duration.seconds(5)

/** Labels every sandbox job carries (`name`: a named one, `Sandbox.make({ name })`). */
export const LABEL = {
  sandbox: "hf-sandbox",
  mode: "hf-sandbox-mode",
  nonce: "hf-sandbox-nonce",
  name: "hf-sandbox-name"
} as const

/** Whether a job carries every label of a sandbox job. */
export const isSandboxJob = (job: Hub.JobInfo) =>
  job.labels?.[LABEL.sandbox] === "1" &&
  (job.labels?.[LABEL.mode] === "dedicated" || job.labels?.[LABEL.mode] === HostLabels.MODE_POOL) &&
  !!job.labels?.[LABEL.nonce]

/** How a job ended, as errors say it: `job ID ended (STAGE): message`. */
const jobEnded = (jobId: string, job: Hub.JobInfo) =>
  `job ${jobId} ended (${job.status.stage})${job.status.message ? `: ${job.status.message}` : ""}`

/**
 * Why a sandbox's job no longer serves, asked of the Hub when a request to it failed: a job in a terminal
 * stage (`the job ended (ERROR): …`), else `None` (a blip, or a Hub that does not answer in time).
 */
export const jobExitReason = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string
): Effect.Effect<Option.Option<string>> =>
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
export const cancelJob = (
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
export const releaseJob = (
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
          : `hf-sandbox: could not cancel job ${jobId} nor reach its server; the server's idle timeout or the sandbox's lifetime will end it`,
        error.message
      )
    ),
    Effect.interruptible,
    Effect.timeout(CANCEL_BOUND),
    Effect.ignore
  )

/** Fails with the job's end (stage, message, last log lines) as soon as it reaches a terminal stage. */
export const watchForDeath = (
  hub: Hub.HubClient,
  namespace: string,
  jobId: string,
  spec: HfSpec,
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
 * The create request of a sandbox job: the bootstrap command that starts the server, its environment,
 * the secrets (the sandbox token among them, derived from `hfToken` and `nonce`) and the labels that
 * find it again.
 */
export const jobSpec = (
  spec: Attempt,
  hfToken: Redacted.Redacted<string>,
  nonce: string,
  serverFiles: ServerFiles
): Hub.JobSpec => {
  const sandboxToken = deriveSandboxToken(hfToken, nonce)
  const idle = spec.idleTimeout ?? defaults.idleTimeout
  const lifetime = spec.lifetime ?? defaults.lifetime
  const command = Bootstrap.command({
    transport: spec.transport,
    serverFiles,
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
    ...(spec.transport === "proxy" ? { SBX_PORT: String(SERVER_PORT) } : {}),
    // Traffic to these through the Jobs proxy is the sandbox in use: it holds off the idle timeout.
    ...(spec.ports.length > 0 ? { SBX_EXPOSED_PORTS: spec.ports.join(",") } : {}),
    ...(spec.host !== undefined ? hostEnv(spec.host) : {})
  }
  const secrets: Record<string, string> = {
    ...Object.fromEntries(Object.entries(spec.secrets).map(([k, v]) => [k, Redacted.value(v)])),
    ...(spec.forwardHfToken ? { HF_TOKEN: Redacted.value(hfToken) } : {}),
    SBX_TOKEN: Redacted.value(sandboxToken)
  }
  // The name label is the provider's: a caller's `hf-sandbox-name` label would name a job unchecked.
  const { [LABEL.name]: _reserved, ...own } = spec.labels
  const labels = {
    ...own,
    [LABEL.sandbox]: "1",
    [LABEL.mode]: "dedicated",
    [LABEL.nonce]: nonce,
    ...(spec.name !== undefined ? { [LABEL.name]: spec.name } : {}),
    // A pool host: HF's mode and pool labels, so that HF's client and ours find it by its pool.
    ...(spec.host !== undefined ? HostLabels.of(spec.host) : {})
  }
  return {
    ...(isSpace ? { spaceId: image } : { dockerImage: spec.image }),
    command,
    environment,
    secrets,
    flavor: spec.flavor,
    // The Hub's job spec names the lifetime `timeoutSeconds` (whole seconds, at least one).
    timeoutSeconds: Math.max(1, Math.ceil(Duration.toSeconds(lifetime))),
    labels,
    ...exposeOf(spec),
    ...(spec.volumes.length > 0 ? { volumes: spec.volumes } : {}),
    ...(spec.ssh ? { ssh: { enabled: true } as const } : {})
  }
}

/**
 * A pool host's variables, as HF's `SandboxPool._boot_host` sets them (its capacity and pool size stay
 * with the job, for whoever adopts it), and whether it may run with weaker isolation.
 */
const hostEnv = (host: NonNullable<HfSpec["host"]>): Record<string, string> => ({
  SBX_HOST_MODE: "1",
  SBX_CAPACITY: String(host.capacity),
  ...(host.maxHosts !== undefined ? { SBX_MAX_HOSTS: String(host.maxHosts) } : {}),
  ...(host.weakIsolation ? { SBX_HOST_WEAK_ISOLATION: "1" } : {}),
  ...(host.hostTokenActs ? { SBX_HOST_TOKEN_ACTS: "1" } : {})
})

/** The job's `expose`: the server's port for the proxy transport, and the caller's declared `ports`. */
const exposeOf = (spec: HfSpec): { readonly expose?: { readonly ports: ReadonlyArray<number> } } => {
  const ports = [...new Set([...(spec.transport === "proxy" ? [SERVER_PORT] : []), ...spec.ports])]
  return ports.length === 0 ? {} : { expose: { ports } }
}
