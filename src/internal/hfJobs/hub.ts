/**
 * The Hub's Jobs API through `@huggingface/hub`, wrapped in Effect: interruption aborts the request
 * (the package takes no AbortSignal, so the signal travels inside the `fetch` it is given), failures
 * become `HubError`s with the Hub's message and status, and transient ones retry on a Schedule. What
 * the package cannot do (a filtered, paginated listing; a create with `expose`) goes through the
 * platform's `HttpClient` over the same `fetch`, so every Hub request follows the same redirect and
 * rate-limit rules.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Hub from "@huggingface/hub"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Volume } from "../../HfJobs.js"
import type * as Protocol from "../../Protocol.js"
import { HubError } from "../../SandboxError.js"
import { decodeLine as decodeMetricsLine } from "../metrics/sample.js"
import { EFFECT } from "../surfaceTerms.js"

/** What we read of a job. Decoded leniently: the stage is an open string, unknown fields are ignored. */
export const JobInfo = Schema.Struct({
  id: Schema.String,
  status: Schema.Struct({
    stage: Schema.String,
    message: Schema.optional(Schema.NullOr(Schema.String)),
    exposeUrls: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    /** `ssh://<job id>@ssh.hf.jobs` for a job created with `ssh: { enabled: true }`. */
    sshUrl: Schema.optional(Schema.NullOr(Schema.String))
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

/**
 * A flavor of `GET /api/jobs/hardware`, as the Hub sends it (`huggingface_hub`'s `JobHardwareInfo` reads
 * the same fields): its price is per `unitLabel` (a minute), in micro-dollars and dollars.
 */
export const HardwareLine = Schema.Struct({
  name: Schema.String,
  prettyName: Schema.String,
  cpu: Schema.String,
  ram: Schema.String,
  ephemeralStorage: Schema.optional(Schema.NullOr(Schema.String)),
  accelerator: Schema.optional(
    Schema.NullOr(
      Schema.Struct({
        type: Schema.String,
        model: Schema.String,
        quantity: Schema.String,
        vram: Schema.String,
        manufacturer: Schema.String
      })
    )
  ),
  unitCostMicroUSD: Schema.Number,
  unitCostUSD: Schema.Number,
  unitLabel: Schema.String
})
export type HardwareLine = typeof HardwareLine.Type

/** Seconds in each unit the Hub may price and bill by. */
const UNIT_SECONDS: Readonly<Record<string, number>> = { second: 1, minute: 60, hour: 3600 }

/** The length of a catalog line's priced unit (`unitLabel`) in seconds; undefined for a unit not known here. */
export const unitSeconds = (line: HardwareLine): number | undefined => UNIT_SECONDS[line.unitLabel.toLowerCase()]

/** Stages after which a job never runs again. */
const TERMINAL_STAGES: ReadonlySet<string> = new Set(["COMPLETED", "ERROR", "CANCELED", "DELETED"])
export const isTerminal = (stage: string) => TERMINAL_STAGES.has(stage)

/** The create body, as the Hub takes it (`@huggingface/hub`'s `runJob` lacks `expose`). */
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
  /** Hub repos and buckets mounted in the container (`huggingface_hub`'s `Volume.to_dict`). */
  readonly volumes?: ReadonlyArray<Volume> | undefined
  /** `{ enabled: true }`: the container accepts SSH (`ssh://<job id>@ssh.hf.jobs`). */
  readonly ssh?: { readonly enabled: true } | undefined
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

/**
 * Network errors that mean nothing answers at that address: no process listens there (refused), the
 * name does not resolve, or there is no route. Unlike a 503 they do not clear up in seconds.
 */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT"
])

/** The network's reason when `cause` (a fetch failure, through its `cause` chain) says nothing answered. */
const unreachableReason = (cause: unknown): string | undefined => {
  for (let current = cause, depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code
    const errors = (current as { errors?: unknown }).errors
    if (typeof code === "string" && UNREACHABLE_CODES.has(code)) return current.message || code
    // An AggregateError (IPv4 and IPv6 both refused) holds one error per address.
    if (Array.isArray(errors) && errors.length > 0) {
      const inner = unreachableReason(errors[0])
      if (inner !== undefined) return inner
    }
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** How many times an unreachable Hub is asked again: once, in case of a blip, then it is reported. */
const UNREACHABLE_RETRIES = 1

/** Never sooner than the Hub says (its `RateLimit` reset, else `Retry-After`), whatever schedule the caller chose. */
const atLeastRetryAfter: Schedule.Schedule<HubError, HubError> = Schedule.identity<HubError>().pipe(
  Schedule.addDelay((error) => error.retryAfterMs ?? 0)
)

/**
 * Retries what is transient on `schedule`, never sooner than the Hub says. With `maxWait`, an error
 * whose wait is longer (a rate-limit window minutes away) is not waited for but returned at once.
 */
export const retryTransient =
  (schedule: Schedule.Schedule<unknown, HubError>, maxWait?: Duration.Duration) =>
  <A, R>(effect: Effect.Effect<A, HubError, R>) =>
    Effect.suspend(() => {
      // A Hub that nothing answers for is retried briefly, not for the schedule's whole length.
      let unreachable = 0
      return Effect.retry(effect, {
        schedule: Schedule.intersect(schedule, atLeastRetryAfter),
        while: (error) =>
          error.unreachable !== undefined
            ? ++unreachable <= UNREACHABLE_RETRIES
            : isTransient(error) && (maxWait === undefined || (error.retryAfterMs ?? 0) <= Duration.toMillis(maxWait))
      })
    })

/**
 * How one pass over a streamed route (a job's log or metrics) meets an error: what is transient ends the
 * pass quietly, to be reopened by the caller, a 429 no sooner than the Hub says; a rejection
 * (401/403/404) is final.
 */
export const endPassOnTransient = (error: HubError): Stream.Stream<never, HubError> =>
  isTransient(error)
    ? error.retryAfterMs === undefined
      ? Stream.empty
      : Stream.drain(Stream.fromEffect(Effect.sleep(Duration.millis(error.retryAfterMs))))
    : Stream.fail(error)

/**
 * Retries 429s for as long as `schedule` goes on (the caller bounds it), each no sooner than the Hub
 * says: a rate limit is a wait, not a failure.
 */
export const retryRateLimited =
  (schedule: Schedule.Schedule<unknown, HubError>) =>
  <A, R>(effect: Effect.Effect<A, HubError, R>) =>
    Effect.retry(effect, {
      schedule: Schedule.intersect(schedule, atLeastRetryAfter),
      while: (error) => error.status === 429
    })

interface Seen {
  status?: number
  retryAfterMs?: number
}

/** `Retry-After` in seconds or as an HTTP date. */
const parseRetryAfter = (value: string | null): number | undefined => {
  if (value === null || value.trim() === "") return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

/**
 * The wait a 429's `RateLimit` header asks for (IETF draft-ietf-httpapi-ratelimit-headers, as the Hub
 * sends it: `"api";r=0;t=55`): the seconds until the window resets, when nothing remains in it. Parsed
 * as `huggingface_hub`'s `parse_ratelimit_headers` does.
 */
const parseRateLimitReset = (value: string | null): number | undefined => {
  if (value === null) return undefined
  const match = /"(\w+)"\s*;\s*r\s*=\s*(\d+)\s*;\s*t\s*=\s*(\d+)/.exec(value)
  return match !== null && Number(match[2]) === 0 ? Number(match[3]) * 1000 : undefined
}

/** How long the Hub asks a client to wait: its `RateLimit` reset on a 429 first, then `Retry-After`. */
export const waitAsked = (status: number, headers: { get(name: string): string | null }): number | undefined =>
  (status === 429 ? parseRateLimitReset(headers.get("ratelimit")) : undefined) ??
  parseRetryAfter(headers.get("retry-after"))

/** Hosts a Hub API redirect may lead to besides the endpoint's own. */
const REDIRECT_HOSTS: ReadonlySet<string> = new Set(["huggingface.co", "hf.co"])
const MAX_REDIRECTS = 5
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** A Hub redirect that is not followed; its message says why and where it pointed. */
class RedirectRefused extends Error {}

/**
 * Whether a request that carries the token may follow a redirect to `to`: the endpoint's own origin,
 * or the Hub itself over https.
 */
const redirectAllowed = (endpoint: URL, to: URL) =>
  (to.protocol === endpoint.protocol && to.host === endpoint.host) ||
  (to.protocol === "https:" && to.port === "" && REDIRECT_HOSTS.has(to.hostname))

/** The `rel="next"` target of a `Link` header (RFC 8288, as `requests`/`httpx` read it), if any. */
export const nextLink = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  for (const match of header.matchAll(/<([^>]*)>([^<]*)/g)) {
    for (const param of match[2]!.split(";")) {
      const eq = param.indexOf("=")
      if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== "rel") continue
      const rels = param
        .slice(eq + 1)
        .replace(/[",]/g, " ")
        .trim()
        .toLowerCase()
        .split(/\s+/)
      if (rels.includes("next")) return match[1]
    }
  }
  return undefined
}

/** A bound on a listing's pages: a Link chain that never ends (a bug, or a hostile server) must. */
const MAX_PAGES = 500

/** Filters of a job listing, applied by the Hub. */
export interface ListFilter {
  /** Every one of these labels (AND). */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** Any of these stages (OR). Omitted: every stage. */
  readonly stages?: ReadonlyArray<string> | undefined
}

/** The stages of a job that may still run (or is running). */
export const LIVE_STAGES: ReadonlyArray<string> = ["SCHEDULING", "RUNNING"]

/** What every request of one client shares: its configuration and the endpoint, parsed once. */
interface HubContext {
  readonly config: Config
  /** The endpoint without trailing slashes. */
  readonly hubUrl: string
  readonly endpointUrl: URL
}

/**
 * `fetch` for every Hub request: identifies the library, remembers the answer's status and how long
 * the Hub asks to wait (the SDK's errors drop them), and follows redirects itself, only to the
 * endpoint's origin or the Hub, checking each hop's host before the token is sent there.
 */
const hubFetch =
  (ctx: HubContext, seen: Seen): typeof globalThis.fetch =>
  async (input, init) => {
    let url = new URL(input instanceof Request ? input.url : String(input))
    let method = (init?.method ?? "GET").toUpperCase()
    let body = init?.body ?? null
    const headers = new Headers(init?.headers)
    headers.set("user-agent", ctx.config.userAgent)
    for (let hop = 0; ; hop++) {
      delete seen.status
      const response = await globalThis.fetch(url, { ...init, method, headers, body, redirect: "manual" })
      seen.status = response.status
      const wait = waitAsked(response.status, response.headers)
      if (wait === undefined) delete seen.retryAfterMs
      else seen.retryAfterMs = wait
      const location = response.headers.get("location")
      if (!REDIRECT_STATUSES.has(response.status) || location === null) return response
      await response.body?.cancel().catch(() => undefined)
      let target: URL
      try {
        target = new URL(location, url)
      } catch {
        throw new RedirectRefused(`the Hub answered ${url.pathname} with a redirect to an invalid URL`)
      }
      if (!redirectAllowed(ctx.endpointUrl, target)) {
        throw new RedirectRefused(
          `the Hub redirected ${url.pathname} to another host (${target.host}); redirects are followed only ` +
            `to ${ctx.endpointUrl.host}, huggingface.co and hf.co, so the token was not sent there. ` +
            `Check ${EFFECT.endpoint}`
        )
      }
      if (hop >= MAX_REDIRECTS) {
        throw new RedirectRefused(`the Hub redirected ${url.pathname} more than ${MAX_REDIRECTS} times`)
      }
      // As fetch does: a 303, or a 301/302 of a POST, becomes a GET without a body.
      if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === "POST")) {
        method = method === "HEAD" ? "HEAD" : "GET"
        body = null
        headers.delete("content-type")
      }
      url = target
    }
  }

/**
 * Runs one SDK call with a `fetch` that carries the fiber's abort signal (see `hubFetch`).
 */
const call = <A>(
  ctx: HubContext,
  operation: string,
  run: (fetch: typeof globalThis.fetch, accessToken: string) => Promise<A>
): Effect.Effect<{ readonly value: A; readonly status: number | undefined }, HubError> =>
  Effect.suspend(() => {
    const seen: Seen = {}
    return Effect.tryPromise({
      try: async (signal) => {
        const fetch: typeof globalThis.fetch = (input, init) => hubFetch(ctx, seen)(input, { ...init, signal })
        return { value: await run(fetch, Redacted.value(ctx.config.token)), status: seen.status }
      },
      catch: (cause) => failureOf(ctx, operation, seen, cause)
    })
  })

/**
 * A Hub request that failed, as a `HubError`, whichever way it was sent (an SDK call or stream, the
 * HttpClient): an error answer carries its status and the wait the Hub asked for; a refused redirect its
 * 3xx, which no retry would change; a transport failure (a stream cut after a 200 among them) no status,
 * so it is worth another try, and says when nothing answers at the endpoint.
 */
const failureOf = (ctx: HubContext, operation: string, seen: Seen, cause: unknown) =>
  new HubError({
    operation,
    status:
      cause instanceof Hub.HubApiError ? cause.statusCode : cause instanceof RedirectRefused ? seen.status : undefined,
    detail: describe(cause),
    retryAfterMs: cause instanceof Hub.HubApiError ? seen.retryAfterMs : undefined,
    tokenSource: ctx.config.tokenSource,
    ...unreachableOf(ctx, cause)
  })

const unreachableOf = (ctx: HubContext, cause: unknown) => {
  const reason = cause instanceof Hub.HubApiError ? undefined : unreachableReason(cause)
  return reason === undefined ? {} : { unreachable: { endpoint: ctx.hubUrl, cause: reason } }
}

const whoami = (ctx: HubContext) =>
  call(ctx, "whoami", (fetch, accessToken) => Hub.whoAmI({ accessToken, hubUrl: ctx.hubUrl, fetch })).pipe(
    Effect.flatMap(({ value }) => Schema.decodeUnknown(Schema.Struct({ name: Schema.String }))(value)),
    Effect.mapError((e) => (e._tag === "HubError" ? e : new HubError({ operation: "whoami", detail: e.message })))
  )

const asJob = (operation: string) => (value: unknown) =>
  decodeJob(value).pipe(
    Effect.mapError((e) => new HubError({ operation, detail: `unexpected job shape: ${e.message}` }))
  )

/**
 * The create, sent as the Hub takes it: through the HttpClient, because `@huggingface/hub`'s `runJob`
 * has no `expose` (the proxy transport depends on it) and its body is not ours to rewrite.
 */
const createJob = (ctx: HubContext, namespace: string, spec: JobSpec) =>
  send(
    ctx,
    "createJob",
    HttpClientRequest.post(`${ctx.hubUrl}/api/jobs/${encodeURIComponent(namespace)}`).pipe(
      HttpClientRequest.bodyUnsafeJson({
        ...(spec.dockerImage !== undefined ? { dockerImage: spec.dockerImage } : {}),
        ...(spec.spaceId !== undefined ? { spaceId: spec.spaceId } : {}),
        command: [...spec.command],
        arguments: [],
        environment: { ...spec.environment },
        ...(Object.keys(spec.secrets).length > 0 ? { secrets: { ...spec.secrets } } : {}),
        flavor: spec.flavor,
        timeoutSeconds: spec.timeoutSeconds,
        labels: { ...spec.labels },
        ...(spec.expose !== undefined ? { expose: { ports: [...spec.expose.ports] } } : {}),
        ...(spec.volumes !== undefined && spec.volumes.length > 0
          ? { volumes: spec.volumes.map((v) => ({ ...v })) }
          : {}),
        ...(spec.ssh !== undefined ? { ssh: { enabled: true } } : {})
      })
    )
  ).pipe(Effect.flatMap(({ body }) => asJob("createJob")(body)))

const getJob = (ctx: HubContext, namespace: string, jobId: string) =>
  call(ctx, "getJob", (fetch, accessToken) =>
    Hub.getJob({ namespace, jobId, accessToken, hubUrl: ctx.hubUrl, fetch })
  ).pipe(Effect.flatMap(({ value }) => asJob("getJob")(value)))

/**
 * One Hub request through the HttpClient (over `hubFetch`, interruptible): the decoded JSON answer of
 * a 2xx and its headers, else a `HubError` with the Hub's message, status and wait.
 */
const send = (ctx: HubContext, operation: string, request: HttpClientRequest.HttpClientRequest) =>
  Effect.suspend(() => {
    const seen: Seen = {}
    const failure = (detail: string) =>
      new HubError({
        operation,
        status: seen.status,
        detail,
        retryAfterMs: seen.retryAfterMs,
        tokenSource: ctx.config.tokenSource
      })
    return Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(
        request.pipe(HttpClientRequest.bearerToken(Redacted.value(ctx.config.token)))
      )
      if (response.status < 200 || response.status >= 300) {
        const text = yield* Effect.orElseSucceed(response.text, () => "")
        return yield* Effect.fail(failure(hubMessage(text, response.status)))
      }
      const body: unknown = yield* response.json
      return { body, headers: response.headers }
    }).pipe(
      Effect.scoped,
      Effect.catchTags({
        RequestError: (error) => Effect.fail(failureOf(ctx, operation, seen, error.cause ?? error)),
        ResponseError: (error) => Effect.fail(failure(`the answer was cut short or malformed: ${error.message}`))
      }),
      Effect.provide(FetchHttpClient.layer),
      Effect.provideService(FetchHttpClient.Fetch, hubFetch(ctx, seen))
    )
  })

/** One page of a listing: its jobs and the next page's URL (the Hub's `Link: <…>; rel="next"`). */
const listPage = (ctx: HubContext, url: string) =>
  send(ctx, "listJobs", HttpClientRequest.get(url)).pipe(
    Effect.flatMap(({ body, headers }) =>
      Effect.map(Effect.forEach(Array.isArray(body) ? body : [body], asJob("listJobs")), (jobs) => ({
        jobs,
        next: nextLink(headers.link)
      }))
    )
  )

/**
 * The jobs of a namespace that match `filter`, from every page. Each page is retried on `retry`;
 * a next link to another origin, a loop or an endless chain stops the listing with an error, so a
 * listing is complete or fails.
 */
const listJobs = (
  ctx: HubContext,
  namespace: string,
  filter: ListFilter,
  retry: Schedule.Schedule<unknown, HubError>,
  maxPages: number = MAX_PAGES
): Effect.Effect<ReadonlyArray<JobInfo>, HubError> => {
  const first = new URL(`${ctx.hubUrl}/api/jobs/${encodeURIComponent(namespace)}`)
  for (const stage of filter.stages ?? []) first.searchParams.append("stage", stage)
  for (const [key, value] of Object.entries(filter.labels ?? {})) first.searchParams.append("label", `${key}=${value}`)
  const refuse = (detail: string) => new HubError({ operation: "listJobs", status: 200, detail })
  const from = (
    url: string,
    jobs: Array<JobInfo>,
    visited: Set<string>
  ): Effect.Effect<ReadonlyArray<JobInfo>, HubError> =>
    Effect.flatMap(retryTransient(retry)(listPage(ctx, url)), (page) => {
      jobs.push(...page.jobs)
      if (page.next === undefined) return Effect.succeed(jobs)
      let next: URL
      try {
        next = new URL(page.next, url)
      } catch {
        return Effect.fail(refuse(`the next-page link ${JSON.stringify(page.next)} is not a URL`))
      }
      if (next.origin !== ctx.endpointUrl.origin) {
        return Effect.fail(
          refuse(
            `the next-page link points to ${next.host}, not ${ctx.endpointUrl.host}; the token was not sent there ` +
              "and the listing is incomplete"
          )
        )
      }
      if (visited.has(next.href)) return Effect.fail(refuse("the next-page links loop back to a page already read"))
      if (visited.size >= maxPages) {
        return Effect.fail(refuse(`the listing did not end after ${maxPages} pages (${jobs.length} jobs)`))
      }
      visited.add(next.href)
      return from(next.href, jobs, visited)
    })
  return Effect.suspend(() => from(first.href, [], new Set([first.href])))
}

/** Any 2xx is success: the Hub may answer with an empty body, which the SDK fails to parse. */
const cancelJob = (ctx: HubContext, namespace: string, jobId: string) =>
  call(ctx, "cancelJob", (fetch, accessToken) =>
    Hub.cancelJob({ namespace, jobId, accessToken, hubUrl: ctx.hubUrl, fetch }).catch((error: unknown) => {
      if (error instanceof SyntaxError) return undefined
      throw error
    })
  ).pipe(Effect.asVoid)

/**
 * One pass over one of a job's SSE routes through `@huggingface/hub`'s generator (`open`): what it yields,
 * until the Hub ends the stream.
 */
const sse = <A>(
  ctx: HubContext,
  operation: string,
  open: (fetch: typeof globalThis.fetch, accessToken: string) => AsyncGenerator<A, void, unknown>
): Stream.Stream<A, HubError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const controller = new AbortController()
      // What the answer said (status, the Hub's wait): a 429 on the logs route is waited out like any other.
      const seen: Seen = {}
      const fetch: typeof globalThis.fetch = (input, init) =>
        hubFetch(ctx, seen)(input, { ...init, signal: controller.signal })
      const iterator = open(fetch, Redacted.value(ctx.config.token))
      // Abort first: awaiting the generator's `return()` would wait for a `next()` that a silent stream
      // (keep-alive comments only) never settles.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          controller.abort()
          iterator.return(undefined).catch(() => undefined)
        })
      )
      return Stream.repeatEffectOption(
        Effect.tryPromise({
          try: () => iterator.next(),
          catch: (cause) => failureOf(ctx, operation, seen, cause)
        }).pipe(
          Effect.mapError(Option.some),
          Effect.flatMap((step) => (step.done ? Effect.fail(Option.none()) : Effect.succeed(step.value)))
        )
      )
    })
  )

/** One pass over the job's log stream: replays from the start, ends when the Hub ends it. */
const logs = (ctx: HubContext, namespace: string, jobId: string): Stream.Stream<string, HubError> =>
  Stream.map(
    sse(ctx, "logs", (fetch, accessToken) =>
      Hub.streamJobLogs({ namespace, jobId, accessToken, hubUrl: ctx.hubUrl, fetch })
    ),
    (entry) => entry.message
  )

/**
 * One pass over the job's metrics stream (`GET /api/jobs/{ns}/{id}/metrics`): a sample a second while
 * the job runs. The Hub never ends it (it goes silent once the job has ended) and answers a job that
 * has ended with a 500. What is not a sample is skipped.
 */
const metrics = (ctx: HubContext, namespace: string, jobId: string): Stream.Stream<Protocol.MetricsLine, HubError> =>
  sse(ctx, "metrics", (fetch, accessToken) =>
    Hub.streamJobMetrics({ namespace, jobId, accessToken, hubUrl: ctx.hubUrl, fetch })
  ).pipe(Stream.filterMap(decodeMetricsLine))

/** The Jobs hardware catalog (`GET /api/jobs/hardware`), decoded. */
const hardware = (ctx: HubContext) =>
  call(ctx, "hardware", (fetch, accessToken) => Hub.listJobHardware({ accessToken, hubUrl: ctx.hubUrl, fetch })).pipe(
    Effect.flatMap(({ value }) =>
      Effect.mapError(
        Schema.decodeUnknown(Schema.Array(HardwareLine))(value),
        (e) => new HubError({ operation: "hardware", detail: `unexpected hardware shape: ${e.message}` })
      )
    )
  )

/** A client of the Hub's Jobs API with one token. */
export const make = (config: Config) => {
  const hubUrl = config.endpoint.replace(/\/+$/, "")
  const ctx: HubContext = { config, hubUrl, endpointUrl: new URL(hubUrl) }
  return {
    whoami: whoami(ctx),
    createJob: (namespace: string, spec: JobSpec) => createJob(ctx, namespace, spec),
    getJob: (namespace: string, jobId: string) => getJob(ctx, namespace, jobId),
    listJobs: (
      namespace: string,
      filter: ListFilter,
      retry: Schedule.Schedule<unknown, HubError>,
      maxPages: number = MAX_PAGES
    ) => listJobs(ctx, namespace, filter, retry, maxPages),
    cancelJob: (namespace: string, jobId: string) => cancelJob(ctx, namespace, jobId),
    logs: (namespace: string, jobId: string) => logs(ctx, namespace, jobId),
    metrics: (namespace: string, jobId: string) => metrics(ctx, namespace, jobId),
    hardware: hardware(ctx)
  }
}

export type HubClient = ReturnType<typeof make>

/**
 * Whether the job is still alive, for a stream's reconnect schedule: a Hub that does not answer counts
 * as alive (the stream is reopened; a stage that ended stops it).
 */
export const jobAlive = (hub: HubClient, namespace: string, jobId: string): Effect.Effect<boolean> =>
  hub.getJob(namespace, jobId).pipe(
    Effect.map((job) => !isTerminal(job.status.stage)),
    Effect.orElseSucceed(() => true)
  )

/** The Hub's message from an error answer (`{"error": "…"}`), else its status. */
const hubMessage = (text: string, status: number): string => {
  try {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed === "object" && parsed !== null) {
      const message =
        (parsed as { error?: unknown; message?: unknown }).error ?? (parsed as { message?: unknown }).message
      if (typeof message === "string" && message !== "") return describe(new Error(message))
    }
  } catch {
    // not JSON: the status says it
  }
  return `the Hub answered ${status}`
}

/** The Hub's own words, without anything that could carry a credential. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    return cause.message.replace(/hf_[A-Za-z0-9]{6,}/g, "hf_***")
  }
  return String(cause)
}
