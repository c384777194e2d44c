/**
 * The Hub emulator's Hub API: whoami, the Jobs routes (create, list, inspect, logs as SSE, cancel,
 * hardware), telemetry and the OAuth token endpoint, with the Hub's authentication, namespaces, rate limit,
 * pagination and error bodies, and the request log tests read. Jobs themselves run in the job runner.
 */
import type * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { answerInjected, take } from "./faults.js"
import { readBody, sendError, sendJson } from "./http.js"
import { type Job, type JobRunner, type LogEntry, TERMINAL } from "./jobRunner.js"
import { FLAVORS, hardware, validate } from "./jobSpec.js"
import type { OAuthState } from "./oauth.js"
import { FixedWindow, RATE_LIMITED, rateLimitHeaders } from "./rateLimit.js"
import type { Settings } from "./settings.js"
import { delay, hex } from "./util.js"

const ORG = "acme"

export interface RequestEntry {
  method: string
  path: string
  route: Testing.HubRoute
  status: number
  authorization: string | undefined
  readonly at: number
}

export interface HubContext {
  readonly settings: Settings
  readonly faults: Testing.Faults
  readonly oauth: OAuthState
  readonly runner: JobRunner
  /** The emulator's base URL (absolute `Link` headers). */
  readonly url: () => string
}

export class HubApi {
  readonly requests: Array<RequestEntry> = []
  readonly telemetry: Array<Testing.TelemetryRecord> = []
  /** Responses held open (log streams, hung telemetry): cut when the emulator closes. */
  readonly streams = new Set<http.ServerResponse>()
  readonly userId = hex(12)
  readonly orgId = hex(12)
  readonly createdAt = new Date()
  readonly limiter: FixedWindow

  constructor(readonly ctx: HubContext) {
    this.limiter = new FixedWindow(ctx.settings.rateLimit)
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
    this.record(req, res, url, route)

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

    if (route === "hardware") return sendJson(res, 200, FLAVORS.map(hardware))
    const verdict = this.ctx.oauth.verify(authorization)
    if (verdict._tag === "Invalid") return sendError(res, 401, "Invalid credentials in Authorization header")
    if (route === "whoami") return sendJson(res, 200, this.whoami())
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
    if (route === "logs") return this.logs(res, url, job)
    // cancel: 200 with an empty body, whatever the stage (what makes @huggingface/hub's cancelJob throw).
    this.ctx.runner.cancel(job)
    res.writeHead(200, { "content-length": 0 })
    res.end()
  }

  /** Records the request for {@link Testing.HubEmulator.requests}, with the status it is answered with. */
  private record(req: http.IncomingMessage, res: http.ServerResponse, url: URL, route: Testing.HubRoute) {
    const entry: RequestEntry = {
      method: req.method ?? "GET",
      path: url.pathname + url.search,
      route,
      status: 0,
      authorization: req.headers.authorization,
      at: Date.now()
    }
    this.requests.push(entry)
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

  private whoami() {
    const { user } = this.ctx.settings
    return {
      type: "user",
      id: this.userId,
      name: user,
      fullname: `${user.charAt(0).toUpperCase()}${user.slice(1)} Example`,
      email: `${user}@example.com`,
      emailVerified: true,
      canPay: false,
      isPro: false,
      periodEnd: null,
      avatarUrl: `/avatars/${user}.svg`,
      orgs: [
        {
          type: "org",
          name: ORG,
          id: this.orgId,
          fullname: "Acme",
          email: null,
          canPay: false,
          isEnterprise: false,
          roleInOrg: "write",
          avatarUrl: `/avatars/${ORG}.svg`
        }
      ],
      auth: {
        type: "access_token",
        accessToken: { displayName: "emulator", role: "write", createdAt: this.createdAt.toISOString() }
      }
    }
  }

  private owner(namespace: string) {
    return namespace === ORG
      ? { id: this.orgId, name: ORG, type: "org" }
      : { id: this.userId, name: this.ctx.settings.user, type: "user" }
  }

  private info(job: Job) {
    const now = Date.now()
    const end = job.finishedAt?.getTime() ?? now
    const started = job.startedAt?.getTime()
    return {
      id: job.id,
      createdAt: job.createdAt.toISOString(),
      startedAt: job.startedAt?.toISOString() ?? null,
      finishedAt: job.finishedAt?.toISOString() ?? null,
      ...job.image,
      command: job.command,
      arguments: job.arguments,
      environment: job.environment,
      secrets: Object.keys(job.secrets),
      flavor: job.flavor,
      labels: job.labels,
      ...(job.timeoutSeconds === undefined ? {} : { timeoutSeconds: job.timeoutSeconds }),
      status: {
        stage: job.stage,
        message: job.message,
        ...(job.expose === undefined
          ? {}
          : { exposeUrls: job.expose.map((port) => `https://${job.id}--${port}.hf.jobs`) })
      },
      durations: {
        schedulingSecs: Math.round(((started ?? end) - job.createdAt.getTime()) / 1000),
        runningSecs: started === undefined ? 0 : Math.round((end - started) / 1000),
        totalSecs: Math.round((end - job.createdAt.getTime()) / 1000)
      },
      owner: this.owner(job.namespace),
      initiator: { type: "user", id: this.userId, name: this.ctx.settings.user }
    }
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
    const job = await this.ctx.runner.create(spec, body, namespace)
    if (this.ctx.faults.createAnswerDelayMs > 0) await delay(this.ctx.faults.createAnswerDelayMs)
    sendJson(res, 200, this.info(job))
  }

  private list(res: http.ServerResponse, url: URL, namespace: string) {
    const stages = url.searchParams.getAll("stage").map((s) => s.toUpperCase())
    const labels = url.searchParams.getAll("label").map((pair) => {
      const eq = pair.indexOf("=")
      return eq < 0 ? ([pair, undefined] as const) : ([pair.slice(0, eq), pair.slice(eq + 1)] as const)
    })
    const matching = [...this.ctx.runner.jobs.values()]
      .filter((job) => job.namespace === namespace)
      .filter((job) => stages.length === 0 || stages.includes(job.stage))
      .filter((job) =>
        labels.every(([key, value]) => (value === undefined ? key in job.labels : job.labels[key] === value))
      )
      .sort((a, b) => b.seq - a.seq)
    const cursor = url.searchParams.get("cursor")
    let start = 0
    if (cursor !== null) {
      const at = matching.findIndex((job) => job.id === cursor)
      start = at < 0 ? matching.length : at + 1
    }
    const size = this.ctx.settings.listPageSize
    const page = matching.slice(start, start + size)
    const headers: http.OutgoingHttpHeaders = {}
    if (start + size < matching.length) {
      const next = new URL(`${this.ctx.url()}/api/jobs/${encodeURIComponent(namespace)}`)
      for (const [key, value] of url.searchParams) if (key !== "cursor") next.searchParams.append(key, value)
      next.searchParams.set("cursor", page[page.length - 1]!.id)
      headers.link = `<${next.href}>; rel="next"`
    }
    sendJson(
      res,
      200,
      page.map((job) => this.info(job)),
      headers
    )
  }

  private async logs(res: http.ServerResponse, url: URL, job: Job) {
    if (this.ctx.faults.logFirstByteDelayMs > 0) {
      this.streams.add(res)
      await delay(this.ctx.faults.logFirstByteDelayMs)
      this.streams.delete(res)
      if (res.destroyed || this.ctx.runner.closed) return
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
      "x-request-id": `Root=1-${hex(4)}-${hex(12)}`
    })
    // The documented quirk: while the job is scheduled, the stream ends at once.
    if (job.startLine === undefined) {
      res.end()
      return
    }
    const silent = job.stage === "RUNNING" && take(this.ctx.faults, "silentLogStreams")
    const cut = !silent && take(this.ctx.faults, "cutLogStreams")
    const tailParam = url.searchParams.get("tail")
    const tail = tailParam !== null && /^\d+$/.test(tailParam) ? Number(tailParam) : undefined
    let next = tail === undefined ? 0 : Math.max(0, job.logs.length - tail)
    let sent = 0
    let done = false
    const send = (entry: LogEntry) => res.write(`data: ${JSON.stringify(entry)}\n\n`)
    // Like a dropped connection: what was written reaches the client, then the socket dies mid-body.
    const cutNow = () => res.write("", () => res.socket?.destroy())
    const keepAlive = setInterval(() => {
      if (!done) res.write(": keep-alive\n\n")
    }, this.ctx.settings.keepAliveMs)
    const cleanup = () => {
      done = true
      clearInterval(keepAlive)
      job.waiters.delete(pump)
      this.streams.delete(res)
    }
    const pump = () => {
      if (done) return
      while (!silent && next < job.logs.length) {
        send(job.logs[next++]!)
        sent += 1
        if (cut && sent >= 1) {
          cleanup()
          cutNow()
          return
        }
      }
      if (TERMINAL.has(job.stage)) {
        cleanup()
        if (cut) cutNow()
        else res.end()
      }
    }
    this.streams.add(res)
    job.waiters.add(pump)
    res.on("close", cleanup)
    send(job.startLine)
    pump()
  }

  /** Cuts every response held open; the emulator is closing. */
  dropStreams() {
    for (const res of this.streams) res.destroy()
    this.streams.clear()
  }
}
