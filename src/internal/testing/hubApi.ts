/**
 * The Hub emulator's Hub API: whoami, the Jobs routes (create, list, inspect, logs and metrics as SSE,
 * cancel, hardware), telemetry and the OAuth token endpoint, with the Hub's authentication, namespaces, rate limit,
 * pagination and error bodies, and the request log tests read. Jobs themselves run in the job runner.
 */
import type * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { type Accounts, makeAccounts, ORG, whoami } from "./accounts.js"
import { answerInjected } from "./faults.js"
import { catalog } from "./hardware.js"
import { readBody, sendError, sendJson } from "./http.js"
import * as Job from "./job.js"
import type { JobRunner } from "./jobRunner.js"
import { validate } from "./jobSpec.js"
import { listPage } from "./listing.js"
import { type LogStreamContext, streamLogs } from "./logStream.js"
import { type MetricStreamContext, streamMetrics } from "./metricStream.js"
import type { OAuthState } from "./oauth.js"
import { FixedWindow, RATE_LIMITED, rateLimitHeaders } from "./rateLimit.js"
import type { Settings } from "./settings.js"
import { delay } from "./util.js"
import * as Volumes from "./volumes.js"

export interface RequestEntry {
  method: string
  path: string
  route: Testing.HubRoute
  status: number
  authorization: string | undefined
  readonly at: number
}

/** Records the request for {@link Testing.HubEmulator.requests}, with the status it is answered with. */
const record = (
  requests: Array<RequestEntry>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  route: Testing.HubRoute
) => {
  const entry: RequestEntry = {
    method: req.method ?? "GET",
    path: url.pathname + url.search,
    route,
    status: 0,
    authorization: req.headers.authorization,
    at: Date.now()
  }
  requests.push(entry)
  res.on("close", () => {
    if (entry.status === 0) entry.status = res.headersSent ? res.statusCode : 0
  })
  const origWriteHead = res.writeHead.bind(res) as (...args: Array<unknown>) => http.ServerResponse
  ;(res as unknown as { writeHead: (...args: Array<unknown>) => http.ServerResponse }).writeHead = (
    ...args: Array<unknown>
  ) => {
    entry.status = args[0] as number
    return origWriteHead(...args)
  }
}

export interface HubContext {
  readonly settings: Settings
  readonly faults: Testing.Faults
  readonly oauth: OAuthState
  readonly runner: JobRunner
  /** The emulator's base URL (absolute `Link` headers). */
  readonly url: () => string
  /** The files a repo volume mounts, or the Hub's refusal (the repo store's `volumeFiles`). */
  readonly volumeSource: Volumes.VolumeSource
}

export class HubApi {
  readonly requests: Array<RequestEntry> = []
  readonly telemetry: Array<Testing.TelemetryRecord> = []
  /** Responses held open (log streams, hung telemetry): cut when the emulator closes. */
  readonly streams = new Set<http.ServerResponse>()
  readonly accounts: Accounts
  readonly limiter: FixedWindow
  private readonly logStreams: LogStreamContext
  private readonly metricStreams: MetricStreamContext

  constructor(readonly ctx: HubContext) {
    this.accounts = makeAccounts(ctx.settings.user)
    this.limiter = new FixedWindow(ctx.settings.rateLimit)
    this.logStreams = {
      faults: ctx.faults,
      keepAliveMs: ctx.settings.keepAliveMs,
      streams: this.streams,
      closed: () => ctx.runner.closed
    }
    this.metricStreams = {
      keepAliveMs: ctx.settings.keepAliveMs,
      intervalMs: ctx.settings.metricsIntervalMs,
      streams: this.streams
    }
  }

  private classify(method: string, segments: ReadonlyArray<string>): Testing.HubRoute {
    const [api, first, ns, id, action, ...rest] = segments
    if (api === "oauth" && first === "token" && segments.length === 2) return "oauth"
    if (api !== "api") return "unknown"
    if (first === "telemetry" && segments.length > 2 && (method === "HEAD" || method === "GET")) return "telemetry"
    if (first === "whoami-v2" && segments.length === 2 && method === "GET") return "whoami"
    if (first !== "jobs" || ns === undefined || rest.length > 0) return "unknown"
    if (ns === "hardware" && id === undefined) return method === "GET" ? "hardware" : "unknown"
    if (id === undefined) return method === "POST" ? "create" : method === "GET" ? "list" : "unknown"
    if (action === undefined) return method === "GET" ? "inspect" : "unknown"
    if (action === "logs") return method === "GET" ? "logs" : "unknown"
    if (action === "metrics") return method === "GET" ? "metrics" : "unknown"
    if (action === "cancel") return method === "POST" ? "cancel" : "unknown"
    return "unknown"
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const method = req.method ?? "GET"
    let segments: Array<string>
    try {
      segments = url.pathname
        .split("/")
        .filter((s) => s !== "")
        .map(decodeURIComponent)
    } catch {
      segments = []
    }
    const route = this.classify(method, segments)
    const authorization = req.headers.authorization
    record(this.requests, req, res, url, route)

    // The Hub's rate limiter answers first, whatever the route (hf-sandbox's calls share the "api" bucket).
    const limited = this.limiter.take()
    if (limited !== undefined) {
      req.resume()
      return sendError(res, 429, RATE_LIMITED, rateLimitHeaders(limited.resetSeconds, limited.policy))
    }
    if (route === "telemetry") return this.ping(req, res, url)
    if (route === "unknown") return sendError(res, 404, "Sorry, we can't find the page you are looking for.")
    if (route === "oauth") return this.ctx.oauth.token(req, res, await readBody(req))

    // Injected errors come first too: the Hub's rate limiter answers before it looks at the token.
    if (answerInjected(this.ctx.faults, route, req, res, url)) return

    if (route === "hardware") return sendJson(res, 200, catalog())
    const verdict = this.ctx.oauth.verify(authorization)
    if (verdict._tag === "Invalid") return sendError(res, 401, "Invalid credentials in Authorization header")
    if (route === "whoami") return sendJson(res, 200, whoami(this.accounts))
    // A Trusted Publisher token writes one repo or reads gated repos (hub-docs trusted-publishers.md): no Jobs.
    if (verdict._tag === "Scoped") {
      return sendError(res, 403, `This token is scoped to ${verdict.resource} and cannot access jobs`)
    }

    const namespace = segments[2]!
    if (namespace !== this.ctx.settings.user && namespace !== ORG) {
      return sendError(res, 403, `You don't have access to jobs in namespace '${namespace}'`)
    }
    if (route === "create") return this.create(req, res, namespace)
    if (route === "list") return this.list(res, url, namespace)
    const job = this.ctx.runner.jobs.get(segments[3]!)
    if (job === undefined || job.namespace !== namespace) return sendError(res, 404, "Job not found")
    if (route === "inspect") return sendJson(res, 200, this.info(job))
    if (route === "logs") return streamLogs(this.logStreams, res, url, job)
    if (route === "metrics") return streamMetrics(this.metricStreams, res, job)
    // cancel: 200 with an empty body, whatever the stage (what makes @huggingface/hub's cancelJob throw).
    this.ctx.runner.cancel(job)
    res.writeHead(200, { "content-length": 0 })
    res.end()
  }

  /** A telemetry ping: recorded, then answered as `faults.telemetry` says. */
  private ping(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    this.telemetry.push({
      path: url.pathname,
      userAgent: req.headers["user-agent"] ?? "",
      authorization: req.headers.authorization
    })
    if (this.ctx.faults.telemetry === "reset") {
      req.socket.destroy()
      return
    }
    if (this.ctx.faults.telemetry === "hang") {
      this.streams.add(res)
      res.on("close", () => this.streams.delete(res))
      return
    }
    res.writeHead(200, { "content-length": 0 })
    res.end()
  }

  private info(job: Job.Job) {
    return Job.info(job, this.accounts)
  }

  private async create(req: http.IncomingMessage, res: http.ServerResponse, namespace: string) {
    let body: unknown
    try {
      const raw = await readBody(req)
      body = JSON.parse(raw.toString("utf8"))
    } catch {
      return sendError(res, 400, "Invalid JSON body")
    }
    const spec = validate(body)
    if (typeof spec === "string") return sendError(res, 400, spec)
    if (this.ctx.runner.closed) return sendError(res, 503, "The Hub emulator is shutting down")
    // The Hub authorises volume mounts with the creator's identity when the job is created (hub-docs jobs-manage.md).
    const files = Volumes.contents(spec.volumes, this.ctx.volumeSource)
    if ("status" in files) return sendError(res, files.status, files.message, { "x-error-code": files.code })
    const job = await this.ctx.runner.create(spec, body, namespace, files)
    if (this.ctx.faults.createAnswerDelayMs > 0) await delay(this.ctx.faults.createAnswerDelayMs)
    sendJson(res, 200, this.info(job))
  }

  private list(res: http.ServerResponse, url: URL, namespace: string) {
    const { page, headers } = listPage(this.ctx.runner.jobs.values(), url, namespace, {
      pageSize: this.ctx.settings.listPageSize,
      base: this.ctx.url()
    })
    sendJson(
      res,
      200,
      page.map((job) => this.info(job)),
      headers
    )
  }

  /** Cuts every response held open; the emulator is closing. */
  dropStreams() {
    for (const res of this.streams) res.destroy()
    this.streams.clear()
  }
}
