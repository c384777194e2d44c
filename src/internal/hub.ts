/**
 * The Hub's Jobs API through `@huggingface/hub`, wrapped in Effect: interruption aborts the request
 * (the package takes no AbortSignal, so the signal travels inside the `fetch` it is given), failures
 * become `HubError`s with the Hub's message and status, and transient ones retry on a Schedule.
 */
import * as Hub from "@huggingface/hub"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { HubError } from "../SandboxError.js"

/** What we read of a job. Decoded leniently: the stage is an open string, unknown fields are ignored. */
export const JobInfo = Schema.Struct({
  id: Schema.String,
  status: Schema.Struct({
    stage: Schema.String,
    message: Schema.optional(Schema.NullOr(Schema.String)),
    exposeUrls: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
  }),
  labels: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String }))),
  owner: Schema.optional(Schema.NullOr(Schema.Struct({ name: Schema.String }))),
  dockerImage: Schema.optional(Schema.NullOr(Schema.String)),
  spaceId: Schema.optional(Schema.NullOr(Schema.String)),
  flavor: Schema.optional(Schema.NullOr(Schema.String)),
  createdAt: Schema.optional(Schema.NullOr(Schema.String))
})
export type JobInfo = typeof JobInfo.Type

const decodeJob = Schema.decodeUnknown(JobInfo)

/** Stages after which a job never runs again. */
export const TERMINAL_STAGES: ReadonlySet<string> = new Set(["COMPLETED", "ERROR", "CANCELED", "DELETED"])
export const isTerminal = (stage: string) => TERMINAL_STAGES.has(stage)

/** The create body, as the Hub takes it (the package's typing lacks `expose`). */
export interface JobSpec {
  readonly dockerImage?: string | undefined
  readonly spaceId?: string | undefined
  readonly command: ReadonlyArray<string>
  readonly environment: Readonly<Record<string, string>>
  readonly secrets: Readonly<Record<string, string>>
  readonly flavor: string
  readonly timeoutSeconds: number
  readonly labels: Readonly<Record<string, string>>
  readonly expose?: { readonly ports: ReadonlyArray<number> } | undefined
}

export interface Config {
  readonly endpoint: string
  readonly token: Redacted.Redacted<string>
  readonly userAgent: string
  /** Where the token came from, named by a 401. */
  readonly tokenSource?: string | undefined
}

/** A 429, a 5xx or a transport failure: worth another try. */
export const isTransient = (error: HubError) =>
  error.status === undefined || error.status === 429 || error.status >= 500

/** Never sooner than the Hub's `Retry-After`, whatever schedule the caller chose. */
const atLeastRetryAfter: Schedule.Schedule<HubError, HubError> = Schedule.identity<HubError>().pipe(
  Schedule.addDelay((error) => error.retryAfterMs ?? 0)
)

/** Retries what is transient on `schedule`, never sooner than the Hub's `Retry-After`. */
export const retryTransient =
  (schedule: Schedule.Schedule<unknown, HubError>) =>
  <A, R>(effect: Effect.Effect<A, HubError, R>) =>
    Effect.retry(effect, { schedule: Schedule.intersect(schedule, atLeastRetryAfter), while: isTransient })

interface Seen {
  status?: number
  retryAfterMs?: number
}

const parseRetryAfter = (value: string | null): number | undefined => {
  if (value === null) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

export const make = (config: Config) => {
  const hubUrl = config.endpoint.replace(/\/+$/, "")

  /**
   * Runs one SDK call with a `fetch` that carries the fiber's abort signal, identifies the library, and
   * remembers the answer's status and `Retry-After` (the SDK's errors drop them).
   */
  const call = <A>(
    operation: string,
    run: (fetch: typeof globalThis.fetch, accessToken: string) => Promise<A>,
    patchBody?: (body: Record<string, unknown>) => Record<string, unknown>
  ): Effect.Effect<{ readonly value: A; readonly status: number | undefined }, HubError> =>
    Effect.suspend(() => {
      const seen: Seen = {}
      return Effect.tryPromise({
        try: async (signal) => {
          const fetch: typeof globalThis.fetch = async (input, init) => {
            const headers = new Headers(init?.headers)
            headers.set("user-agent", config.userAgent)
            let body = init?.body
            if (patchBody !== undefined && typeof body === "string") {
              body = JSON.stringify(patchBody(JSON.parse(body) as Record<string, unknown>))
            }
            const response = await globalThis.fetch(input, {
              ...init,
              headers,
              body: body ?? null,
              signal,
              redirect: "manual"
            })
            seen.status = response.status
            const retryAfter = parseRetryAfter(response.headers.get("retry-after"))
            if (retryAfter !== undefined) seen.retryAfterMs = retryAfter
            return response
          }
          return { value: await run(fetch, Redacted.value(config.token)), status: seen.status }
        },
        catch: (cause) =>
          new HubError({
            operation,
            status: cause instanceof Hub.HubApiError ? cause.statusCode : seen.status,
            detail: describe(cause),
            retryAfterMs: seen.retryAfterMs,
            tokenSource: config.tokenSource
          })
      })
    })

  const whoami = call("whoami", (fetch, accessToken) => Hub.whoAmI({ accessToken, hubUrl, fetch })).pipe(
    Effect.flatMap(({ value }) => Schema.decodeUnknown(Schema.Struct({ name: Schema.String }))(value)),
    Effect.mapError((e) => (e._tag === "HubError" ? e : new HubError({ operation: "whoami", detail: e.message })))
  )

  const asJob = (operation: string) => (value: unknown) =>
    decodeJob(value).pipe(
      Effect.mapError((e) => new HubError({ operation, detail: `unexpected job shape: ${e.message}` }))
    )

  const createJob = (namespace: string, spec: JobSpec) =>
    call(
      "createJob",
      (fetch, accessToken) =>
        Hub.runJob({
          namespace,
          accessToken,
          hubUrl,
          fetch,
          ...(spec.dockerImage !== undefined ? { dockerImage: spec.dockerImage } : {}),
          ...(spec.spaceId !== undefined ? { spaceId: spec.spaceId } : {}),
          command: [...spec.command],
          arguments: [],
          environment: { ...spec.environment },
          ...(Object.keys(spec.secrets).length > 0 ? { secrets: { ...spec.secrets } } : {}),
          flavor: spec.flavor as Hub.SpaceHardwareFlavor,
          timeoutSeconds: spec.timeoutSeconds,
          labels: { ...spec.labels }
        }),
      // `@huggingface/hub` 2.17 has no `expose` field: it is added to the request body here, and only here.
      spec.expose === undefined ? undefined : (body) => ({ ...body, expose: { ports: [...spec.expose!.ports] } })
    ).pipe(Effect.flatMap(({ value }) => asJob("createJob")(value)))

  const getJob = (namespace: string, jobId: string) =>
    call("getJob", (fetch, accessToken) => Hub.getJob({ namespace, jobId, accessToken, hubUrl, fetch })).pipe(
      Effect.flatMap(({ value }) => asJob("getJob")(value))
    )

  const listJobs = (namespace: string) =>
    call("listJobs", (fetch, accessToken) => Hub.listJobs({ namespace, accessToken, hubUrl, fetch })).pipe(
      Effect.flatMap(({ value }) => Effect.forEach(value as ReadonlyArray<unknown>, asJob("listJobs")))
    )

  /** Any 2xx is success: the Hub may answer with an empty body, which the SDK fails to parse. */
  const cancelJob = (namespace: string, jobId: string) =>
    call("cancelJob", (fetch, accessToken) =>
      Hub.cancelJob({ namespace, jobId, accessToken, hubUrl, fetch }).catch((error: unknown) => {
        if (error instanceof SyntaxError) return undefined
        throw error
      })
    ).pipe(Effect.asVoid)

  /** One pass over the job's log stream: replays from the start, ends when the Hub ends it. */
  const logs = (namespace: string, jobId: string): Stream.Stream<string, HubError> =>
    Stream.unwrapScoped(
      Effect.gen(function* () {
        const controller = new AbortController()
        const fetch: typeof globalThis.fetch = (input, init) => {
          const headers = new Headers(init?.headers)
          headers.set("user-agent", config.userAgent)
          return globalThis.fetch(input, { ...init, headers, signal: controller.signal, redirect: "manual" })
        }
        const iterator = Hub.streamJobLogs({
          namespace,
          jobId,
          accessToken: Redacted.value(config.token),
          hubUrl,
          fetch
        })
        // Abort first: awaiting the generator's `return()` would wait for a `next()` that a silent stream
        // (keep-alive comments only) never settles.
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            controller.abort()
            iterator.return(undefined).catch(() => undefined)
          })
        )
        const toError = (cause: unknown) =>
          new HubError({
            operation: "logs",
            status: cause instanceof Hub.HubApiError ? cause.statusCode : undefined,
            detail: describe(cause),
            tokenSource: config.tokenSource
          })
        return Stream.repeatEffectOption(
          Effect.tryPromise({ try: () => iterator.next(), catch: toError }).pipe(
            Effect.mapError(Option.some),
            Effect.flatMap((step) => (step.done ? Effect.fail(Option.none()) : Effect.succeed(step.value.message)))
          )
        )
      })
    )

  return { whoami, createJob, getJob, listJobs, cancelJob, logs }
}

export type HubClient = ReturnType<typeof make>

/** The Hub's own words, without anything that could carry a credential. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    return cause.message.replace(/hf_[A-Za-z0-9]{6,}/g, "hf_***")
  }
  return String(cause)
}
