/**
 * The HF Jobs provider: `provision` creates a sandbox job and finds its endpoint, `connect` finds the
 * endpoint of a running one; `make` builds them, with the operations by id, over one provider context.
 */
import { randomBytes } from "node:crypto"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Redacted from "effect/Redacted"
import type { SandboxOptions, Service } from "../../HfJobs.js"
import { type HubError, StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import type { ServerFiles } from "../serverScript.js"
import type * as Config from "./config.js"
import { hubFailure, make as makeContext, type ProviderContext } from "./context.js"
import { endpointOf, serverStopper } from "./endpoint.js"
import * as Flavors from "./flavors.js"
import { hardware } from "./hardware.js"
import * as Hub from "./hub.js"
import { CANCEL_BOUND, jobSpec, LABEL, releaseJob, SERVER_PORT } from "./jobs.js"
import { listing } from "./listing.js"
import * as Names from "./names.js"
import { findSandbox, kill, list, logs, metrics, notRunning, sweep } from "./operations.js"
import type { HfSpec } from "./sandboxOptions.js"
import * as HfSandboxOptions from "./sandboxOptions.js"
import { isJobProxyUrl } from "./tunnel.js"

/**
 * The provider and the operations by id, over one context: the credential and the namespace are resolved
 * on first use and kept for the provider's life.
 */
export const make = (
  config: Config.Resolved,
  fs: FileSystem.FileSystem,
  sandboxOptions: Effect.Effect<SandboxOptions>
): Effect.Effect<{ readonly provider: SandboxProvider.Service; readonly service: Service }> =>
  Effect.map(makeContext(config, fs, sandboxOptions), (ctx) => ({
    provider: {
      name: "hf-jobs",
      provision: (spec) => Effect.flatMap(hfSpecOf(ctx, spec), (hfSpec) => provision(ctx, hfSpec)),
      connect: (id, spec) => Effect.flatMap(hfSpecOf(ctx, spec), (hfSpec) => connect(ctx, id, hfSpec)),
      startTimeout: (spec) =>
        Effect.map(
          Effect.flatMap(ctx.sandboxOptions, (current) => HfSandboxOptions.optionsOf(spec, current)),
          HfSandboxOptions.startTimeout
        ),
      list: (options) => listing(ctx, options),
      kill: (id) => kill(ctx, id),
      logs: (id, options) => logs(ctx, id, options),
      metrics: (id) => metrics(ctx, id)
    },
    service: {
      list: (options) => list(ctx, options),
      kill: (id, options) => kill(ctx, id, options),
      logs: (id, options) => logs(ctx, id, options),
      hardware: hardware(ctx),
      sweep: (options) => sweep(ctx, options)
    }
  }))

/** The spec with the HF options in force (the Context value's under the `make`'s own) and the schedules. */
const hfSpecOf = (ctx: ProviderContext, spec: SandboxProvider.Spec) =>
  Effect.flatMap(Effect.zip(ctx.sandboxOptions, Schedules.Schedules), ([current, schedules]) =>
    HfSandboxOptions.resolve(spec, current, schedules)
  )

/**
 * Creates a sandbox job and waits for its endpoint. The job is cancelled when the scope closes, unless
 * the sandbox is detached and started; a job whose create request was cut off is found by its nonce.
 * With a list of flavors, a job the Hub keeps in SCHEDULING too long is cancelled and the next flavor
 * tried (see ./flavors.ts); with a spend cap, each flavor's job has the timeout the cap buys.
 */
export const provision = (ctx: ProviderContext, given: HfSpec) =>
  Effect.gen(function* () {
    const current = yield* ctx.credential
    const hfToken = current.token
    const client = ctx.clientOf(current)
    const namespace = yield* ctx.namespaceOf(given.namespace)
    const server = yield* serverStopper
    const creating: Creating = {
      client,
      hfToken,
      namespace,
      serverFiles: yield* ctx.serverFiles,
      server,
      givenUp: new Set()
    }

    const attempts = yield* Flavors.attemptsOf(client, given)
    const { job, request, spec } = yield* Flavors.firstScheduled(client, attempts, (attempt) =>
      createJob(creating, attempt)
    )
    yield* Effect.annotateCurrentSpan({
      "sandbox.id": job.id,
      "sandbox.transport": spec.transport,
      "sandbox.flavor": request.flavor
    })
    const owner = job.owner?.name ?? namespace
    const endpoint = yield* endpointOf(
      ctx,
      { client, hfToken, job, namespace: owner, transport: spec.transport, spec, flavor: spec.flavor, fresh: true },
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

/** What creating a sandbox job needs, for every attempt of one sandbox. */
interface Creating {
  readonly client: Hub.HubClient
  readonly hfToken: Redacted.Redacted<string>
  readonly namespace: string
  readonly serverFiles: ServerFiles
  readonly server: Effect.Effect.Success<typeof serverStopper>
  /**
   * The jobs this sandbox's earlier flavors gave up: a name check does not count them (the Hub may list
   * one as live for a moment after its cancel).
   */
  readonly givenUp: Set<string>
}

/**
 * Creates one sandbox job for `spec` and registers its cancel on the scope: unless the sandbox is
 * detached and started, or the job was given up (`abandon`, which cancels it at once).
 */
const createJob = ({ client, givenUp, hfToken, namespace, server, serverFiles }: Creating, spec: Flavors.Attempt) =>
  Effect.gen(function* () {
    const retry = Hub.retryTransient(spec.schedules.hubRetry)
    const nonce = randomBytes(16).toString("hex")
    const request = jobSpec(spec, hfToken, nonce, serverFiles)

    // Asked of the Hub by label: among hundreds of jobs, on any page.
    const findByNonce = client
      .listJobs(namespace, { labels: { [LABEL.sandbox]: "1", [LABEL.nonce]: nonce } }, spec.schedules.hubRetry)
      .pipe(Effect.map((jobs) => jobs.filter((job) => job.labels?.[LABEL.nonce] === nonce)))
    // Registered before the create request: if that request is interrupted or its answer lost, the job
    // may still exist, and is found by its nonce and cancelled. A detached sandbox that started is left
    // running (its idle timeout and job timeout end it); a failed start is cancelled all the same.
    let created: Hub.JobInfo | undefined
    let abandoned = false
    yield* Effect.addFinalizer((exit) =>
      abandoned || (spec.detach && Exit.isSuccess(exit) && created !== undefined)
        ? Effect.void
        : created !== undefined
          ? releaseJob(client, created.owner?.name ?? namespace, created.id, spec.schedules.cancelRetry, server.stopped)
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
    const createOnce = client.createJob(namespace, request).pipe(
      Effect.catchIf(
        (error) => Hub.isTransient(error) && error.status !== 429,
        (error) =>
          findByNonce.pipe(
            Effect.orElseSucceed(() => []),
            Effect.flatMap((jobs) => (jobs[0] ? Effect.succeed(jobs[0]) : Effect.fail(error)))
          )
      )
    )
    // A name is checked free first; a race of two creates is settled after (see ./names).
    if (spec.name !== undefined) {
      yield* Names.checkFree(client, namespace, spec.name, spec.schedules.hubRetry, givenUp).pipe(
        Effect.mapError(named)
      )
    }
    const job = yield* createOnce.pipe(retry, Effect.mapError(hubFailure))
    created = job
    if (spec.name !== undefined) {
      yield* Names.settle(client, namespace, spec.name, job, spec.schedules.hubRetry, givenUp).pipe(
        Effect.mapError(named)
      )
    }
    const owner = job.owner?.name ?? namespace
    const abandon = Effect.suspend(() => {
      abandoned = true
      givenUp.add(job.id)
      return releaseJob(client, owner, job.id, spec.schedules.cancelRetry)
    })
    return { job, request, namespace: owner, abandon } satisfies Flavors.Created
  })

/** A Hub failure of a name check as a start's error; a `NameTaken` as it is. */
const named = (error: HubError | StartError): StartError => (error instanceof StartError ? error : hubFailure(error))

/** The endpoint of a running sandbox job, found by `[namespace/]id`; its transport is the one it was made with. */
export const connect = (ctx: ProviderContext, id: string, spec: HfSpec) =>
  Effect.gen(function* () {
    const { client, job, namespace } = yield* findSandbox(ctx, id, spec.namespace)
    const hfToken = (yield* ctx.credential).token
    if (Hub.isTerminal(job.status.stage)) return yield* notRunning(id, job.status.stage)
    const hasProxy = (job.status.exposeUrls ?? []).some((u) =>
      isJobProxyUrl(u, job.id, SERVER_PORT, ctx.config.jobsDomain)
    )
    const server = yield* serverStopper
    const endpoint = yield* endpointOf(
      ctx,
      { client, hfToken, job, namespace, transport: hasProxy ? "proxy" : "tunnel", spec, fresh: false },
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
