/**
 * The Hub emulator: plain Node (node:http, node:child_process) inside, an Effect API outside. It is a
 * composition of rooms that share one loopback HTTP server:
 * - ./hubApi.ts, the Hub API: its routes, authentication and namespaces, with the accounts
 *   (./accounts.ts), the create validation (./jobSpec.ts), the list pages (./listing.ts), the SSE log
 *   stream (./logStream.ts) and the rate limit (./rateLimit.ts);
 * - ./jobRunner.ts, the job runner: each job's processes, stages, timeouts and log capture, over a job's
 *   state and views (./job.ts) and its container (./container.ts: PATH, mapped ports, members);
 * - ./edge.ts, the edge: the Jobs proxy and the quick-tunnel edge, which forward to a job's server, with the
 *   tunnels the stand-in cloudflared (./cloudflared.ts) registers (./tunnels.ts);
 * - ./repos.ts, the Hub's repositories (models, datasets, Spaces) and the file routes a sandbox's Hub
 *   transfer uses;
 * - ./faults.ts, the fault knobs; ./router.ts, how clients reach the proxy and the edge.
 * See src/Testing.ts for what it emulates.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Testing from "../../Testing.js"
import { CLOUDFLARED_VERSION } from "./cloudflared.js"
import { type DnsServer, startDnsServer, TunnelDns } from "./dns.js"
import { Edge } from "./edge.js"
import { defaultFaults } from "./faults.js"
import { sendError, sendText } from "./http.js"
import { HubApi } from "./hubApi.js"
import * as Job from "./job.js"
import { JobRunner } from "./jobRunner.js"
import { OAuthState } from "./oauth.js"
import { Releases } from "./releases.js"
import { Repos } from "./repos.js"
import * as Router from "./router.js"
import { fromOptions, type Settings } from "./settings.js"
import { Tunnels } from "./tunnels.js"
import { refuseUpgrade } from "./upgrade.js"
import { delay } from "./util.js"
import * as Volumes from "./volumes.js"

/**
 * The emulator's accept queue: as long as the kernel allows (`net.core.somaxconn` caps it, 4096 by
 * default), not Node's default of 511. The Hub, the Jobs proxy and Cloudflare's edge are fleets that take
 * a client's connections as they come, but the emulator shares one event loop with the client under test:
 * a burst of requests in flight (a 1,000-lease pool: a connection each) is that many connects before the
 * loop can accept one. Over the queue, the kernel dropped the handshakes, and the clients saw `ECONNRESET`
 * some 30 s later on requests the emulator never received.
 */
const LISTEN_BACKLOG = 65535

class Emulator {
  readonly faults = defaultFaults()
  readonly server: http.Server
  readonly releases: Releases
  readonly dns: TunnelDns
  publicDns: DnsServer | undefined
  url = ""
  readonly oauth: OAuthState
  readonly runner: JobRunner
  readonly hub: HubApi
  readonly tunnels: Tunnels
  readonly edge: Edge
  readonly repos: Repos
  closing: Promise<void> | undefined

  constructor(
    readonly settings: Settings,
    readonly root: string
  ) {
    this.releases = new Releases(() => this.controlUrl, this.faults, root)
    this.dns = new TunnelDns(this.faults)
    this.server = http.createServer({ noDelay: true }, (req, res) => this.handle(req, res))
    this.server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
      this.upgrade(req, socket, head)
    )
    this.oauth = new OAuthState(settings.token, () => this.url)
    this.runner = new JobRunner({
      settings,
      faults: this.faults,
      releases: this.releases,
      jobsDir: path.join(root, "jobs"),
      controlUrl: () => (this.url === "" ? undefined : this.controlUrl),
      onStopped: (jobId) => this.tunnels.closeFor(jobId)
    })
    this.hub = new HubApi({
      settings,
      faults: this.faults,
      oauth: this.oauth,
      runner: this.runner,
      url: () => this.url,
      // The create's token is the emulator's user's (a scoped token cannot create jobs).
      volumeSource: (volume) => this.repos.volumeFiles(volume)
    })
    this.tunnels = new Tunnels({ faults: this.faults, dns: this.dns, jobs: this.runner.jobs })
    this.edge = new Edge({
      faults: this.faults,
      oauth: this.oauth,
      dns: this.dns,
      jobs: this.runner.jobs,
      tunnels: this.tunnels
    })
    this.repos = new Repos({ oauth: this.oauth, user: () => settings.user, url: () => this.url })
  }

  async start() {
    await fs.promises.mkdir(this.runner.ctx.jobsDir, { recursive: true })
    // The public resolvers know a tunnel name once it has propagated; they answer the edge's address.
    this.publicDns = await startDnsServer((name) =>
      name.endsWith(".trycloudflare.com") && this.dns.lookup("public", name) ? Router.EDGE_ADDRESS : undefined
    )
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject)
      this.server.listen({ port: 0, host: "127.0.0.1", backlog: LISTEN_BACKLOG }, () => resolve())
    })
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`
    process.once("exit", this.onProcessExit)
  }

  /** Last resort if the test process exits without releasing the emulator: no job outlives it. */
  private readonly onProcessExit = () => this.runner.killAll()

  get controlUrl() {
    return `${this.url}/__emulator`
  }

  /** Each request to its room: the proxy or the edge for a routed host (./router.ts), else the Hub or the control routes. */
  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const host = Router.virtualHost(req.headers)
    const run = (): void | Promise<void> => {
      if (host !== undefined && host !== "") {
        const room = Router.roomOf(host)
        if (room === "proxy") return this.edge.proxy(req, res, host)
        if (room === "edge") return this.edge.quickTunnel(req, res, host)
        return sendText(res, 421, `the Hub emulator does not serve ${host}\n`)
      }
      const url = new URL(req.url ?? "/", this.url)
      if (this.repos.handle(req, res, url)) return
      if (url.pathname.startsWith("/__emulator/")) return this.control(req, res, url)
      return this.hub.handle(req, res, url)
    }
    Promise.resolve()
      .then(run)
      .catch((error: unknown) => {
        if (!res.headersSent) sendError(res, 500, `Hub emulator internal error: ${String(error)}`)
        else res.destroy()
      })
  }

  /** An upgrade (a WebSocket) for the proxy or the edge; nothing else of the emulator takes one. */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer) {
    const host = Router.virtualHost(req.headers) ?? ""
    const room = Router.roomOf(host)
    if (room === "proxy") return this.edge.proxyUpgrade(req, socket, head, host)
    if (room === "edge") return this.edge.quickTunnelUpgrade(req, socket, head, host)
    refuseUpgrade(socket, { _tag: "json", status: 404, error: "the Hub emulator takes no upgrade here" })
  }

  /** The control routes a job's stand-ins call: the release host, the Actions id token, the tunnels. */
  private control(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const parts = url.pathname.split("/").filter((s) => s !== "")
    if (this.releases.handle(req, res, parts.slice(1), url.search)) return
    if (parts.length === 2 && parts[1] === "actions-id-token") return this.oauth.actionsIdToken(req, res, url)
    return this.tunnels.control(req, res, parts)
  }

  close(): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  private async doClose() {
    await this.runner.stop()
    this.hub.dropStreams()
    this.repos.dropHeld()
    this.edge.agent.destroy()
    this.edge.destroyUpgraded()
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await Promise.race([serverClosed, delay(1000)])
    for (const job of this.runner.jobs.values()) await Volumes.unlock(Object.values(job.mounts))
    await Promise.race([fs.promises.rm(this.root, { recursive: true, force: true }), delay(5000)]).catch(() => {})
    await this.publicDns?.close()
    process.removeListener("exit", this.onProcessExit)
  }
}

// ---- Effect API -------------------------------------------------------------------------------------

const handles = new WeakMap<Testing.HubEmulator, Emulator>()

/** @internal */
export const make = (options: Testing.EmulatorOptions = {}): Effect.Effect<Testing.HubEmulator, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const root = await fs.promises.mkdtemp(path.join(os.tmpdir(), "hf-hub-emulator-"))
      const emulator = new Emulator(fromOptions(options), root)
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
      const api = toApi(emulator)
      handles.set(api, emulator)
      return api
    })
  )

/** What a test sees of an emulator: snapshots and knobs, as Effects. */
const toApi = (emulator: Emulator): Testing.HubEmulator => {
  const { runner } = emulator
  return {
    url: emulator.url,
    token: Redacted.make(emulator.settings.token),
    user: emulator.settings.user,
    faults: emulator.faults,
    jobs: Effect.sync(() => [...runner.jobs.values()].map((job) => Job.record(job))),
    job: (id) =>
      Effect.sync(() => {
        const job = runner.jobs.get(id)
        return job === undefined ? undefined : Job.record(job)
      }),
    requests: Effect.sync(() => emulator.hub.requests.map((entry) => ({ ...entry }))),
    killJob: (id) => Effect.sync(() => runner.killJob(id)),
    expireTimeout: (id) => Effect.sync(() => runner.expireTimeout(id)),
    killTunnel: (id) => Effect.sync(() => emulator.tunnels.kill(id)),
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
    telemetry: Effect.sync(() => emulator.hub.telemetry.map((entry) => ({ ...entry }))),
    seedRepo: (seed) => Effect.sync(() => emulator.repos.seed(seed)),
    repoFiles: (repo, options = {}) =>
      Effect.sync(() => emulator.repos.files(repo, options.repoType, options.revision)),
    lfsStorageRequests: Effect.sync(() => emulator.repos.lfs.storageRequests.map((entry) => ({ ...entry })))
  }
}

/** @internal */
export const routeHttpClient = (
  emulator: Testing.HubEmulator
): (<E, R>(
  self: HttpClient.HttpClient.With<E, R>
) => HttpClient.HttpClient.With<E | HttpClientError.RequestError, R>) =>
  Router.routeHttpClient(emulator.url, (host) => handles.get(emulator)?.edge.resolves(host) ?? true)
