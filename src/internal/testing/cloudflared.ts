/**
 * Source of the stand-in `cloudflared` the Hub emulator puts first on every job's PATH. It is a plain
 * CommonJS Node script (no dependencies) that prints what the real binary prints for a quick tunnel
 * (see reference/cloudflare-quick-tunnels.md §1–§2), serves the same metrics endpoints, and asks the
 * emulator — over plain loopback HTTP, at `HF_EMULATOR_CONTROL` — for a tunnel instead of asking
 * api.trycloudflare.com. The emulator's edge then forwards `https://<name>.trycloudflare.com` traffic
 * to the `--url` origin.
 *
 * Control protocol (all JSON over HTTP on 127.0.0.1; the base is `HF_EMULATOR_CONTROL`):
 * - `POST {base}/tunnels` `{"jobId","origin","pid"}` → 200 `{"success":true,"result":{"id","name",
 *   "hostname","account_tag","secret"},"registerDelayMs":N}` (the api.trycloudflare.com shape plus the
 *   delay to wait before registering), or the refusal Cloudflare sends: 429 `error code: 1015` (text).
 * - `POST {base}/tunnels/{id}/connections` `{"connectorId"}` → 200 `{"connIndex":0,"connection",
 *   "ip","location"}`: from now on the edge forwards traffic (after the 530 warm-up, if any).
 * - `DELETE {base}/tunnels/{id}` → 204: the edge forgets the connection (530/1033 afterwards).
 * - `GET {base}/tunnels/{id}` → 200 `{"registered","closed","jobStage"}`: polled every second; the
 *   stand-in stops being ready when the edge closed its connection, and exits when its job is no
 *   longer RUNNING or the emulator is unreachable twice in a row.
 */

/** The version the stand-in reports (`cloudflared --version`, the `Version` log line). */
export const CLOUDFLARED_VERSION = "2026.8.2"

/** The script text; `nodePath` becomes the shebang, so the file is directly executable. */
export const cloudflaredScript = (nodePath: string): string => `#!${nodePath}
"use strict"
// Stand-in cloudflared written by the hf-sandbox Hub emulator. See src/internal/testing/cloudflared.ts.
const http = require("node:http")
const crypto = require("node:crypto")

const VERSION = ${JSON.stringify(CLOUDFLARED_VERSION)}
const EDGE_IP = "198.41.200.13"
const LOCATION = "emu01"

const stamp = () => new Date().toISOString().replace(/\\.\\d{3}Z$/, "Z")
const log = (level, message) => process.stderr.write(stamp() + " " + level + " " + message + "\\n")
const inf = (message) => log("INF", message)
const err = (message) => log("ERR", message)
const fatal = (message) => {
  process.stderr.write(message + "\\n")
  process.exit(1)
}

// ---- command line ---------------------------------------------------------------------------
const VALUE_FLAGS = new Set([
  "url", "metrics", "protocol", "loglevel", "transport-loglevel", "edge-ip-version", "grace-period",
  "logfile", "log-directory", "output", "autoupdate-freq", "region", "http-host-header",
  "origin-server-name", "config", "pidfile", "ha-connections", "retries", "hostname", "name",
  "origincert", "edge-bind-address", "management-diagnostics", "label"
])
const flags = {}
const positional = []
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]
  if (arg.startsWith("-") && arg.length > 1) {
    const body = arg.replace(/^--?/, "")
    const eq = body.indexOf("=")
    if (eq >= 0) flags[body.slice(0, eq)] = body.slice(eq + 1)
    else if (VALUE_FLAGS.has(body) && i + 1 < argv.length) flags[body] = argv[++i]
    else flags[body] = "true"
  } else {
    positional.push(arg)
  }
}

if (flags.version !== undefined || flags.v !== undefined || positional[0] === "version") {
  process.stdout.write("cloudflared version " + VERSION + " (built 2026-08-20-1200 UTC)\\n")
  process.exit(0)
}
if (positional.length > 0 && positional[0] !== "tunnel") {
  fatal("cloudflared (Hub emulator stand-in): unsupported command " + JSON.stringify(positional[0]) + "; only quick tunnels are emulated (cloudflared tunnel --url http://127.0.0.1:PORT)")
}
if (positional.length > 1) {
  fatal("cloudflared (Hub emulator stand-in): named tunnels are not emulated (" + positional.slice(1).join(" ") + "); use a quick tunnel: cloudflared tunnel --url http://127.0.0.1:PORT")
}
const origin = flags.url || process.env.TUNNEL_URL
if (!origin) {
  fatal("cloudflared (Hub emulator stand-in): --url is required; only quick tunnels are emulated (cloudflared tunnel --url http://127.0.0.1:PORT)")
}
const metricsFlag = flags.metrics || process.env.TUNNEL_METRICS || "127.0.0.1:0"
const protocol = flags.protocol || process.env.TUNNEL_TRANSPORT_PROTOCOL || "quic"
const control = process.env.HF_EMULATOR_CONTROL
const jobId = process.env.HF_EMULATOR_JOB_ID

// ---- loopback HTTP to the emulator's control endpoint ---------------------------------------
const call = (method, path, body, timeoutMs) =>
  new Promise((resolve, reject) => {
    const url = new URL(control + path)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path: url.pathname + url.search,
        agent: false,
        headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {}
      },
      (res) => {
        const chunks = []
        res.on("data", (c) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode, statusText: res.statusMessage, body: Buffer.concat(chunks).toString("utf8") }))
        res.on("error", reject)
      }
    )
    req.setTimeout(timeoutMs, () => req.destroy(new Error("Client.Timeout exceeded while awaiting headers")))
    req.on("error", reject)
    req.end(payload)
  })

/** Go's encoding/json message for a body that is not JSON. */
const goJsonError = (text) => {
  const first = text.trimStart()[0]
  return first === undefined ? "unexpected end of JSON input" : "invalid character '" + first + "' looking for beginning of value"
}

const DISCLAIMER =
  "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. " +
  "However, be aware that these account-less Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services " +
  "Terms of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right to investigate your use of " +
  "Tunnels for violations of such terms. If you intend to use Tunnels in production you should use a pre-created named tunnel " +
  "by following: https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/ " +
  "(quick Tunnels are requested from https://api.trycloudflare.com)"

let tunnel
let ready = false
let stopping = false
const connectorId = crypto.randomUUID()

const unregister = async () => {
  if (tunnel === undefined) return
  try {
    await call("DELETE", "/tunnels/" + encodeURIComponent(tunnel.id), undefined, 1000)
  } catch {}
}

const shutdown = (signal) => {
  if (stopping) process.exit(0)
  stopping = true
  inf("Initiating graceful shutdown due to signal " + (signal === "SIGTERM" ? "terminated" : "interrupt") + " ...")
  ready = false
  unregister().finally(() => {
    inf("Tunnel server stopped")
    process.exit(0)
  })
}
process.on("SIGTERM", () => shutdown("SIGTERM"))
process.on("SIGINT", () => shutdown("SIGINT"))

const metricsServer = (hostname) =>
  http.createServer((req, res) => {
    const path = (req.url || "/").split("?")[0]
    const json = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" })
      res.end(JSON.stringify(value))
    }
    if (path === "/quicktunnel") return json(200, { hostname })
    if (path === "/ready") {
      return ready
        ? json(200, { status: 200, readyConnections: 1, connectorId })
        : json(503, { status: 503, readyConnections: 0, connectorId })
    }
    if (path === "/healthcheck") {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" })
      return res.end("OK\\n")
    }
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
      return res.end(
        "# HELP cloudflared_tunnel_ha_connections Number of active ha connections\\n" +
          "# TYPE cloudflared_tunnel_ha_connections gauge\\n" +
          "cloudflared_tunnel_ha_connections " + (ready ? 1 : 0) + "\\n" +
          "# HELP cloudflared_tunnel_user_hostnames_counts Which user hostnames cloudflared is serving\\n" +
          "# TYPE cloudflared_tunnel_user_hostnames_counts counter\\n" +
          'cloudflared_tunnel_user_hostnames_counts{userHostname="https://' + hostname + '"} 1\\n' +
          'build_info{goversion="go1.24.6",revision="emulator",type="",version="' + VERSION + '"} 1\\n'
      )
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" })
    res.end("404 page not found\\n")
  })

const register = async (attempt) => {
  if (stopping) return
  try {
    const reply = await call("POST", "/tunnels/" + encodeURIComponent(tunnel.id) + "/connections", { connectorId, origin }, 5000)
    if (reply.status !== 200) throw new Error("edge refused the connection (" + reply.status + " " + reply.body.trim() + ")")
    const conn = JSON.parse(reply.body)
    ready = true
    inf(
      "Registered tunnel connection connIndex=0 connection=" + conn.connection + " event=0 ip=" + EDGE_IP +
        " location=" + LOCATION + " protocol=" + protocol
    )
  } catch (error) {
    err("Unable to establish connection with Cloudflare edge error=" + JSON.stringify(String(error && error.message)) + " connIndex=0 event=0 ip=" + EDGE_IP)
    if (attempt >= 5) {
      fatal("failed to register tunnel connection: " + (error && error.message))
    }
    setTimeout(() => register(attempt + 1), 500)
  }
}

const main = async () => {
  inf(DISCLAIMER)
  inf("Requesting new quick Tunnel on trycloudflare.com...")
  if (!control) {
    fatal(
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": HF_EMULATOR_CONTROL is not set ' +
        "(this is the Hub emulator's stand-in cloudflared; it only works inside an emulated job)"
    )
  }
  let reply
  try {
    reply = await call("POST", "/tunnels", { jobId, origin, pid: process.pid }, 15000)
  } catch (error) {
    fatal(
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": ' + (error && error.message) +
        " (the Hub emulator's control endpoint " + control + " is unreachable)"
    )
  }
  let data
  try {
    data = JSON.parse(reply.body)
  } catch {
    log(
      "ERR",
      "Error unmarshaling QuickTunnel response: " + reply.body.trim() + ' error="' + goJsonError(reply.body) +
        '" status_code="' + reply.status + " " + reply.statusText + '"'
    )
    fatal("failed to unmarshal quick Tunnel: " + goJsonError(reply.body))
  }
  if (!data.success || !data.result || !data.result.hostname) {
    fatal("failed to get quick Tunnel: " + JSON.stringify(data.errors || data))
  }
  tunnel = data.result
  const hostname = tunnel.hostname
  const url = "https://" + hostname
  const rows = ["Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):", url]
  const width = Math.max(...rows.map((row) => row.length))
  const border = "+" + "-".repeat(width + 4) + "+"
  inf(border)
  for (const row of rows) inf("|  " + row.padEnd(width) + "  |")
  inf(border)

  inf("Version " + VERSION + " (Checksum " + crypto.createHash("sha256").update(VERSION).digest("hex") + ")")
  inf("GOOS: linux, GOVersion: go1.24.6, GoArch: " + (process.arch === "arm64" ? "arm64" : "amd64"))
  const settings = Object.keys(flags).sort().map((k) => k + ":" + flags[k]).join(" ")
  inf("Settings: map[ha-connections:1 " + settings + "]")
  inf("Generated Connector ID: " + connectorId)
  inf("Initial protocol " + protocol)

  const sep = metricsFlag.lastIndexOf(":")
  const metricsHost = sep >= 0 ? metricsFlag.slice(0, sep) || "127.0.0.1" : "127.0.0.1"
  const metricsPort = Number(sep >= 0 ? metricsFlag.slice(sep + 1) : metricsFlag)
  const server = metricsServer(hostname)
  await new Promise((resolve) => {
    server.once("error", (error) => {
      err("failed to bind metrics server error=" + JSON.stringify(error.message))
      unregister().finally(() => fatal("failed to start the metrics server on " + metricsFlag + ": " + error.message))
    })
    server.listen(metricsPort, metricsHost === "localhost" ? "127.0.0.1" : metricsHost, resolve)
  })
  const bound = server.address()
  inf("Starting metrics server on " + metricsHost + ":" + bound.port + "/metrics")
  setTimeout(() => register(1), Math.max(0, Number(data.registerDelayMs) || 0))
  watch()
}

// The emulator is this stand-in's edge and its container: when the edge drops the connection the
// tunnel stops being ready, and when the job or the emulator is gone the stand-in exits, so that it
// never outlives the test that started it.
const watch = () => {
  let misses = 0
  const check = async () => {
    if (stopping) return
    try {
      const reply = await call("GET", "/tunnels/" + encodeURIComponent(tunnel.id), undefined, 1000)
      if (reply.status !== 200) throw new Error("the edge no longer knows this tunnel (" + reply.status + ")")
      misses = 0
      const state = JSON.parse(reply.body)
      if (state.jobStage !== "RUNNING") process.exit(0)
      if (state.closed && ready) {
        ready = false
        err('Connection terminated error="the edge closed the connection" connIndex=0')
      }
    } catch (error) {
      misses += 1
      if (misses >= 2) {
        err("Connection terminated error=" + JSON.stringify(String(error && error.message)) + " connIndex=0")
        fatal("cloudflared (Hub emulator stand-in): the Hub emulator at " + control + " is gone; exiting")
      }
    }
    setTimeout(check, 1000)
  }
  setTimeout(check, 1000)
}

main().catch((error) => fatal("cloudflared (Hub emulator stand-in) crashed: " + (error && error.stack)))
`
