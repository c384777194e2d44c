/**
 * The endpoint of a sandbox job, created or found: its URL by transport, the sandbox token, the proxy's
 * bearer, liveness, logs, and a way to ask its server to shut down.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as ServerShutdown from "../serverShutdown.js"
import { defaults } from "./config.js"
import { hubFailure, type ProviderContext } from "./context.js"
import * as Hub from "./hub.js"
import { jobExitReason, LABEL, SERVER_PORT, watchForDeath } from "./jobs.js"
import { jobLogs } from "./logs.js"
import { jobMetrics } from "./metrics.js"
import { exposeOf } from "./ports.js"
import type { HfSpec } from "./sandboxOptions.js"
import { deriveSandboxToken } from "./token.js"
import { isJobProxyUrl, tunnelUrl } from "./tunnel.js"

/**
 * Asks the server behind an endpoint (once there is one) to shut down, and remembers whether it agreed.
 * Uses the application's HttpClient (`Sandbox.make` requires one); without it, only the Hub can end the job.
 */
export const serverStopper = Effect.map(Effect.serviceOption(HttpClient.HttpClient), (http) => {
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

/** A sandbox job an endpoint is made for. */
export interface FoundJob {
  readonly client: Hub.HubClient
  /** The HF token the job was found with: the sandbox token derives from it. */
  readonly hfToken: Redacted.Redacted<string>
  readonly job: Hub.JobInfo
  readonly namespace: string
  readonly transport: "tunnel" | "proxy"
  readonly spec: HfSpec
  /** The flavor the job was created with, when this client created it (for a Hub answer without one). */
  readonly flavor?: string
  /** A job just created (see `tunnelUrl`). */
  readonly fresh: boolean
}

/** The endpoint of a created or found sandbox job: URL by transport, token, liveness, logs. */
export const endpointOf = (ctx: ProviderContext, found: FoundJob, extra: Partial<SandboxProvider.Endpoint>) =>
  Effect.gen(function* () {
    const { client, fresh, hfToken, job, namespace, spec, transport } = found
    const died = watchForDeath(client, namespace, job.id, spec, hubFailure)
    // The Jobs proxy wants the HF token as bearer; it is read per request, never stored in a header map,
    // and is the current one: a sandbox may outlive the token it was made with, once refreshed.
    const bearer = Effect.map(bearerToken(ctx, hfToken), (t) => ({ authorization: `Bearer ${Redacted.value(t)}` }))
    const tunnel =
      transport === "tunnel"
        ? yield* tunnelUrl(ctx.config.publicDns, { client, namespace, jobId: job.id, spec, died, fresh })
        : undefined
    const value: SandboxProvider.Endpoint = {
      id: job.id,
      provider: "hf-jobs",
      baseUrl: tunnel !== undefined ? tunnel.initial : yield* proxyUrl(job, ctx.config.jobsDomain),
      ...(tunnel !== undefined ? { currentBaseUrl: tunnel.current } : {}),
      ...(tunnel?.transformClient !== undefined ? { transformClient: tunnel.transformClient } : {}),
      token: deriveSandboxToken(hfToken, job.labels?.[LABEL.nonce] ?? ""),
      ...(transport === "proxy" ? { headers: bearer } : {}),
      expose: exposeOf({ job, jobsDomain: ctx.config.jobsDomain, transport, bearer }),
      died,
      exitReason: jobExitReason(client, namespace, job.id),
      logs: (logOptions) =>
        jobLogs(client, namespace, job.id, logOptions, spec.schedules.logReconnect, {
          quiet: spec.schedules.logQuietWindow,
          firstByte: spec.schedules.logFirstByte
        }),
      details: {
        jobId: job.id,
        namespace,
        transport,
        flavor: job.flavor ?? found.flavor ?? defaults.flavor,
        url: `${ctx.config.endpoint}/jobs/${namespace}/${job.id}`
      },
      hardware: job.flavor ?? found.flavor ?? defaults.flavor,
      lifetime: spec.lifetime ?? defaults.lifetime,
      forwardsHfToken: spec.forwardHfToken,
      // Asked of the Hub when wanted: the URL is the job's, whoever made it and with whatever options.
      sshUrl: client.getJob(namespace, job.id).pipe(
        Hub.retryTransient(spec.schedules.hubRetry),
        Effect.map((info) => Option.fromNullable(info.status.sshUrl))
      ),
      onThisMachine: false,
      metrics: () =>
        jobMetrics(client, namespace, job.id, {
          reconnect: spec.schedules.logReconnect,
          silence: spec.schedules.metricsSilence
        }),
      hub: {
        endpoint: ctx.config.endpoint,
        token: Effect.map(bearerToken(ctx, hfToken), Option.some)
      },
      ...extra
    }
    return value
  })

/** The provider's current HF token, else the one the job was found with. */
const bearerToken = (ctx: ProviderContext, hfToken: Redacted.Redacted<string>) =>
  ctx.credential.pipe(
    Effect.map((c) => c.token),
    Effect.orElseSucceed(() => hfToken)
  )

/** The Jobs-proxy URL of the job's server port, the only one that may receive the HF token. */
const proxyUrl = (job: Hub.JobInfo, jobsDomain: string) => {
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
