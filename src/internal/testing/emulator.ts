/**
 * The Hub emulator: plain Node (node:http, node:child_process) inside, an Effect API outside.
 * See src/Testing.ts for what it emulates and src/internal/testing/cloudflared.ts for the stand-in
 * cloudflared and its control protocol.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Readable } from "node:stream"
import { StringDecoder } from "node:string_decoder"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Testing from "../../Testing.js"
import type * as PublicDns from "../hfJobs/publicDns.js"
import * as ProcessTree from "../processTree.js"
import { CLOUDFLARED_VERSION } from "./cloudflared.js"
import { type DnsServer, EDGE_ADDRESS, startDnsServer, TunnelDns } from "./dns.js"
import { OAuthState } from "./oauth.js"
import { interpreterDir } from "./python.js"
import { Releases } from "./releases.js"

// ---- constants --------------------------------------------------------------------------------

const DEFAULT_TOKEN = "hf_emulator_0123456789abcdef"
const DEFAULT_USER = "alice"
const ORG = "acme"
const PAGE_SIZE = 20
/** The Hub's policy for the `"api"` bucket of a free user (hub-docs rate-limits.md): 1,000 per 5 minutes. */
const HUB_API_POLICY = { quota: 1000, windowSeconds: 300 }
const CANCEL_GRACE_MS = 2000
const DRAIN_MS = 1000
const MAX_BODY_BYTES = 4 * 1024 * 1024
const RATE_LIMITED = "You have exceeded our rate limit. Please retry later."
const TERMINAL = new Set(["COMPLETED", "ERROR", "CANCELED", "DELETED"])

/** hf-jobs-api.md §8. */
const FLAVORS = [
  "cpu-basic",
  "cpu-upgrade",
  "cpu-performance",
  "cpu-xl",
  "t4-small",
  "t4-medium",
  "l4x1",
  "l4x4",
  "l40sx1",
  "l40sx4",
  "l40sx8",
  "a10g-small",
  "a10g-large",
  "a10g-largex2",
  "a10g-largex4",
  "a100-large",
  "a100x4",
  "a100x8",
  "h200",
  "h200x2",
  "h200x4",
  "h200x8",
  "rtx-pro-6000",
  "rtx-pro-6000x2",
  "rtx-pro-6000x4",
  "rtx-pro-6000x8"
]

// biome-ignore format: a word list
const WORDS = [
  "amber", "falcon", "river", "lamp", "oklahoma", "solo", "younger", "truck", "silver", "maple", "harbor", "quiet",
  "orbit", "canyon", "velvet", "pioneer", "meadow", "crystal", "thunder", "garden", "lunar", "violet", "cobalt",
  "summit", "prairie", "copper", "willow", "ember", "glacier", "saddle", "timber", "coral", "dusk", "fabric",
  "gentle", "hazel", "island", "jasper", "kettle", "ladder", "marble", "nectar", "olive", "pepper", "quartz",
  "rocket", "sierra", "tunnel", "umbrella", "vintage", "walnut", "yellow", "zephyr", "anchor", "bridge", "cedar",
  "dolphin", "eagle", "forest", "granite", "horizon", "indigo", "jungle", "kayak"
]

// ---- small helpers ----------------------------------------------------------------------------

/**
 * This machine's PATH without the directories that hold a `cloudflared`: a job's container has only the
 * cloudflared the emulator puts there (`faults.cloudflaredOnPath`), never the test machine's own.
 */
const withoutCloudflared = (PATH: string) =>
  PATH.split(path.delimiter)
    .filter((dir) => dir !== "" && !fs.existsSync(path.join(dir, "cloudflared")))
    .join(path.delimiter)

const hex = (bytes: number) => randomBytes(bytes).toString("hex")
const pick = <A>(items: ReadonlyArray<A>): A => items[randomBytes(2).readUInt16BE(0) % items.length]!
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())
const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
const isStringRecord = (value: unknown): value is Record<string, string> =>
  isPlainObject(value) && Object.values(value).every((v) => typeof v === "string")
const isStringArray = (value: unknown): value is Array<string> =>
  Array.isArray(value) && value.every((v) => typeof v === "string")
const present = (value: unknown) => value !== undefined && value !== null

/** `YYYY-MM-DD HH:MM:SS` in UTC, as in the `===== Job started at … =====` line. */
const startStamp = (date: Date) => date.toISOString().slice(0, 19).replace("T", " ")

const signalNumber = (sig: NodeJS.Signals) => (os.constants.signals as Record<string, number>)[sig] ?? 0

/**
 * A free loopback port for an exposed job port. Ports come from a range below the kernel's ephemeral
 * range (32768+ on Linux), handed out in turn, so a mapped port is never also picked by a `--port 0`
 * server or a cloudflared metrics port between our probe and the job's bind.
 */
const EXPOSED_PORTS = { first: 20000, count: 10000 }
// Each process starts at its own place in the range: test files run side by side (and several suites on
// one machine), and two emulators handing out the same ports in the same order could both find a port
// free before either job has bound it, so that one job's requests would reach the other's server.
let nextExposed = Math.floor(Math.random() * EXPOSED_PORTS.count)
const probe = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })
const freePort = async (): Promise<number> => {
  for (let tries = 0; tries < EXPOSED_PORTS.count; tries++) {
    const port = EXPOSED_PORTS.first + (nextExposed++ % EXPOSED_PORTS.count)
    if (await probe(port)) return port
  }
  throw new Error("no free port for an exposed job port")
}

/**
 * The processes of an emulated container: every process whose initial environment carries this
 * emulator's control URL (and, if given, the job id). This finds what left the job's process group
 * (setsid, start_new_session) and was re-parented, as a container's cgroup would. Linux only; elsewhere
 * the process-group kill is all there is.
 */
const containerMembers = (control: string, jobId?: string): Array<number> => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  const controlVar = `\0HF_EMULATOR_CONTROL=${control}\0`
  const jobVar = jobId === undefined ? undefined : `\0HF_EMULATOR_JOB_ID=${jobId}\0`
  const found: Array<number> = []
  for (const name of entries) {
    const pid = Number(name)
    if (pid === process.pid) continue
    let environ: string
    try {
      environ = `\0${fs.readFileSync(`/proc/${name}/environ`, "latin1")}\0`
    } catch {
      continue
    }
    if (environ.includes(controlVar) && (jobVar === undefined || environ.includes(jobVar))) found.push(pid)
  }
  return found
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "x-emulator-host"
])

const filterHeaders = (headers: http.IncomingHttpHeaders | http.OutgoingHttpHeaders) => {
  const out: http.OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name.toLowerCase())) out[name] = value
  }
  return out
}

/**
 * A quick tunnel's edge holds the body of a GET response until the response ends, then sends it all
 * (cloudflared#1449: SSE over GET arrives in one piece at close, the same stream over POST arrives
 * live; Unsloth measured the same in 2026 and moved its streams to POST). The edge does this whatever
 * the content type (#1449 used `text/event-stream`), so the emulator does too. Whether the edge also
 * holds the status line and headers is not known; they go out at once here. Bodies of other methods
 * stream.
 */
const holdUntilEnd = (answer: http.IncomingMessage, res: http.ServerResponse) => {
  const held: Array<Buffer> = []
  answer.on("data", (chunk: Buffer) => held.push(chunk))
  answer.on("end", () => res.end(Buffer.concat(held)))
}

/**
 * The largest request body a quick tunnel's edge passes on: the Free plan's 100 MB (decimal) upload limit
 * (picoshare#599, Erugo#29, PicPeak#208: uploads over 100 MB through a tunnel get 413).
 */
export const EDGE_MAX_BODY_BYTES = 100_000_000

/** The edge's 413 page, as users of quick tunnels saw it (picoshare#599): nginx-style HTML signed "cloudflare". */
const EDGE_413_PAGE =
  "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n" +
  "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

/**
 * A quick tunnel's edge does not stream a request body to the origin: it takes the whole body first and
 * delivers it as one frame (cloudflared#1385; cloudflared#128 saw a streamed upload stop on the way), and
 * refuses one over {@link EDGE_MAX_BODY_BYTES} with 413. `deliver` gets the complete body; `refuse` is
 * called instead (once) when the body is too large, as soon as that is known (a `Content-Length` over the
 * limit is refused before any byte is read). The rest of a refused body is read and dropped.
 */
const holdRequestBody = (req: http.IncomingMessage, deliver: (body: Buffer) => void, refuse: () => void) => {
  const declared = Number(req.headers["content-length"])
  if (Number.isFinite(declared) && declared > EDGE_MAX_BODY_BYTES) {
    req.resume()
    return refuse()
  }
  const held: Array<Buffer> = []
  let size = 0
  let refused = false
  req.on("data", (chunk: Buffer) => {
    if (refused) return
    size += chunk.length
    if (size > EDGE_MAX_BODY_BYTES) {
      refused = true
      held.length = 0
      return refuse()
    }
    held.push(chunk)
  })
  req.on("end", () => {
    if (!refused) deliver(Buffer.concat(held))
  })
}

const sendJson = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "x-request-id": `Root=1-${hex(4)}-${hex(12)}`,
    ...headers
  })
  res.end(text)
}

const sendError = (res: http.ServerResponse, status: number, error: string, headers: http.OutgoingHttpHeaders = {}) =>
  sendJson(res, status, { error }, headers)

const sendText = (res: http.ServerResponse, status: number, text: string, headers: http.OutgoingHttpHeaders = {}) => {
  if (res.headersSent || res.destroyed) return
  res.writeHead(status, {
    "content-type": "text/plain; charset=UTF-8",
    "content-length": Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

const readBody = (req: http.IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new Error("body too large"))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

// ---- state ------------------------------------------------------------------------------------

interface LogEntry {
  readonly data: string
  readonly timestamp: string
}

interface Job {
  readonly id: string
  readonly seq: number
  readonly namespace: string
  readonly spec: unknown
  readonly createdAt: Date
  startedAt: Date | undefined
  finishedAt: Date | undefined
  stage: string
  message: string | null
  readonly image: { readonly dockerImage: string } | { readonly spaceId: string }
  readonly command: ReadonlyArray<string>
  readonly arguments: ReadonlyArray<string>
  readonly environment: Record<string, string>
  readonly secrets: Record<string, string>
  readonly flavor: string
  readonly labels: Record<string, string>
  readonly timeoutSeconds: number | undefined
  readonly expose: ReadonlyArray<number> | undefined
  readonly ports: ReadonlyMap<number, number>
  readonly env: Record<string, string>
  readonly dir: string
  crash: boolean
  child: ChildProcess | undefined
  pid: number | undefined
  processGone: boolean
  readonly processExited: Promise<void>
  markProcessExited: () => void
  startLine: LogEntry | undefined
  readonly logs: Array<LogEntry>
  readonly flushers: Array<() => void>
  cancelRequests: number
  readonly waiters: Set<() => void>
  readonly timers: Set<NodeJS.Timeout>
}

interface Tunnel {
  readonly id: string
  readonly hostname: string
  readonly jobId: string
  readonly origin: string
  readonly pid: number | undefined
  registeredAt: number | undefined
  warmupMs: number
  closed: boolean
  /** Edge responses in flight through this tunnel: cut when its cloudflared dies. */
  readonly inflight: Set<http.ServerResponse>
}

interface RequestEntry {
  method: string
  path: string
  route: Testing.HubRoute
  status: number
  authorization: string | undefined
  readonly at: number
}

interface Settings {
  readonly token: string
  readonly user: string
  readonly schedulingDelayMs: number
  readonly keepAliveMs: number
  readonly listPageSize: number
  readonly rateLimit: { readonly quota: number; readonly windowMs: number } | undefined
}

/**
 * The headers of the Hub's 429 (IETF draft-ietf-httpapi-ratelimit-headers-09, as hub-docs
 * rate-limits.md shows them): what is left in the window and the seconds until it resets, and the policy.
 * Never `Retry-After`.
 */
const rateLimitHeaders = (resetSeconds: number, policy: { quota: number; windowSeconds: number }) => ({
  ratelimit: `"api";r=0;t=${Math.max(0, Math.ceil(resetSeconds))}`,
  "ratelimit-policy": `"fixed window";"api";q=${policy.quota};w=${policy.windowSeconds}`
})

export const defaultFaults = (): Testing.Faults => ({
  hubErrors: [],
  hubRedirects: [],
  createAnswerDelayMs: 0,
  cutLogStreams: 0,
  schedulingDelay: undefined,
  tunnelCreate429: 0,
  tunnelWarmup530Ms: 0,
  tunnelRegisterDelayMs: 100,
  unknownTunnelHostsDnsFail: true,
  crashBeforeReady: 0,
  cloudflaredOnPath: CLOUDFLARED_VERSION,
  cloudflaredDownloadCorrupt: 0,
  cloudflaredDownloadTruncated: 0,
  freshTunnelDns: { propagationMs: 0, systemMisses: 0, publicMisses: 0 },
  logFirstByteDelayMs: 0,
  silentLogStreams: 0,
  telemetry: undefined
})

// ---- the server -------------------------------------------------------------------------------

class Emulator {
  readonly faults = defaultFaults()
  readonly jobs = new Map<string, Job>()
  readonly requests: Array<RequestEntry> = []
  readonly telemetry: Array<Testing.TelemetryRecord> = []
  readonly tunnels = new Map<string, Tunnel>()
  readonly tunnelsByHost = new Map<string, Tunnel>()
  readonly streams = new Set<http.ServerResponse>()
  readonly agent = new http.Agent({ keepAlive: true })
  readonly userId = hex(12)
  readonly orgId = hex(12)
  readonly createdAt = new Date()
  readonly server: http.Server
  readonly releases: Releases
  readonly dns: TunnelDns
  publicDns: DnsServer | undefined
  readonly jobsDir: string
  url = ""
  readonly oauth: OAuthState
  seq = 0
  /** The fixed window of the rate limiter: when the current one started and how many requests it had. */
  windowStart = Date.now()
  windowCount = 0
  closed = false
  closing: Promise<void> | undefined

  constructor(
    readonly settings: Settings,
    readonly root: string
  ) {
    this.releases = new Releases(() => this.controlUrl, this.faults, root)
    this.dns = new TunnelDns(this.faults)
    this.jobsDir = path.join(root, "jobs")
    this.server = http.createServer({ noDelay: true }, (req, res) => this.handle(req, res))
    this.oauth = new OAuthState(settings.token, () => this.url)
  }

  async start() {
    await fs.promises.mkdir(this.jobsDir, { recursive: true })
    // The public resolvers know a tunnel name once it has propagated; they answer the edge's address.
    this.publicDns = await startDnsServer((name) =>
      name.endsWith(".trycloudflare.com") && this.dns.lookup("public", name) ? EDGE_ADDRESS : undefined
    )
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject)
      this.server.listen(0, "127.0.0.1", () => resolve())
    })
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`
    process.once("exit", this.onProcessExit)
  }

  /** Last resort if the test process exits without releasing the emulator: no job outlives it. */
  private readonly onProcessExit = () => {
    for (const job of this.jobs.values()) this.killTree(job, "SIGKILL")
    for (const pid of containerMembers(this.controlUrl)) ProcessTree.signal(pid, "SIGKILL")
  }

  // ---- dispatch --------------------------------------------------------------------------------

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const virtualHost = req.headers["x-emulator-host"]
    const host = (Array.isArray(virtualHost) ? virtualHost[0] : virtualHost)?.toLowerCase().replace(/:\d+$/, "")
    const run = (): void | Promise<void> => {
      if (host !== undefined && host !== "") {
        if (host.endsWith(".hf.jobs")) return this.proxy(req, res, host)
        if (host.endsWith(".trycloudflare.com")) return this.edge(req, res, host)
        return sendText(res, 421, `the Hub emulator does not serve ${host}\n`)
      }
      const url = new URL(req.url ?? "/", this.url)
      if (url.pathname.startsWith("/__emulator/")) return this.control(req, res, url)
      return this.hub(req, res, url)
    }
    Promise.resolve()
      .then(run)
      .catch((error: unknown) => {
        if (!res.headersSent) sendError(res, 500, `Hub emulator internal error: ${String(error)}`)
        else res.destroy()
      })
  }

  // ---- Hub API ---------------------------------------------------------------------------------

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

  private async hub(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
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
    const entry: RequestEntry = {
      method,
      path: url.pathname + url.search,
      route,
      status: 0,
      authorization,
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

    // The Hub's rate limiter answers first, whatever the route (hf-sandbox's calls share the "api" bucket).
    const limited = this.rateLimited()
    if (limited !== undefined) {
      req.resume()
      return sendError(res, 429, RATE_LIMITED, rateLimitHeaders(limited.resetSeconds, limited.policy))
    }
    if (route === "telemetry") {
      this.telemetry.push({
        path: url.pathname,
        userAgent: req.headers["user-agent"] ?? "",
        authorization
      })
      if (this.faults.telemetry === "reset") {
        req.socket.destroy()
        return
      }
      if (this.faults.telemetry === "hang") {
        this.streams.add(res)
        res.on("close", () => this.streams.delete(res))
        return
      }
      res.writeHead(200, { "content-length": 0 })
      res.end()
      return
    }
    if (route === "unknown") return sendError(res, 404, "Sorry, we can't find the page you are looking for.")
    if (route === "oauth") return this.oauth.token(req, res, await readBody(req))

    // Injected errors come first too: the Hub's rate limiter answers before it looks at the token.
    const matches = (f: { route: string; times: number }) =>
      f.times > 0 && (f.route === route || (f.route === "any" && route !== "hardware"))
    const fault = this.faults.hubErrors.find(matches)
    if (fault !== undefined) {
      fault.times -= 1
      if (fault.status === 429) {
        return sendError(res, 429, RATE_LIMITED, rateLimitHeaders(fault.retryAfterSeconds ?? 0, HUB_API_POLICY))
      }
      return sendError(
        res,
        fault.status,
        http.STATUS_CODES[fault.status] ?? "Injected error",
        fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) }
      )
    }
    const redirect = this.faults.hubRedirects.find(matches)
    if (redirect !== undefined) {
      redirect.times -= 1
      req.resume()
      const location =
        redirect.toOrigin === undefined
          ? url.pathname + url.search
          : new URL(url.pathname + url.search, redirect.toOrigin).href
      res.writeHead(redirect.status ?? 307, { location, "content-length": 0 })
      res.end()
      return
    }

    if (route === "hardware") return sendJson(res, 200, FLAVORS.map(hardware))
    const verdict = this.oauth.verify(authorization)
    if (verdict._tag === "Invalid") return sendError(res, 401, "Invalid credentials in Authorization header")
    if (route === "whoami") return sendJson(res, 200, this.whoami())
    // A Trusted Publisher token writes one repo or reads gated repos (hub-docs trusted-publishers.md): no Jobs.
    if (verdict._tag === "Scoped") {
      return sendError(res, 403, `This token is scoped to ${verdict.resource} and cannot access jobs`)
    }

    const namespace = segments[2]!
    if (namespace !== this.settings.user && namespace !== ORG) {
      return sendError(res, 403, `You don't have access to jobs in namespace '${namespace}'`)
    }
    if (route === "create") return this.create(req, res, namespace)
    if (route === "list") return this.list(res, url, namespace)
    const job = this.jobs.get(segments[3]!)
    if (job === undefined || job.namespace !== namespace) return sendError(res, 404, "Job not found")
    if (route === "inspect") return sendJson(res, 200, this.info(job))
    if (route === "logs") return this.logs(res, url, job)
    // cancel: 200 with an empty body, whatever the stage (what makes @huggingface/hub's cancelJob throw).
    job.cancelRequests += 1
    this.terminate(job, "CANCELED", null)
    res.writeHead(200, { "content-length": 0 })
    res.end()
  }

  /** Counts the request in the limiter's window; the 429's reset time when the quota is used up. */
  private rateLimited(): { resetSeconds: number; policy: { quota: number; windowSeconds: number } } | undefined {
    const limit = this.settings.rateLimit
    if (limit === undefined) return undefined
    const now = Date.now()
    if (now - this.windowStart >= limit.windowMs) {
      // Fixed windows, back to back from the first one: a quiet spell does not shift them.
      this.windowStart += Math.floor((now - this.windowStart) / limit.windowMs) * limit.windowMs
      this.windowCount = 0
    }
    this.windowCount += 1
    if (this.windowCount <= limit.quota) return undefined
    return {
      resetSeconds: (this.windowStart + limit.windowMs - now) / 1000,
      policy: { quota: limit.quota, windowSeconds: Math.ceil(limit.windowMs / 1000) }
    }
  }

  private whoami() {
    const { user } = this.settings
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
      : { id: this.userId, name: this.settings.user, type: "user" }
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
      initiator: { type: "user", id: this.userId, name: this.settings.user }
    }
  }

  // ---- create ------------------------------------------------------------------------------

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
    if (this.closed) return sendError(res, 503, "The Hub emulator is shutting down")

    const id = hex(12)
    const dir = path.join(this.jobsDir, id)
    await fs.promises.mkdir(dir, { recursive: true })
    // Exposed ports share this machine: map each to a free loopback port and rewrite the variables
    // that carry it (see the module docs of Testing).
    const ports = new Map<number, number>()
    const environment = { ...spec.environment }
    for (const port of spec.expose ?? []) {
      const carriers = Object.keys(environment).filter((name) => environment[name] === String(port))
      const local = carriers.length > 0 ? await freePort() : port
      ports.set(port, local)
      for (const name of carriers) environment[name] = String(local)
    }
    const bin = await this.releases.pathDir()
    const python = await interpreterDir()
    const env: Record<string, string> = {
      // The real interpreter before any shim: see ./python.ts.
      PATH: `${bin}:${withoutCloudflared(`${python ?? ""}:${process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"}`)}`,
      HOME: dir,
      // Each container has its own /tmp: what a job writes there goes away with the job.
      TMPDIR: dir,
      LANG: "C.UTF-8",
      HF_EMULATOR_CONTROL: this.controlUrl,
      HF_EMULATOR_JOB_ID: id,
      ...environment,
      ...spec.secrets
    }
    let markProcessExited!: () => void
    const processExited = new Promise<void>((resolve) => {
      markProcessExited = resolve
    })
    const crash = this.faults.crashBeforeReady > 0
    if (crash) this.faults.crashBeforeReady -= 1
    const job: Job = {
      id,
      seq: this.seq++,
      namespace,
      spec: body,
      createdAt: new Date(),
      startedAt: undefined,
      finishedAt: undefined,
      stage: "SCHEDULING",
      message: null,
      image: spec.image,
      command: spec.command,
      arguments: spec.arguments,
      environment: spec.environment,
      secrets: spec.secrets,
      flavor: spec.flavor,
      labels: spec.labels,
      timeoutSeconds: spec.timeoutSeconds,
      expose: spec.expose,
      ports,
      env,
      dir,
      crash,
      child: undefined,
      pid: undefined,
      processGone: false,
      processExited,
      markProcessExited,
      startLine: undefined,
      logs: [],
      flushers: [],
      cancelRequests: 0,
      waiters: new Set(),
      timers: new Set()
    }
    this.jobs.set(id, job)
    const schedulingMs =
      this.faults.schedulingDelay === undefined
        ? this.settings.schedulingDelayMs
        : Duration.toMillis(Duration.decode(this.faults.schedulingDelay))
    this.timer(job, schedulingMs, () => this.run(job))
    if (this.faults.createAnswerDelayMs > 0) await delay(this.faults.createAnswerDelayMs)
    sendJson(res, 200, this.info(job))
  }

  private timer(job: Job, ms: number, f: () => void) {
    const handle = setTimeout(() => {
      job.timers.delete(handle)
      f()
    }, ms)
    job.timers.add(handle)
  }

  private clearTimers(job: Job) {
    for (const handle of job.timers) clearTimeout(handle)
    job.timers.clear()
  }

  private notify(job: Job) {
    for (const waiter of [...job.waiters]) waiter()
  }

  // ---- running a job ----------------------------------------------------------------------

  private run(job: Job) {
    if (job.stage !== "SCHEDULING" || this.closed) return
    const startedAt = new Date()
    job.stage = "RUNNING"
    job.startedAt = startedAt
    job.startLine = { data: `===== Job started at ${startStamp(startedAt)} =====`, timestamp: startedAt.toISOString() }
    const [file, ...args] = [...job.command, ...job.arguments]
    let child: ChildProcess
    try {
      child = spawn(file!, args, {
        cwd: job.dir,
        env: job.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
    } catch (error) {
      this.spawnFailed(job, error)
      return
    }
    job.child = child
    job.pid = child.pid
    let open = 0
    const closed = new Promise<void>((resolve) => {
      const attach = (stream: NodeJS.ReadableStream | null) => {
        if (stream === null) return
        open += 1
        const decoder = new StringDecoder("utf8")
        let buffer = ""
        const flush = () => {
          buffer += decoder.end()
          if (buffer.length > 0) this.appendLog(job, buffer)
          buffer = ""
        }
        job.flushers.push(flush)
        stream.on("data", (chunk: Buffer) => {
          buffer += decoder.write(chunk)
          let newline = buffer.indexOf("\n")
          while (newline >= 0) {
            this.appendLog(job, buffer.slice(0, newline).replace(/\r$/, ""))
            buffer = buffer.slice(newline + 1)
            newline = buffer.indexOf("\n")
          }
        })
        stream.on("close", () => {
          flush()
          open -= 1
          if (open === 0) resolve()
        })
      }
      attach(child.stdout)
      attach(child.stderr)
      if (open === 0) resolve()
    })
    child.once("error", (error) => {
      if (job.pid === undefined) this.spawnFailed(job, error)
    })
    child.once("exit", (code, sig) => {
      if (job.pid === undefined) return
      job.processGone = true
      job.markProcessExited()
      // The container stops with its main process: whatever else ran in it dies too.
      this.killTree(job, "SIGKILL")
      void Promise.race([closed, delay(DRAIN_MS)]).then(() => {
        for (const flush of job.flushers) flush()
        const exitCode = code ?? (sig === null ? 1 : 128 + signalNumber(sig))
        this.finish(job, exitCode)
      })
    })
    if (job.timeoutSeconds !== undefined) {
      this.timer(job, job.timeoutSeconds * 1000, () => this.terminate(job, "CANCELED", "timeout"))
    }
    this.notify(job)
  }

  private spawnFailed(job: Job, error: unknown) {
    if (job.processGone) return
    job.processGone = true
    job.markProcessExited()
    const code = (error as NodeJS.ErrnoException | undefined)?.code
    this.appendLog(
      job,
      code === "ENOENT"
        ? `exec: "${job.command[0]}": executable file not found in $PATH`
        : `exec: "${job.command[0]}": ${String((error as Error | undefined)?.message ?? error)}`
    )
    this.finish(job, code === "ENOENT" ? 127 : 126)
  }

  private appendLog(job: Job, line: string) {
    job.logs.push({ data: line, timestamp: new Date().toISOString() })
    if (job.crash) {
      job.crash = false
      this.killTree(job, "SIGKILL")
    }
    this.notify(job)
  }

  private finish(job: Job, exitCode: number) {
    this.clearTimers(job)
    if (!TERMINAL.has(job.stage)) {
      job.stage = exitCode === 0 ? "COMPLETED" : "ERROR"
      job.message = exitCode === 0 ? null : `Job failed with exit code: ${exitCode}`
    }
    job.finishedAt ??= new Date()
    this.closeTunnels(job.id)
    this.notify(job)
  }

  /** Cancel or timeout: the stage changes at once, the processes get SIGTERM, then SIGKILL. */
  private terminate(job: Job, stage: string, message: string | null) {
    if (TERMINAL.has(job.stage)) return
    this.clearTimers(job)
    job.stage = stage
    job.message = message
    job.finishedAt = new Date()
    this.closeTunnels(job.id)
    this.notify(job)
    if (job.child !== undefined && !job.processGone) {
      this.killTree(job, "SIGTERM")
      const handle = setTimeout(() => this.killTree(job, "SIGKILL"), CANCEL_GRACE_MS)
      void job.processExited.then(() => clearTimeout(handle))
    }
  }

  /** Signals everything in the job's "container": its process group, descendants and escaped members. */
  killTree(job: Job, sig: NodeJS.Signals) {
    const pid = job.pid
    if (pid === undefined) return
    const family = job.processGone ? [] : Effect.runSync(ProcessTree.descendants(pid))
    ProcessTree.signal(-pid, sig)
    if (!job.processGone) ProcessTree.signal(pid, sig)
    for (const member of [...family, ...containerMembers(this.controlUrl, job.id)]) ProcessTree.signal(member, sig)
  }

  get controlUrl() {
    return `${this.url}/__emulator`
  }

  // ---- list ------------------------------------------------------------------------------------

  private list(res: http.ServerResponse, url: URL, namespace: string) {
    const stages = url.searchParams.getAll("stage").map((s) => s.toUpperCase())
    const labels = url.searchParams.getAll("label").map((pair) => {
      const eq = pair.indexOf("=")
      return eq < 0 ? ([pair, undefined] as const) : ([pair.slice(0, eq), pair.slice(eq + 1)] as const)
    })
    const matching = [...this.jobs.values()]
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
    const size = this.settings.listPageSize
    const page = matching.slice(start, start + size)
    const headers: http.OutgoingHttpHeaders = {}
    if (start + size < matching.length) {
      const next = new URL(`${this.url}/api/jobs/${encodeURIComponent(namespace)}`)
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

  // ---- logs ------------------------------------------------------------------------------------

  private async logs(res: http.ServerResponse, url: URL, job: Job) {
    if (this.faults.logFirstByteDelayMs > 0) {
      this.streams.add(res)
      await delay(this.faults.logFirstByteDelayMs)
      this.streams.delete(res)
      if (res.destroyed || this.closed) return
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
    let silent = false
    if (this.faults.silentLogStreams > 0 && job.stage === "RUNNING") {
      this.faults.silentLogStreams -= 1
      silent = true
    }
    let cut = false
    if (!silent && this.faults.cutLogStreams > 0) {
      this.faults.cutLogStreams -= 1
      cut = true
    }
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
    }, this.settings.keepAliveMs)
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

  // ---- exposed-port proxy --------------------------------------------------------------------

  private proxy(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    if (this.oauth.verify(req.headers.authorization)._tag !== "Valid") {
      req.resume()
      return sendError(res, 401, "Invalid credentials in Authorization header")
    }
    const match = /^([0-9a-f]{24})--(\d+)\.hf\.jobs$/.exec(host)
    const job = match === null ? undefined : this.jobs.get(match[1]!)
    const port = match === null ? undefined : Number(match[2])
    if (job === undefined || port === undefined || job.expose?.includes(port) !== true) {
      req.resume()
      return sendError(res, 404, "Not Found")
    }
    if (job.stage !== "RUNNING") {
      req.resume()
      return sendError(res, 503, `Job is not running (stage: ${job.stage})`)
    }
    this.forward(req, res, job.ports.get(port) ?? port, host, {}, () =>
      sendError(res, 502, "Bad Gateway: the job refused the connection")
    )
  }

  // ---- quick-tunnel edge -----------------------------------------------------------------------

  /** Whether the system resolver finds a `*.trycloudflare.com` name now (see `faults.freshTunnelDns`). */
  resolves(host: string) {
    return this.dns.lookup("system", host.toLowerCase())
  }

  private edge(req: http.IncomingMessage, res: http.ServerResponse, host: string) {
    const cfHeaders = { server: "cloudflare", "cf-ray": `${hex(8)}-EMU` }
    const error1033 = () => {
      req.resume()
      sendText(res, 530, "error code: 1033", cfHeaders)
    }
    const tunnel = this.tunnelsByHost.get(host)
    if (tunnel === undefined) {
      if (this.faults.unknownTunnelHostsDnsFail) {
        // A client that could not ask the emulator in-process still gets a transport error.
        req.socket.destroy()
        return
      }
      return error1033()
    }
    if (tunnel.pid !== undefined && !tunnel.closed && !ProcessTree.isAlive(tunnel.pid)) tunnel.closed = true
    if (tunnel.closed || tunnel.registeredAt === undefined) return error1033()
    if (Date.now() < tunnel.registeredAt + tunnel.warmupMs) return error1033()
    let origin: URL
    try {
      origin = new URL(tunnel.origin)
    } catch {
      req.resume()
      return sendText(res, 502, "error code: 502", cfHeaders)
    }
    const port = Number(origin.port || (origin.protocol === "https:" ? 443 : 80))
    tunnel.inflight.add(res)
    res.on("close", () => tunnel.inflight.delete(res))
    this.forward(
      req,
      res,
      port,
      host,
      { "cf-worker": "trycloudflare.com", "cf-connecting-ip": "127.0.0.1", "x-forwarded-proto": "https" },
      () => sendText(res, 502, "error code: 502", cfHeaders),
      cfHeaders,
      req.method === "GET",
      () => sendText(res, 413, EDGE_413_PAGE, { "content-type": "text/html", connection: "close", ...cfHeaders })
    )
  }

  /**
   * Streams the request to 127.0.0.1:port and the response back, chunk by chunk; with `holdBody`, the
   * response's head goes out at once but its body only when it has ended (see {@link holdUntilEnd}). With
   * `refuseLarge` (the quick-tunnel edge), the request body is held until complete and a body over the
   * edge's limit is answered by `refuseLarge` instead of reaching the origin (see {@link holdRequestBody}).
   */
  private forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    port: number,
    host: string,
    extraRequestHeaders: http.OutgoingHttpHeaders,
    onRefused: () => void,
    extraResponseHeaders: http.OutgoingHttpHeaders = {},
    holdBody = false,
    refuseLarge?: () => void,
    held?: Buffer
  ) {
    if (refuseLarge !== undefined && held === undefined) {
      return holdRequestBody(
        req,
        (whole) =>
          this.forward(
            req,
            res,
            port,
            host,
            extraRequestHeaders,
            onRefused,
            extraResponseHeaders,
            holdBody,
            undefined,
            whole
          ),
        refuseLarge
      )
    }
    const body: Readable = held === undefined ? req : Readable.from(held.length === 0 ? [] : [held])
    const bodyHeaders = held === undefined ? {} : { "content-length": String(held.length) }
    const headers = { ...filterHeaders(req.headers), host, ...extraRequestHeaders, ...bodyHeaders }
    const upstream = http.request({
      host: "127.0.0.1",
      port,
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers,
      agent: this.agent
    })
    upstream.on("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, { ...filterHeaders(answer.headers), ...extraResponseHeaders })
      res.flushHeaders()
      // pipe writes every chunk as it arrives (no buffering) and respects back-pressure.
      if (holdBody) holdUntilEnd(answer, res)
      else answer.pipe(res)
      answer.on("error", () => res.destroy())
      answer.on("close", () => {
        if (!answer.complete) res.destroy()
      })
    })
    upstream.on("error", () => {
      if (!res.headersSent) {
        req.resume()
        onRefused()
      } else {
        res.destroy()
      }
    })
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy()
    })
    body.pipe(upstream)
  }

  // ---- control endpoint for the stand-in cloudflared -----------------------------------------

  private async control(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const parts = url.pathname.split("/").filter((s) => s !== "")
    const method = req.method ?? "GET"
    if (this.releases.handle(req, res, parts.slice(1), url.search)) return
    const readJson = async (): Promise<Record<string, unknown>> => {
      try {
        const parsed: unknown = JSON.parse((await readBody(req)).toString("utf8") || "{}")
        return isPlainObject(parsed) ? parsed : {}
      } catch {
        return {}
      }
    }
    if (parts.length === 2 && parts[1] === "actions-id-token") return this.oauth.actionsIdToken(req, res, url)
    // POST /__emulator/tunnels
    if (parts.length === 2 && parts[1] === "tunnels" && method === "POST") {
      const body = await readJson()
      const job = typeof body.jobId === "string" ? this.jobs.get(body.jobId) : undefined
      if (job === undefined || job.stage !== "RUNNING") {
        return sendJson(res, 404, { success: false, errors: [{ code: 1000, message: "unknown or finished job" }] })
      }
      if (this.faults.tunnelCreate429 > 0) {
        this.faults.tunnelCreate429 -= 1
        return sendText(res, 429, "error code: 1015", { server: "cloudflare" })
      }
      let hostname: string
      do {
        hostname = `${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}.trycloudflare.com`
      } while (this.tunnelsByHost.has(hostname))
      const tunnel: Tunnel = {
        id: randomUUID(),
        hostname,
        jobId: job.id,
        origin: typeof body.origin === "string" ? body.origin : "",
        pid: typeof body.pid === "number" ? body.pid : undefined,
        registeredAt: undefined,
        warmupMs: 0,
        closed: false,
        inflight: new Set()
      }
      this.tunnels.set(tunnel.id, tunnel)
      this.tunnelsByHost.set(hostname, tunnel)
      this.dns.created(hostname)
      return sendJson(res, 200, {
        success: true,
        result: {
          id: tunnel.id,
          name: `qt-${hex(6)}`,
          hostname,
          account_tag: hex(16),
          secret: randomBytes(32).toString("base64")
        },
        errors: [],
        messages: [],
        registerDelayMs: this.faults.tunnelRegisterDelayMs
      })
    }
    const tunnel = parts[1] === "tunnels" && parts[2] !== undefined ? this.tunnels.get(parts[2]) : undefined
    // POST /__emulator/tunnels/{id}/connections
    if (parts.length === 4 && parts[3] === "connections" && method === "POST") {
      await readJson()
      const job = tunnel === undefined ? undefined : this.jobs.get(tunnel.jobId)
      if (tunnel === undefined || tunnel.closed || job?.stage !== "RUNNING") {
        return sendJson(res, 404, { error: "unknown tunnel" })
      }
      tunnel.registeredAt = Date.now()
      tunnel.warmupMs = this.faults.tunnelWarmup530Ms
      return sendJson(res, 200, { connIndex: 0, connection: randomUUID(), ip: "198.41.200.13", location: "emu01" })
    }
    // GET /__emulator/tunnels/{id}: the stand-in's watchdog
    if (parts.length === 3 && method === "GET") {
      req.resume()
      if (tunnel === undefined) return sendJson(res, 404, { error: "unknown tunnel" })
      const job = this.jobs.get(tunnel.jobId)
      return sendJson(res, 200, {
        registered: tunnel.registeredAt !== undefined && !tunnel.closed,
        closed: tunnel.closed,
        jobStage: job?.stage ?? null
      })
    }
    // DELETE /__emulator/tunnels/{id}
    if (parts.length === 3 && method === "DELETE") {
      req.resume()
      if (tunnel !== undefined) tunnel.closed = true
      res.writeHead(204)
      res.end()
      return
    }
    req.resume()
    return sendError(res, 404, "unknown emulator control route")
  }

  private closeTunnels(jobId: string) {
    for (const tunnel of this.tunnels.values()) if (tunnel.jobId === jobId) tunnel.closed = true
  }

  // ---- snapshots -------------------------------------------------------------------------------

  record(job: Job): Testing.JobRecord {
    return {
      id: job.id,
      namespace: job.namespace,
      spec: job.spec,
      stage: job.stage,
      message: job.message,
      pid: job.pid,
      cancelRequests: job.cancelRequests,
      logs: job.logs.map((entry) => entry.data),
      environment: { ...job.env },
      secrets: { ...job.secrets },
      workdir: job.dir,
      ports: Object.fromEntries([...job.ports].map(([p, l]) => [String(p), l]))
    }
  }

  killJob(id: string) {
    const job = this.jobs.get(id)
    if (job !== undefined) this.killTree(job, "SIGKILL")
  }

  /** The running job's timeout comes due now, by the same path as its timer (see HubEmulator.expireTimeout). */
  expireTimeout(id: string): boolean {
    const job = this.jobs.get(id)
    if (job === undefined || job.timeoutSeconds === undefined || job.stage !== "RUNNING") return false
    this.terminate(job, "CANCELED", "timeout")
    return true
  }

  /**
   * The job's running cloudflared dies (SIGKILL), as the real one may: the edge forgets its tunnel at once
   * (530 `error code: 1033` on its hostname) and cuts the requests in flight through it. Returns the URLs
   * of the tunnels that died.
   */
  killTunnel(jobId: string): Array<string> {
    const killed: Array<string> = []
    for (const tunnel of this.tunnels.values()) {
      if (tunnel.jobId !== jobId || tunnel.closed) continue
      tunnel.closed = true
      if (tunnel.pid !== undefined) ProcessTree.signal(tunnel.pid, "SIGKILL")
      for (const res of tunnel.inflight) res.destroy()
      tunnel.inflight.clear()
      killed.push(`https://${tunnel.hostname}`)
    }
    return killed
  }

  // ---- release ---------------------------------------------------------------------------------

  close(): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  private async doClose() {
    this.closed = true
    const jobs = [...this.jobs.values()]
    for (const job of jobs) this.clearTimers(job)
    const live = jobs.filter((job) => job.child !== undefined && !job.processGone)
    const strays = () => (this.url === "" ? [] : containerMembers(this.controlUrl))
    for (const job of live) this.killTree(job, "SIGTERM")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGTERM")
    const exited = Promise.all(live.map((job) => job.processExited))
    const allGone = async () => {
      await exited
      while (strays().some(ProcessTree.isAlive)) await delay(25)
    }
    await Promise.race([allGone(), delay(CANCEL_GRACE_MS)])
    for (const job of jobs) this.killTree(job, "SIGKILL")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGKILL")
    await Promise.race([allGone(), delay(1000)])
    for (const res of this.streams) res.destroy()
    this.streams.clear()
    this.agent.destroy()
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await Promise.race([serverClosed, delay(1000)])
    await Promise.race([fs.promises.rm(this.root, { recursive: true, force: true }), delay(5000)]).catch(() => {})
    await this.publicDns?.close()
    process.removeListener("exit", this.onProcessExit)
  }
}

const hardware = (name: string) => ({
  name,
  prettyName: name
    .split("-")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(" "),
  cpu: name.startsWith("cpu") ? "2 vCPU" : "8 vCPU",
  ram: name.startsWith("cpu") ? "16 GB" : "30 GB",
  accelerator: name.startsWith("cpu")
    ? null
    : { type: "gpu", model: name.split("x")[0], quantity: "1", vram: "24 GB", manufacturer: "Nvidia" },
  unitCostMicroUSD: name === "cpu-basic" ? 167 : 1000,
  unitCostUSD: name === "cpu-basic" ? 0.000167 : 0.001,
  unitLabel: "minute"
})

// ---- validation, like the Hub ---------------------------------------------------------------------

interface ValidSpec {
  readonly image: { readonly dockerImage: string } | { readonly spaceId: string }
  readonly command: ReadonlyArray<string>
  readonly arguments: ReadonlyArray<string>
  readonly environment: Record<string, string>
  readonly secrets: Record<string, string>
  readonly labels: Record<string, string>
  readonly flavor: string
  readonly timeoutSeconds: number | undefined
  readonly expose: ReadonlyArray<number> | undefined
}

/** The normalised spec, or what is wrong with it. */
export const validate = (body: unknown): ValidSpec | string => {
  if (!isPlainObject(body)) return "The request body must be a JSON object"
  const hasImage = present(body.dockerImage)
  const hasSpace = present(body.spaceId)
  if (hasImage === hasSpace) return "Exactly one of dockerImage and spaceId must be provided"
  if (hasImage && (typeof body.dockerImage !== "string" || body.dockerImage === "")) {
    return "dockerImage must be a non-empty string"
  }
  if (hasSpace && (typeof body.spaceId !== "string" || !/^[^/\s]+\/[^/\s]+$/.test(body.spaceId))) {
    return "spaceId must be a string of the form owner/space"
  }
  if (!isStringArray(body.command) || body.command.length === 0) {
    return "command must be a non-empty array of strings"
  }
  if (present(body.arguments) && !isStringArray(body.arguments)) return "arguments must be an array of strings"
  for (const key of ["environment", "secrets", "labels"] as const) {
    if (present(body[key]) && !isStringRecord(body[key])) return `${key} must be an object whose values are strings`
  }
  if (present(body.labels)) {
    for (const [key, value] of Object.entries(body.labels as Record<string, string>)) {
      if (!/^[A-Za-z0-9._-]{1,100}$/.test(key) || !/^[A-Za-z0-9._-]{0,100}$/.test(value)) {
        return `Invalid label ${JSON.stringify(key)}: label keys and values must be at most 100 characters of [a-zA-Z0-9._-]`
      }
    }
  }
  const flavor = present(body.flavor) ? body.flavor : "cpu-basic"
  if (typeof flavor !== "string" || !FLAVORS.includes(flavor)) {
    return `flavor must be one of ${FLAVORS.join(", ")} (got ${JSON.stringify(body.flavor)})`
  }
  if (present(body.timeoutSeconds)) {
    const t = body.timeoutSeconds
    if (typeof t !== "number" || !Number.isInteger(t) || t <= 0) return "timeoutSeconds must be a positive integer"
  }
  let expose: Array<number> | undefined
  if (present(body.expose)) {
    const ports = isPlainObject(body.expose) ? body.expose.ports : undefined
    if (
      !Array.isArray(ports) ||
      !ports.every((p): p is number => typeof p === "number" && Number.isInteger(p) && p >= 1 && p <= 65535)
    ) {
      return "expose.ports must be an array of port numbers (integers from 1 to 65535)"
    }
    if (new Set(ports).size !== ports.length) return "expose.ports must not repeat a port"
    expose = ports
  }
  return {
    image: hasImage ? { dockerImage: body.dockerImage as string } : { spaceId: body.spaceId as string },
    command: body.command,
    arguments: present(body.arguments) ? (body.arguments as Array<string>) : [],
    environment: present(body.environment) ? { ...(body.environment as Record<string, string>) } : {},
    secrets: present(body.secrets) ? { ...(body.secrets as Record<string, string>) } : {},
    labels: present(body.labels) ? { ...(body.labels as Record<string, string>) } : {},
    flavor,
    timeoutSeconds: present(body.timeoutSeconds) ? (body.timeoutSeconds as number) : undefined,
    expose
  }
}

// ---- Effect API -------------------------------------------------------------------------------------

const handles = new WeakMap<Testing.HubEmulator, Emulator>()

/** @internal */
export const make = (options: Testing.EmulatorOptions = {}): Effect.Effect<Testing.HubEmulator, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const settings: Settings = {
        token: options.token ?? DEFAULT_TOKEN,
        user: options.user ?? DEFAULT_USER,
        schedulingDelayMs: Duration.toMillis(Duration.decode(options.schedulingDelay ?? "150 millis")),
        keepAliveMs: Math.max(1, Duration.toMillis(Duration.decode(options.keepAliveInterval ?? "1 second"))),
        listPageSize: Math.max(1, Math.floor(options.listPageSize ?? PAGE_SIZE)),
        rateLimit:
          options.rateLimit === undefined
            ? undefined
            : {
                quota: Math.max(0, Math.floor(options.rateLimit.quota)),
                windowMs: Math.max(1, Duration.toMillis(Duration.decode(options.rateLimit.window)))
              }
      }
      const root = await fs.promises.mkdtemp(path.join(os.tmpdir(), "hf-hub-emulator-"))
      const emulator = new Emulator(settings, root)
      Object.assign(emulator.faults, options.faults)
      try {
        await emulator.start()
      } catch (error) {
        await emulator.close()
        throw error
      }
      return emulator
    }),
    (emulator) =>
      Effect.promise(() => emulator.close()).pipe(Effect.interruptible, Effect.timeout("15 seconds"), Effect.ignore)
  ).pipe(
    Effect.map((emulator) => {
      const api: Testing.HubEmulator = {
        url: emulator.url,
        token: Redacted.make(emulator.settings.token),
        user: emulator.settings.user,
        faults: emulator.faults,
        jobs: Effect.sync(() => [...emulator.jobs.values()].map((job) => emulator.record(job))),
        job: (id) =>
          Effect.sync(() => {
            const job = emulator.jobs.get(id)
            return job === undefined ? undefined : emulator.record(job)
          }),
        requests: Effect.sync(() => emulator.requests.map((entry) => ({ ...entry }))),
        killJob: (id) => Effect.sync(() => emulator.killJob(id)),
        expireTimeout: (id) => Effect.sync(() => emulator.expireTimeout(id)),
        killTunnel: (id) => Effect.sync(() => emulator.killTunnel(id)),
        login: (options = {}) =>
          Effect.sync(() => {
            const grant = emulator.oauth.login(
              options.expiresIn === undefined
                ? undefined
                : Math.floor(Duration.toSeconds(Duration.decode(options.expiresIn)))
            )
            return {
              accessToken: Redacted.make(grant.accessToken),
              refreshToken: Redacted.make(grant.refreshToken),
              expiresIn: grant.expiresIn
            }
          }),
        trustPublisher: (resource) =>
          Effect.sync(() => {
            const publisher = emulator.oauth.trust(resource)
            return {
              resource,
              idToken: Redacted.make(publisher.idToken),
              actionsRequestUrl: publisher.actionsRequestUrl,
              actionsRequestToken: Redacted.make(publisher.actionsRequestToken)
            }
          }),
        cloudflaredRelease: (version) => emulator.releases.release(version ?? CLOUDFLARED_VERSION),
        downloads: Effect.sync(() => emulator.releases.records.map((entry) => ({ ...entry }))),
        publicDns: emulator.publicDns!.address,
        dnsLookups: Effect.sync(() => emulator.dns.lookups.map((entry) => ({ ...entry }))),
        telemetry: Effect.sync(() => emulator.telemetry.map((entry) => ({ ...entry })))
      }
      handles.set(api, emulator)
      return api
    })
  )

const isEmulatedHost = (host: string) => host.endsWith(".hf.jobs") || host.endsWith(".trycloudflare.com")

/** @internal */
export const routeHttpClient =
  (emulator: Testing.HubEmulator) =>
  <E, R>(self: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E | HttpClientError.RequestError, R> =>
    HttpClient.transform(
      self,
      (effect, request): Effect.Effect<HttpClientResponse.HttpClientResponse, E | HttpClientError.RequestError, R> => {
        let url: URL
        try {
          url = new URL(request.url)
        } catch {
          return effect
        }
        const host = url.hostname.toLowerCase()
        if (!isEmulatedHost(host)) return effect
        const handle = handles.get(emulator)
        if (host.endsWith(".trycloudflare.com") && handle !== undefined && !handle.resolves(host)) {
          const cause = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
            code: "ENOTFOUND",
            errno: -3008,
            syscall: "getaddrinfo",
            hostname: host
          })
          return Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause }))
        }
        const routed = request.pipe(
          HttpClientRequest.setUrl(`${emulator.url}${url.pathname}${url.search}`),
          HttpClientRequest.setHeader("x-emulator-host", host)
        )
        return self.execute(routed)
      }
    )

/**
 * The public-DNS fallback's connection to `address` for `host`, on the emulated network: the edge's address
 * reaches the emulator's edge (through the caller's client, as `routeHttpClient` would, minus the system
 * resolver); any other address is not an edge, and the fallback keeps its original error.
 * @internal
 */
export const pinnedConnect =
  (emulator: Testing.HubEmulator): PublicDns.Connect =>
  (host, address, client) =>
    Effect.sync(() => {
      if (address !== EDGE_ADDRESS || !host.endsWith(".trycloudflare.com")) return Option.none()
      const pinned = HttpClient.mapRequest(client, (request) => {
        const url = new URL(request.url)
        return request.pipe(
          HttpClientRequest.setUrl(`${emulator.url}${url.pathname}${url.search}`),
          HttpClientRequest.setHeader("x-emulator-host", url.hostname.toLowerCase())
        )
      })
      return Option.some({ client: pinned, close: () => Promise.resolve() })
    })
