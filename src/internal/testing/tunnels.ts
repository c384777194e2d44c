/**
 * The quick tunnels of the Hub emulator's edge: the registry of tunnels the stand-in cloudflared asked for,
 * and the control routes it asks through (see ./cloudflared.ts for the protocol). The edge (./edge.ts)
 * forwards a tunnel's traffic once it is registered.
 */
import { randomBytes, randomUUID } from "node:crypto"
import type * as http from "node:http"
import type * as net from "node:net"
import type * as Testing from "../../Testing.js"
import * as ProcessTree from "../processTree.js"
import type { TunnelDns } from "./dns.js"
import { take } from "./faults.js"
import { readBody, sendError, sendJson, sendText } from "./http.js"
import type { Job } from "./job.js"
import { hex, isPlainObject } from "./util.js"

// biome-ignore format: a word list
const WORDS = [
  "amber", "falcon", "river", "lamp", "oklahoma", "solo", "younger", "truck", "silver", "maple", "harbor", "quiet",
  "orbit", "canyon", "velvet", "pioneer", "meadow", "crystal", "thunder", "garden", "lunar", "violet", "cobalt",
  "summit", "prairie", "copper", "willow", "ember", "glacier", "saddle", "timber", "coral", "dusk", "fabric",
  "gentle", "hazel", "island", "jasper", "kettle", "ladder", "marble", "nectar", "olive", "pepper", "quartz",
  "rocket", "sierra", "tunnel", "umbrella", "vintage", "walnut", "yellow", "zephyr", "anchor", "bridge", "cedar",
  "dolphin", "eagle", "forest", "granite", "horizon", "indigo", "jungle", "kayak"
]

const pick = <A>(items: ReadonlyArray<A>): A => items[randomBytes(2).readUInt16BE(0) % items.length]!

export interface Tunnel {
  readonly id: string
  readonly hostname: string
  readonly jobId: string
  readonly origin: string
  readonly pid: number | undefined
  registeredAt: number | undefined
  warmupMs: number
  closed: boolean
  /** Edge responses and upgraded connections in flight through this tunnel: cut when its cloudflared dies. */
  readonly inflight: Set<http.ServerResponse | net.Socket>
}

export interface TunnelsContext {
  readonly faults: Testing.Faults
  readonly dns: TunnelDns
  readonly jobs: ReadonlyMap<string, Job>
}

export class Tunnels {
  readonly byId = new Map<string, Tunnel>()
  readonly byHost = new Map<string, Tunnel>()

  constructor(readonly ctx: TunnelsContext) {}

  /** The control routes under `/__emulator/tunnels` (`parts` are the path's segments, `__emulator` first). */
  async control(req: http.IncomingMessage, res: http.ServerResponse, parts: ReadonlyArray<string>) {
    const method = req.method ?? "GET"
    const readJson = async (): Promise<Record<string, unknown>> => {
      try {
        const parsed: unknown = JSON.parse((await readBody(req)).toString("utf8") || "{}")
        return isPlainObject(parsed) ? parsed : {}
      } catch {
        return {}
      }
    }
    // POST /__emulator/tunnels
    if (parts.length === 2 && parts[1] === "tunnels" && method === "POST") {
      const body = await readJson()
      const job = typeof body.jobId === "string" ? this.ctx.jobs.get(body.jobId) : undefined
      if (job === undefined || job.stage !== "RUNNING") {
        return sendJson(res, 404, { success: false, errors: [{ code: 1000, message: "unknown or finished job" }] })
      }
      if (take(this.ctx.faults, "tunnelCreate429")) {
        return sendText(res, 429, "error code: 1015", { server: "cloudflare" })
      }
      let hostname: string
      do {
        hostname = `${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}.trycloudflare.com`
      } while (this.byHost.has(hostname))
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
      this.byId.set(tunnel.id, tunnel)
      this.byHost.set(hostname, tunnel)
      this.ctx.dns.created(hostname)
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
        registerDelayMs: this.ctx.faults.tunnelRegisterDelayMs
      })
    }
    const tunnel = parts[1] === "tunnels" && parts[2] !== undefined ? this.byId.get(parts[2]) : undefined
    // POST /__emulator/tunnels/{id}/connections
    if (parts.length === 4 && parts[3] === "connections" && method === "POST") {
      await readJson()
      const job = tunnel === undefined ? undefined : this.ctx.jobs.get(tunnel.jobId)
      if (tunnel === undefined || tunnel.closed || job?.stage !== "RUNNING") {
        return sendJson(res, 404, { error: "unknown tunnel" })
      }
      tunnel.registeredAt = Date.now()
      tunnel.warmupMs = this.ctx.faults.tunnelWarmup530Ms
      return sendJson(res, 200, { connIndex: 0, connection: randomUUID(), ip: "198.41.200.13", location: "emu01" })
    }
    // GET /__emulator/tunnels/{id}: the stand-in's watchdog
    if (parts.length === 3 && method === "GET") {
      req.resume()
      if (tunnel === undefined) return sendJson(res, 404, { error: "unknown tunnel" })
      const job = this.ctx.jobs.get(tunnel.jobId)
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

  /** The job stopped: the edge drops its tunnels. */
  closeFor(jobId: string) {
    for (const tunnel of this.byId.values()) if (tunnel.jobId === jobId) tunnel.closed = true
  }

  /**
   * The job's running cloudflared dies (SIGKILL), as the real one may: the edge forgets its tunnel at once
   * (530 `error code: 1033` on its hostname) and cuts the requests in flight through it. Returns the URLs
   * of the tunnels that died.
   */
  kill(jobId: string): Array<string> {
    const killed: Array<string> = []
    for (const tunnel of this.byId.values()) {
      if (tunnel.jobId !== jobId || tunnel.closed) continue
      tunnel.closed = true
      if (tunnel.pid !== undefined) ProcessTree.signal(tunnel.pid, "SIGKILL")
      for (const res of tunnel.inflight) res.destroy()
      tunnel.inflight.clear()
      killed.push(`https://${tunnel.hostname}`)
    }
    return killed
  }
}
