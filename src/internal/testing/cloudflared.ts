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

/** The first release that knows `--no-prechecks` (TUN-10387, cloudflared RELEASE_NOTES). */
export const NO_PRECHECKS_SINCE = "2026.5.0"

// The script is one CommonJS file composed of the sections below, in this order; each section may use
// what the sections before it define.

/** The shebang, the release it impersonates, and the log helpers every other section uses. */
const header = (nodePath: string, version: string) => `#!${nodePath}
"use strict"
// Stand-in cloudflared written by the hf-sandbox Hub emulator. See src/internal/testing/cloudflared.ts.
const http = require("node:http")
const crypto = require("node:crypto")

const VERSION = ${JSON.stringify(version)}
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

`

/** The command line, parsed as the real binary parses it: `--version`, `tunnel`, the flags and their errors. */
const commandLine = `// ---- command line ----------------------------------------------------------------------------
// Parsed as urfave/cli v2 parses the real one's (Go's flag package underneath): flags before the
// command are the app's, flags after \`tunnel\` are that command's, parsing stops at the first
// argument that is not a flag. An unknown flag is not fatal in the real binary: urfave/cli prints
// "Incorrect Usage. flag provided but not defined: -name" and the help on stdout, and cloudflared's
// main ignores the error (\`_ = app.Run(os.Args)\`), so it exits 0. The help here is shortened to
// its NAME and USAGE sections.
const versionAtLeast = (min) => {
  const have = VERSION.split(".").map(Number)
  for (let i = 0; i < 3; i++) if ((have[i] || 0) !== min[i]) return (have[i] || 0) > min[i]
  return true
}
const BOOL_FLAGS = new Set([
  "is-autoupdated", "no-autoupdate", "hello-world", "http2-origin", "no-chunked-encoding", "no-tls-verify",
  "proxy-no-happy-eyeballs", "ssh-server", "socks5", "bastion", "proxy-dns", "quic-disable-pmtu-discovery",
  "management-diagnostics", "post-quantum", "pq", "ui", "stdin-control", "use-reconnect-token", "help", "h"
])
// TUN-10387 "Add no-prechecks flag", first released in 2026.5.0 (RELEASE_NOTES).
if (versionAtLeast([2026, 5, 0])) BOOL_FLAGS.add("no-prechecks")
const VALUE_FLAGS = new Set([
  "url", "metrics", "protocol", "p", "loglevel", "transport-loglevel", "proto-loglevel", "edge-ip-version",
  "grace-period", "logfile", "log-directory", "output", "trace-output", "autoupdate-freq", "region", "http-host-header",
  "origin-server-name", "config", "pidfile", "ha-connections", "retries", "hostname", "name", "n", "origincert",
  "edge-bind-address", "label", "edge", "cacert", "lb-pool", "api-url", "metrics-update-freq", "tag",
  "max-edge-addr-retries", "rpc-timeout", "write-stream-timeout", "quic-connection-level-flow-control-limit",
  "quic-stream-level-flow-control-limit", "heartbeat-interval", "heartbeat-count", "dial-edge-timeout",
  "unix-socket", "proxy-address", "proxy-port", "proxy-connect-timeout", "proxy-tls-timeout", "proxy-tcp-keepalive",
  "proxy-keepalive-connections", "proxy-keepalive-timeout", "proxy-connection-timeout",
  "proxy-expect-continue-timeout", "origin-ca-pool", "service-op-ip", "management-hostname", "ssh-idle-timeout",
  "ssh-max-timeout", "local-ssh-port", "host-key-path", "proxy-dns-port", "proxy-dns-address", "proxy-dns-upstream",
  "proxy-dns-max-upstream-conns", "proxy-dns-bootstrap", "credentials-file", "cred-file", "credentials-contents",
  "token", "token-file", "features", "F", "icmpv4-src", "icmpv6-src", "max-active-flows", "dns-resolver-addrs",
  "quick-service", "id"
])
const BUILT = VERSION === "2026.8.2" ? "2026-08-14T10:54 UTC" : VERSION.replace(/^(\\d+)\\.(\\d+)\\..*$/, (_, y, m) => y + "-" + m.padStart(2, "0") + "-01T12:00 UTC")
const VERSION_TEXT = VERSION + " (built " + BUILT + ")"

const APP_HELP =
  "NAME:\\n   cloudflared - Cloudflare's command-line tool and agent\\n\\n" +
  "USAGE:\\n   cloudflared [global options] [command] [command options]\\n\\n" +
  "VERSION:\\n   " + VERSION_TEXT + "\\n"
const TUNNEL_HELP =
  "NAME:\\n   cloudflared tunnel - Use Cloudflare Tunnel to expose private services to the Internet or to Cloudflare connected private users.\\n\\n" +
  "USAGE:\\n   cloudflared tunnel command [command options]  \\n"

const usageError = (message, help) => {
  process.stdout.write("Incorrect Usage. " + message + "\\n\\n" + help)
  process.exit(0)
}

/** Go's flag.FlagSet.Parse: returns [flags, rest] or calls usageError. */
const parseFlags = (args, known, isBool, help) => {
  const parsed = {}
  let i = 0
  for (; i < args.length; i++) {
    const arg = args[i]
    if (arg.length < 2 || arg[0] !== "-") break
    if (arg === "--") {
      i++
      break
    }
    const body = arg[1] === "-" ? arg.slice(2) : arg.slice(1)
    if (body.length === 0 || body[0] === "-" || body[0] === "=") usageError("bad flag syntax: " + arg, help)
    const eq = body.indexOf("=")
    const name = eq >= 0 ? body.slice(0, eq) : body
    if (!known(name)) usageError("flag provided but not defined: -" + name, help)
    if (isBool(name)) {
      const value = eq >= 0 ? body.slice(eq + 1) : "true"
      if (!/^(1|0|t|f|T|F|true|false|TRUE|FALSE|True|False)$/.test(value)) {
        usageError('invalid boolean value "' + value + '" for -' + name + ": parse error", help)
      }
      parsed[name] = /^(1|t|T|true|TRUE|True)$/.test(value) ? "true" : "false"
    } else if (eq >= 0) {
      parsed[name] = body.slice(eq + 1)
    } else if (i + 1 < args.length) {
      parsed[name] = args[++i]
    } else {
      usageError("flag needs an argument: -" + name, help)
    }
  }
  return [parsed, args.slice(i)]
}

const isTunnelFlag = (name) => BOOL_FLAGS.has(name) || VALUE_FLAGS.has(name)
// The app has the tunnel flags (hidden) plus -version/-v/-V; \`tunnel\` is a sub-app with HideVersion.
const [appFlags, appRest] = parseFlags(
  process.argv.slice(2),
  (name) => isTunnelFlag(name) || name === "version" || name === "v" || name === "V",
  (name) => BOOL_FLAGS.has(name) || name === "version" || name === "v" || name === "V",
  APP_HELP
)
if (appFlags.help === "true" || appFlags.h === "true") {
  process.stdout.write(APP_HELP)
  process.exit(0)
}
if (appFlags.version === "true" || appFlags.v === "true" || appFlags.V === "true") {
  process.stdout.write("cloudflared version " + VERSION_TEXT + "\\n")
  process.exit(0)
}
let flags = appFlags
let positional = appRest
if (positional[0] === "version") {
  const versionFlag = (name) => ["short", "s", "help", "h"].includes(name)
  const [versionFlags] = parseFlags(positional.slice(1), versionFlag, versionFlag, "")
  process.stdout.write((versionFlags.short === "true" || versionFlags.s === "true" ? VERSION : "cloudflared version " + VERSION_TEXT) + "\\n")
  process.exit(0)
}
if (positional.length > 0 && positional[0] !== "tunnel") {
  fatal("cloudflared (Hub emulator stand-in): unsupported command " + JSON.stringify(positional[0]) + "; only quick tunnels are emulated (cloudflared tunnel --url http://127.0.0.1:PORT)")
}
if (positional[0] === "tunnel") {
  const [tunnelFlags, rest] = parseFlags(positional.slice(1), isTunnelFlag, (name) => BOOL_FLAGS.has(name), TUNNEL_HELP)
  if (tunnelFlags.help === "true" || tunnelFlags.h === "true") {
    process.stdout.write(TUNNEL_HELP)
    process.exit(0)
  }
  flags = { ...appFlags, ...tunnelFlags }
  positional = rest
  if (positional.length > 0) {
    fatal("cloudflared (Hub emulator stand-in): named tunnels are not emulated (" + positional.join(" ") + "); use a quick tunnel: cloudflared tunnel --url http://127.0.0.1:PORT")
  }
}
const origin = flags.url || process.env.TUNNEL_URL
if (!origin) {
  fatal("cloudflared (Hub emulator stand-in): --url is required; only quick tunnels are emulated (cloudflared tunnel --url http://127.0.0.1:PORT)")
}
const metricsFlag = flags.metrics || process.env.TUNNEL_METRICS || "127.0.0.1:0"
const protocol = flags.protocol || flags.p || process.env.TUNNEL_TRANSPORT_PROTOCOL || "quic"
const control = process.env.HF_EMULATOR_CONTROL
const jobId = process.env.HF_EMULATOR_JOB_ID

`

/** Loopback HTTP to the emulator's control endpoint, and Go's JSON error text. */
const controlCall = `// ---- loopback HTTP to the emulator's control endpoint ---------------------------------------
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

`

/** The disclaimer, the tunnel's state, and the graceful shutdown on SIGTERM/SIGINT (unregistering first). */
const lifecycle = `const DISCLAIMER =
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

`

/** The metrics server: `/quicktunnel`, `/ready`, `/healthcheck`, `/metrics`. */
const metricsServer = `const metricsServer = (hostname) =>
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

`

/** Requesting the quick tunnel, printing what the real one prints, then registering its connection. */
const quickTunnel = `const register = async (attempt) => {
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
  // Like RunQuickTunnel: a JSON answer is not checked for success, only for a tunnel id that parses.
  const id = data && data.result && typeof data.result.id === "string" ? data.result.id : ""
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
    fatal("failed to parse quick Tunnel ID: " + ([32, 36, 38, 41, 45].includes(id.length) ? "invalid UUID format" : "invalid UUID length: " + id.length))
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

`

/** The watchdog that ties the stand-in's life to its job and its edge, and the entry point. */
const watchdog = `// The emulator is this stand-in's edge and its container: when the edge drops the connection the
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

/**
 * The script text; `nodePath` becomes the shebang, so the file is directly executable. `version` is the
 * release it impersonates: what `--version` prints, and which flags it knows (before 2026.5.0 there is
 * no `--no-prechecks`).
 */
export const cloudflaredScript = (nodePath: string, version: string = CLOUDFLARED_VERSION): string =>
  header(nodePath, version) + commandLine + controlCall + lifecycle + metricsServer + quickTunnel + watchdog
