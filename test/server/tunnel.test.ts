/**
 * Tunnel mode of the in-sandbox server (`rpc-server/sbx_server --tunnel`), against a fake `cloudflared`.
 *
 * The fake is a small Python script written to a temp dir. It parses `--metrics` and `--url`, prints a
 * banner like the real one on stderr (with the `https://api.trycloudflare.com` link that must never be
 * announced), serves `/quicktunnel` and `/ready` on the metrics address, and behaves as the test's
 * `config.json` says. It logs every start and every `/ready` answer to files the test reads. Downloads
 * are served by a local HTTP server on 127.0.0.1: nothing here touches the internet.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"

import { isAlive, sleep, until, waitGone as waitGoneWithin, withTimeout } from "../support/processes.js"
import { realPython } from "../support/python.js"
import { serverArgs } from "../support/server.js"

// The real interpreter, not a shim: see test/support/python.ts. The fake cloudflared runs on it too.
const HOST_PYTHON = realPython()
const PYTHON = process.env.SBX_CONFORMANCE_PYTHON ?? HOST_PYTHON
const MARKER = /^HF_SANDBOX_TUNNEL (\{.*\})$/
const LISTENING = /^\{"event":"listening","host":"127\.0\.0\.1","port":(\d+),"pid":(\d+),/

const FAKE_CLOUDFLARED = `#!${HOST_PYTHON}
# Fake cloudflared for test/server/tunnel.test.ts; behaviour from $FAKE_CF_DIR/config.json.
import json, os, signal, sys, threading, time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

D = os.environ["FAKE_CF_DIR"]
CFG = json.load(open(os.path.join(D, "config.json")))
STARTS = os.path.join(D, "starts.jsonl")
try:
    with open(STARTS) as f:
        N = sum(1 for _ in f)
except FileNotFoundError:
    N = 0
T0 = time.time()
argv = sys.argv[1:]


def record(name, **kw):
    with open(os.path.join(D, name), "a") as f:
        f.write(json.dumps(dict(kw, n=N, pid=os.getpid(), t=time.time() * 1000)) + "\\n")


if argv == ["--version"]:  # what the real one prints: "cloudflared version 2026.9.1 (built 2026-09-01T10:00 UTC)"
    record("versions.jsonl", argv0=sys.argv[0])
    sys.stdout.write(CFG.get("versionOutput", "cloudflared version %s (built 2026-09-01T10:00 UTC)" % CFG.get("version", "2026.9.1")) + "\\n")
    sys.exit(0)
mhost, mport = argv[argv.index("--metrics") + 1].rsplit(":", 1)
origin = argv[argv.index("--url") + 1]


def log(level, msg):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write("%s %s %s\\n" % (stamp, level, msg))
    sys.stderr.flush()


home = os.environ.get("HOME", "")
record(
    "starts.jsonl", argv0=sys.argv[0], argv=argv, pgid=os.getpgid(0), sid=os.getsid(0), home=home,
    homeEntries=sorted(os.listdir(home)) if os.path.isdir(home) else None,
    token="SBX_TOKEN" in os.environ or "HF_SANDBOX_TOKEN" in os.environ,
)
if CFG.get("ignoreTerm"):  # noted, so that a test can tell a SIGKILL after an ignored SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: record("terms.jsonl"))

log("INF", "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to "
    "experiment. Terms of Use (https://www.cloudflare.com/website-terms/) apply.")
log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
if N < CFG.get("failFirst", 0):
    log("ERR", "Error unmarshaling QuickTunnel response: error code: 1015 error=\\"invalid character 'e' looking "
        "for beginning of value\\" status_code=\\"429 Too Many Requests\\"")
    log("ERR", "failed to request quick Tunnel: Post \\"https://api.trycloudflare.com/tunnel\\": 429")
    log("INF", "failed to unmarshal quick Tunnel: invalid character 'e' looking for beginning of value")
    sys.exit(1)

hostname = CFG.get("hostname") or "fake-%d-%s.trycloudflare.com" % (N, CFG.get("tag", "tunnel"))
ready_after = CFG.get("readyAfterMs", 0) / 1000.0
die_after = CFG.get("dieAfterMs", {}).get(str(N))
row = "  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  "
log("INF", "+" + "-" * len(row) + "+")
log("INF", "|" + row + "|")
log("INF", "|  " + ("https://" + hostname).ljust(len(row) - 2) + "|")
log("INF", "+" + "-" * len(row) + "+")
log("INF", "Version 2026.9.1 (fake); api https://api.trycloudflare.com")


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/quicktunnel":
            status, body = 200, {"hostname": hostname}
        elif self.path == "/ready":
            ok = time.time() - T0 >= ready_after
            status = 200 if ok else 503
            body = {"status": status, "readyConnections": 1 if ok else 0, "connectorId": "fake"}
            record("ready.jsonl", status=status)
        else:
            status, body = 404, {}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


srv = HTTPServer((mhost, int(mport)), Metrics)
threading.Thread(target=srv.serve_forever, daemon=True).start()
log("INF", "Starting metrics server on %s:%s/metrics" % (mhost, mport))
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    record("origin.jsonl", body=opener.open(origin + "/health", timeout=5).read().decode())
except Exception as e:
    record("origin.jsonl", error=str(e))
time.sleep(ready_after)
log("INF", "Registered tunnel connection connIndex=0 connection=fake event=0 ip=198.41.200.1 location=fake "
    "protocol=http2")
if die_after is not None:
    time.sleep(max(0.0, die_after / 1000.0 - ready_after))
    log("ERR", "fake: connection lost; exiting")
    os._exit(CFG.get("dieCode", 1))
while True:
    time.sleep(3600)
`

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Line {
  readonly text: string
  readonly at: number
}

interface Start {
  readonly n: number
  readonly pid: number
  readonly t: number
  readonly argv0: string
  readonly argv: Array<string>
  readonly pgid: number
  readonly sid: number
  readonly home: string
  readonly homeEntries: Array<string> | null
  readonly token: boolean
}

interface Case {
  readonly root: string
  readonly cwd: string
  readonly cf: string // FAKE_CF_DIR: config.json in, starts/ready/origin logs out
  readonly tmp: string // the server's TMPDIR: its temp HOMEs for cloudflared must not outlive it
  readonly cache: string // XDG_CACHE_HOME
}

interface Running {
  readonly proc: ChildProcessWithoutNullStreams
  readonly pid: number
  readonly port: number
  readonly lines: Array<Line>
  readonly exited: Promise<Exit>
  /** Its stderr read to the end (the exit can be seen before the last of it is read from the pipe). */
  readonly drained: Promise<void>
  readonly stderr: () => string
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-tunnel-test-"))
const FAKE = path.join(root, "fake-cloudflared")
fs.writeFileSync(FAKE, FAKE_CLOUDFLARED, { mode: 0o755 })
const FAKE_SHA256 = createHash("sha256").update(FAKE_CLOUDFLARED).digest("hex")

/** Every pid seen (servers and fakes); all must be gone at the end. */
const seenPids = new Set<number>()
const servers: Array<Running> = []

/**
 * How long a wait for something the server is about to do (exit, announce, reap) may take before the test
 * fails with a clear message instead of the test timeout. A guard against a hang, not a measure of speed:
 * a loaded machine can take seconds for what takes milliseconds on a quiet one.
 */
const HANG_GUARD_MS = 45_000

const waitGone = (pids: ReadonlyArray<number>) => waitGoneWithin(pids, HANG_GUARD_MS)

const newCase = (config: Record<string, unknown>): Case => {
  const dir = fs.mkdtempSync(path.join(root, "case-"))
  const c: Case = {
    root: dir,
    cwd: path.join(dir, "cwd"),
    cf: path.join(dir, "cf"),
    tmp: path.join(dir, "tmp"),
    cache: path.join(dir, "cache")
  }
  for (const d of [c.cwd, c.cf, c.tmp, c.cache]) fs.mkdirSync(d)
  fs.writeFileSync(path.join(c.cf, "config.json"), JSON.stringify(config))
  return c
}

const readJsonl = <A>(file: string): Array<A> =>
  fs.existsSync(file)
    ? fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as A)
    : []

const starts = (c: Case): Array<Start> => {
  const all = readJsonl<Start>(path.join(c.cf, "starts.jsonl"))
  for (const s of all) seenPids.add(s.pid)
  return all
}

/** PATH without any directory that holds a `cloudflared`, so only the configured binary can run. */
const pathWithoutCloudflared = (process.env.PATH ?? "")
  .split(path.delimiter)
  .filter((d) => d.length > 0 && !fs.existsSync(path.join(d, "cloudflared")))
  .join(path.delimiter)

const serverEnv = (c: Case, extra: Record<string, string>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of Object.keys(env)) {
    if (/^(SBX_|HF_SANDBOX_|TUNNEL_)|^(https?|all|no)_proxy$/i.test(name)) delete env[name]
  }
  return {
    ...env,
    PATH: pathWithoutCloudflared,
    TMPDIR: c.tmp,
    XDG_CACHE_HOME: c.cache,
    FAKE_CF_DIR: c.cf,
    SBX_TOKEN: randomBytes(16).toString("hex"),
    SBX_CLOUDFLARED: FAKE,
    // Should anything ever try to download, it hits a closed loopback port, never the internet.
    SBX_CLOUDFLARED_BASE_URL: "http://127.0.0.1:9/never",
    SBX_TUNNEL_BACKOFF: "0.05",
    ...extra
  }
}

/** The server with `args`, started as the shared harness starts it (`-S` unless `env` has a PYTHONPATH). */
const launch = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, cwd: string): ChildProcessWithoutNullStreams =>
  spawn(PYTHON, serverArgs(args, env), { cwd, env, stdio: "pipe" })

const startServer = async (c: Case, extra: Record<string, string> = {}): Promise<Running> => {
  const env = serverEnv(c, extra)
  for (const [k, v] of Object.entries(extra)) if (v === "") delete env[k]
  const proc = launch(["--port", "0", "--tunnel", "--exit-on-stdin-eof"], env, c.cwd)
  const lines: Array<Line> = []
  let partial = ""
  let stderr = ""
  proc.stdout.setEncoding("utf8").on("data", (d: string) => {
    const parts = (partial + d).split("\n")
    partial = parts.pop()!
    const at = Date.now()
    for (const text of parts) lines.push({ text, at })
  })
  proc.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d
  })
  const exited = new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })))
  const drained = new Promise<void>((resolve) => proc.stderr.once("end", resolve).once("close", resolve))
  // The message is built at the deadline, so that it shows the server's stderr by then.
  const first = await until(
    () => `the listening line; stderr:\n${stderr}`,
    () => lines[0],
    60_000
  )
  const match = LISTENING.exec(first.text)
  if (match === null) throw new Error(`unexpected listening line: ${first.text}`)
  const running: Running = {
    proc,
    pid: Number(match[2]),
    port: Number(match[1]),
    lines,
    exited,
    drained,
    stderr: () => stderr
  }
  seenPids.add(running.pid)
  servers.push(running)
  return running
}

const markers = (r: Running): Array<{ url: string; at: number }> =>
  r.lines.flatMap((l) => {
    const m = MARKER.exec(l.text)
    return m === null ? [] : [{ ...(JSON.parse(m[1]!) as { url: string }), at: l.at }]
  })

const waitMarkers = (r: Running, n: number, ms = HANG_GUARD_MS) =>
  until(
    () => `${n} marker line(s); stderr:\n${r.stderr()}`,
    () => {
      const all = markers(r)
      return all.length >= n ? all : undefined
    },
    ms
  )

const stop = async (r: Running): Promise<Exit> => {
  r.proc.kill("SIGTERM")
  const exit = await withTimeout(r.exited, HANG_GUARD_MS)
  if (exit === "timeout") {
    r.proc.kill("SIGKILL")
    throw new Error(`server ${r.pid} ignored SIGTERM`)
  }
  return exit
}

/** The server's temp HOME dirs for cloudflared (and partial downloads) left in its TMPDIR. */
const leftovers = (c: Case) => fs.readdirSync(c.tmp).filter((n) => n.startsWith("hf-sandbox-cloudflared-"))

const giveUpLine = (times: number, status: string) =>
  `hf-sandbox: tunnel failed: cloudflared exited ${times} times without a working tunnel (last ${status}); ` +
  "its output is above"

afterAll(async () => {
  for (const r of servers) {
    if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGKILL")
  }
  await Promise.all(servers.map((r) => withTimeout(r.exited, 5_000)))
  try {
    expect(await waitGone([...seenPids])).toEqual([])
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

describe.skipIf(process.platform === "win32")("server.py --tunnel", () => {
  it("announces the URL once, only after /ready is 200, and never the api.trycloudflare.com banner link", async () => {
    const c = newCase({ readyAfterMs: 800, tag: "first" })
    const r = await startServer(c)
    const [marker] = await waitMarkers(r, 1)
    expect(r.lines[1]!.text).toBe('HF_SANDBOX_TUNNEL {"url":"https://fake-0-first.trycloudflare.com"}')

    const ready = readJsonl<{ status: number; t: number }>(path.join(c.cf, "ready.jsonl"))
    expect(ready[0]!.status).toBe(503) // it asked while cloudflared was not connected yet...
    const firstOk = ready.find((x) => x.status === 200)!
    expect(marker!.at).toBeGreaterThanOrEqual(Math.floor(firstOk.t)) // ...and spoke only after the 200

    // The exact command line, a clean HOME, its own session, no token.
    const [s] = starts(c)
    expect(s!.argv).toEqual([
      "tunnel",
      "--no-autoupdate",
      "--protocol",
      "http2",
      "--no-prechecks",
      "--metrics",
      expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      "--url",
      `http://127.0.0.1:${r.port}`
    ])
    expect(s!.argv0).toBe(FAKE)
    expect(s!.pgid).toBe(s!.pid)
    expect(s!.sid).toBe(s!.pid)
    expect(s!.token).toBe(false)
    expect(path.dirname(s!.home)).toBe(c.tmp) // a fresh dir in the server's TMPDIR
    expect(s!.home).not.toBe(os.homedir())
    expect(s!.homeEntries).toEqual([])
    // cloudflared reached the server through --url.
    expect(readJsonl<{ body?: string }>(path.join(c.cf, "origin.jsonl"))[0]!.body).toBe('{"status":"ok"}')

    // Its output went to the server's stderr, banner and all; stdout carries only our two lines.
    expect(r.stderr()).toContain("Requesting new quick Tunnel on trycloudflare.com...")
    expect(r.stderr()).toContain("https://api.trycloudflare.com")
    // A wait, not an event: stdout and stderr are separate pipes, so a stray line on stdout may arrive
    // after the stderr lines awaited above, and nothing marks the end of cloudflared's output.
    await sleep(700)
    expect(r.lines.map((l) => l.text)).toHaveLength(2)
    expect(r.lines.some((l) => l.text.includes("api.trycloudflare.com"))).toBe(false)

    // SIGTERM ends the server and cloudflared with it, and leaves no temp HOME behind.
    expect(isAlive(s!.pid)).toBe(true)
    expect(await stop(r)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid, s!.pid])).toEqual([])
    expect(leftovers(c)).toEqual([])
  })

  it("restarts after 429 creation failures with growing backoff, and announces a new URL after a crash", async () => {
    const c = newCase({ failFirst: 2, dieAfterMs: { "2": 1000 } })
    const r = await startServer(c, { SBX_TUNNEL_BACKOFF: "0.2" })
    const found = await waitMarkers(r, 2)
    expect(found.map((m) => m.url)).toEqual([
      "https://fake-2-tunnel.trycloudflare.com",
      "https://fake-3-tunnel.trycloudflare.com"
    ])
    const s = starts(c)
    expect(s.map((x) => x.n)).toEqual([0, 1, 2, 3])
    // Backoff with jitter in [0.5, 1] x base x 2^(failures-1): >= 100 ms, then >= 200 ms.
    expect(s[1]!.t - s[0]!.t).toBeGreaterThanOrEqual(100)
    expect(s[2]!.t - s[1]!.t).toBeGreaterThanOrEqual(200)
    expect(r.stderr()).toContain("error code: 1015")
    expect(markers(r).every((m) => !m.url.includes("api."))).toBe(true)
    expect(await waitGone(s.slice(0, 3).map((x) => x.pid))).toEqual([])
    expect(await stop(r)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid, s[3]!.pid])).toEqual([])
    expect(leftovers(c)).toEqual([])
  })

  it("gives up after SBX_TUNNEL_RESTARTS failed restarts: one clear line, exit status 3", async () => {
    const c = newCase({ failFirst: 99 })
    const r = await startServer(c, { SBX_TUNNEL_RESTARTS: "2" })
    expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
    expect(r.stderr().split("\n")).toContain(giveUpLine(3, "exit status 1"))
    expect(starts(c)).toHaveLength(3)
    expect(r.lines.map((l) => l.text)).toHaveLength(1) // the listening line only
    expect(await waitGone([r.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
    expect(leftovers(c)).toEqual([])
  })

  it("refuses to announce api.trycloudflare.com even when /quicktunnel names it", async () => {
    const c = newCase({ hostname: "api.trycloudflare.com" })
    const r = await startServer(c, { SBX_TUNNEL_RESTARTS: "0" })
    expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toContain("unexpected tunnel hostname 'api.trycloudflare.com'")
    expect(r.stderr()).toContain("hf-sandbox: tunnel failed: cloudflared failed 1 time without a working tunnel")
    expect(markers(r)).toEqual([])
    expect(await waitGone([r.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
  })

  it("announces any hostname with SBX_TUNNEL_ALLOW_ANY_HOST=1 (emulators); stdin EOF ends both", async () => {
    const c = newCase({ hostname: "emulator.test:8443" })
    const r = await startServer(c, { SBX_TUNNEL_ALLOW_ANY_HOST: "1" })
    expect((await waitMarkers(r, 1)).map((m) => m.url)).toEqual(["https://emulator.test:8443"])
    const [s] = starts(c)
    r.proc.stdin.end()
    expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid, s!.pid])).toEqual([])
  })

  it("gives up on a cloudflared that never connects, killing it even if it ignores SIGTERM", async () => {
    const c = newCase({ readyAfterMs: 1e9, ignoreTerm: true })
    const r = await startServer(c, { SBX_TUNNEL_READY_TIMEOUT: "0.5", SBX_TUNNEL_RESTARTS: "0" })
    expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
    await withTimeout(r.drained, 5_000)
    expect(r.stderr()).toContain("(last: was not ready within 0.5s (SBX_TUNNEL_READY_TIMEOUT))")
    expect(await waitGone([r.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
    expect(leftovers(c)).toEqual([])
  })

  it("SIGTERM kills a cloudflared that ignores SIGTERM (bounded, SIGKILL)", async () => {
    const c = newCase({ ignoreTerm: true })
    const r = await startServer(c)
    await waitMarkers(r, 1)
    const [s] = starts(c)
    expect(await stop(r)).toEqual({ code: 0, signal: null })
    // The fake was asked to stop and ignored it; that it is gone all the same means it was SIGKILLed. A
    // server that waited for it to exit would never exit itself (stop's guard).
    expect(readJsonl(path.join(c.cf, "terms.jsonl")).length).toBeGreaterThanOrEqual(1)
    expect(await waitGone([r.pid, s!.pid])).toEqual([])
  })

  it("refuses SBX_CLOUDFLARED pointing at a cloudflared older than 2026.5.0 or of unreadable version: exit 3", async () => {
    for (const [config, why] of [
      [{ version: "2026.4.2" }, "is version 2026.4.2, older than 2026.5.0 (the first with --no-prechecks)"],
      [
        { versionOutput: "cloudflared version DEV (built unknown)" },
        "has an unreadable version (--version printed 'cloudflared version DEV (built unknown)', exit status 0)"
      ]
    ] as const) {
      const c = newCase(config)
      const r = await startServer(c)
      expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
      const line = r
        .stderr()
        .split("\n")
        .find((l) => l.startsWith("hf-sandbox: tunnel failed:"))
      expect(line).toBe(
        `hf-sandbox: tunnel failed: SBX_CLOUDFLARED=${FAKE} ${why}; hf-sandbox needs cloudflared 2026.5.0 or newer: ` +
          "point SBX_CLOUDFLARED at a newer one, or unset it to download 2026.9.1"
      )
      expect(readJsonl(path.join(c.cf, "versions.jsonl"))).toHaveLength(1) // asked once, with --version only
      expect(starts(c)).toEqual([]) // never run as a tunnel
      expect(markers(r)).toEqual([])
      expect(await waitGone([r.pid])).toEqual([])
    }
  })

  it("refuses SBX_CLOUDFLARED_VERSION older than 2026.5.0, or not a release tag, before binding: exit 2", async () => {
    const c = newCase({})
    for (const [version, message] of [
      [
        "2026.4.0",
        "server.py: error: invalid SBX_CLOUDFLARED_VERSION '2026.4.0': older than 2026.5.0, the first cloudflared " +
          "release with every flag hf-sandbox passes (--no-prechecks); pick 2026.5.0 or newer, or unset it to use 2026.9.1"
      ],
      ["latest", "server.py: error: invalid SBX_CLOUDFLARED_VERSION 'latest': expected a release tag such as 2026.9.1"]
    ] as const) {
      const proc = launch(["--port", "0", "--tunnel"], serverEnv(c, { SBX_CLOUDFLARED_VERSION: version }), c.cwd)
      let out = ""
      let err = ""
      proc.stdout.on("data", (d: Buffer) => {
        out += d.toString()
      })
      proc.stderr.on("data", (d: Buffer) => {
        err += d.toString()
      })
      const exit = await withTimeout(
        new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal }))),
        HANG_GUARD_MS
      )
      expect(exit, version).toEqual({ code: 2, signal: null })
      expect(out).toBe("")
      expect(err.trim()).toBe(message)
    }
    expect(readJsonl(path.join(c.cf, "versions.jsonl"))).toEqual([])
  })

  it("rejects bad tunnel settings with exit 2 before binding, and --tunnel without a token", async () => {
    const c = newCase({})
    for (const [name, value] of [
      ["SBX_TUNNEL_BACKOFF", "soon"],
      ["SBX_TUNNEL_RESTARTS", "-1"],
      ["SBX_CLOUDFLARED_SHA256", "abc"]
    ] as const) {
      const proc = launch(["--port", "0", "--tunnel"], serverEnv(c, { [name]: value }), c.cwd)
      let out = ""
      proc.stdout.on("data", (d: Buffer) => {
        out += d.toString()
      })
      const exit = await withTimeout(
        new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal }))),
        HANG_GUARD_MS
      )
      expect(exit, name).toEqual({ code: 2, signal: null })
      expect(out).toBe("")
    }
    const env = serverEnv(c, {})
    delete env.SBX_TOKEN
    const proc = launch(["--port", "0", "--allow-no-auth"], { ...env, SBX_TUNNEL: "1" }, c.cwd)
    let err = ""
    proc.stderr.on("data", (d: Buffer) => {
      err += d.toString()
    })
    const exit = await withTimeout(
      new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal }))),
      HANG_GUARD_MS
    )
    expect(exit).toEqual({ code: 2, signal: null })
    expect(err).toContain("refusing --tunnel without a token")
  })
})

// ---------------------------------------------------------------------------
// Downloading cloudflared (from a local server standing in for GitHub releases)
// ---------------------------------------------------------------------------

const ARCH = ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[process.arch]

describe.skipIf(ARCH === undefined || process.platform === "win32")(
  "server.py --tunnel: downloading cloudflared",
  () => {
    const VERSION = "2026.6.0"
    let assetRequests = 0
    let cutRequests = 0
    let base = ""
    const releases = http.createServer((req, res) => {
      if (req.url === `/releases/${VERSION}/cloudflared-linux-${ARCH}`) {
        // Like GitHub: the release URL redirects to the asset.
        res.writeHead(302, { Location: `/assets/cloudflared-linux-${ARCH}` }).end()
      } else if (req.url === `/assets/cloudflared-linux-${ARCH}`) {
        assetRequests++
        res.writeHead(200, { "Content-Type": "application/octet-stream" }).end(FAKE_CLOUDFLARED)
      } else if (req.url === `/downgrade/${VERSION}/cloudflared-linux-${ARCH}`) {
        res.writeHead(302, { Location: `http://example.invalid/cloudflared-linux-${ARCH}` }).end()
      } else if (req.url === `/cut/${VERSION}/cloudflared-linux-${ARCH}`) {
        // The whole size announced, half of it sent, then the connection drops.
        cutRequests++
        const bytes = Buffer.from(FAKE_CLOUDFLARED)
        res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": bytes.length })
        res.write(bytes.subarray(0, bytes.length >> 1), () => res.destroy())
      } else {
        res.writeHead(404).end()
      }
    })
    const listening = new Promise<void>((resolve) => releases.listen(0, "127.0.0.1", resolve))
    afterAll(() => new Promise<void>((resolve) => releases.close(() => resolve())))

    const downloadEnv = async (extra: Record<string, string>) => {
      await listening
      base = `http://127.0.0.1:${(releases.address() as AddressInfo).port}/releases`
      return { SBX_CLOUDFLARED: "", SBX_CLOUDFLARED_BASE_URL: base, SBX_CLOUDFLARED_VERSION: VERSION, ...extra }
    }

    it("downloads, verifies and caches it; the next start reuses the cache; a tampered cache is replaced", async () => {
      const c = newCase({})
      const env = await downloadEnv({ SBX_CLOUDFLARED_SHA256: FAKE_SHA256 })
      const cached = path.join(c.cache, "hf-sandbox", `cloudflared-${VERSION}-linux-${ARCH}`)

      const r1 = await startServer(c, env)
      await waitMarkers(r1, 1)
      expect(assetRequests).toBe(1)
      expect(starts(c)[0]!.argv0).toBe(cached)
      expect(fs.readFileSync(cached, "utf8")).toBe(FAKE_CLOUDFLARED)
      expect(fs.statSync(cached).mode & 0o777).toBe(0o755)
      expect(fs.readdirSync(path.dirname(cached))).toEqual([path.basename(cached)]) // no partial file left
      expect(await stop(r1)).toEqual({ code: 0, signal: null })

      const r2 = await startServer(c, env)
      await waitMarkers(r2, 1)
      expect(assetRequests).toBe(1) // served from the cache
      expect(r2.stderr()).toContain("using cached cloudflared")
      expect(await stop(r2)).toEqual({ code: 0, signal: null })

      fs.writeFileSync(cached, "#!/bin/sh\nexit 7\n")
      const r3 = await startServer(c, env)
      await waitMarkers(r3, 1)
      expect(assetRequests).toBe(2) // re-verified, found wrong, downloaded again
      expect(fs.readFileSync(cached, "utf8")).toBe(FAKE_CLOUDFLARED)
      expect(await stop(r3)).toEqual({ code: 0, signal: null })

      expect(starts(c)).toHaveLength(3)
      expect(await waitGone([r1.pid, r2.pid, r3.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
      expect(leftovers(c)).toEqual([])
    })

    it("refuses a download that fails verification: exit 3, one clear line, nothing executed or cached", async () => {
      const c = newCase({})
      const wrong = "0".repeat(64)
      const before = assetRequests
      const r = await startServer(c, await downloadEnv({ SBX_CLOUDFLARED_SHA256: wrong }))
      expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
      expect(assetRequests).toBe(before + 1)
      const url = `${base}/${VERSION}/cloudflared-linux-${ARCH}`
      expect(r.stderr().split("\n")).toContain(
        `hf-sandbox: tunnel failed: cloudflared download failed verification: expected sha256 ${wrong}, got ${FAKE_SHA256} (${url})`
      )
      expect(starts(c)).toEqual([]) // never executed
      expect(fs.readdirSync(path.join(c.cache, "hf-sandbox"))).toEqual([])
      expect(markers(r)).toEqual([])
      expect(await waitGone([r.pid])).toEqual([])
    })

    it("a cloudflared on PATH older than 2026.5.0, or of unreadable version, is not used: the pinned release is downloaded", async () => {
      for (const [config, why] of [
        [{ version: "2026.4.2" }, "it is version 2026.4.2, older than 2026.5.0 (the first with --no-prechecks)"],
        [
          { versionOutput: "garbled\u0000output" },
          "it has an unreadable version (--version printed 'garbled\\x00output'"
        ]
      ] as const) {
        const c = newCase(config)
        const bin = path.join(c.root, "bin")
        fs.mkdirSync(bin)
        fs.writeFileSync(path.join(bin, "cloudflared"), FAKE_CLOUDFLARED, { mode: 0o755 })
        const before = assetRequests
        const env = await downloadEnv({ SBX_CLOUDFLARED_SHA256: FAKE_SHA256 })
        const r = await startServer(c, { ...env, PATH: `${bin}${path.delimiter}${pathWithoutCloudflared}` })
        await waitMarkers(r, 1)
        const cached = path.join(c.cache, "hf-sandbox", `cloudflared-${VERSION}-linux-${ARCH}`)
        expect(starts(c).map((s) => s.argv0)).toEqual([cached]) // the download runs the tunnel...
        expect(readJsonl<{ argv0: string }>(path.join(c.cf, "versions.jsonl")).map((v) => v.argv0)).toEqual([
          path.join(bin, "cloudflared") // ...the one on PATH was only asked its version
        ])
        expect(assetRequests).toBe(before + 1)
        expect(r.stderr()).toContain(`tunnel: not using cloudflared ${path.join(bin, "cloudflared")} on PATH: ${why}`)
        expect(r.stderr()).toContain(`downloading ${VERSION} instead`)
        expect(await stop(r)).toEqual({ code: 0, signal: null })
        expect(await waitGone([r.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
      }
    })

    it("a cloudflared on PATH of 2026.5.0 or newer is used as it is", async () => {
      const c = newCase({ version: "2026.5.0" })
      const bin = path.join(c.root, "bin")
      fs.mkdirSync(bin)
      fs.writeFileSync(path.join(bin, "cloudflared"), FAKE_CLOUDFLARED, { mode: 0o755 })
      const before = assetRequests
      const env = await downloadEnv({ SBX_CLOUDFLARED_SHA256: FAKE_SHA256 })
      const r = await startServer(c, { ...env, PATH: `${bin}${path.delimiter}${pathWithoutCloudflared}` })
      await waitMarkers(r, 1)
      expect(starts(c).map((s) => s.argv0)).toEqual([path.join(bin, "cloudflared")])
      expect(assetRequests).toBe(before)
      expect(r.stderr()).toContain(`tunnel: using cloudflared ${path.join(bin, "cloudflared")} 2026.5.0 (PATH)`)
      expect(await stop(r)).toEqual({ code: 0, signal: null })
      expect(await waitGone([r.pid, ...starts(c).map((x) => x.pid)])).toEqual([])
    })

    it("follows a redirect only to https (or loopback http from a loopback base): a downgrade is refused", async () => {
      const c = newCase({})
      const env = await downloadEnv({ SBX_CLOUDFLARED_SHA256: FAKE_SHA256 })
      const downgrade = base.replace(/\/releases$/, "/downgrade")
      const r = await startServer(c, { ...env, SBX_CLOUDFLARED_BASE_URL: downgrade })
      expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
      expect(r.stderr().split("\n")).toContain(
        `hf-sandbox: tunnel failed: cannot download cloudflared from ${downgrade}/${VERSION}/cloudflared-linux-${ARCH}: ` +
          `redirected (HTTP 302) to http://example.invalid/cloudflared-linux-${ARCH}, which is not https; refusing to follow it`
      )
      expect(starts(c)).toEqual([])
      expect(fs.readdirSync(path.join(c.cache, "hf-sandbox"))).toEqual([])
      expect(await waitGone([r.pid])).toEqual([])
    })

    it("a download cut short is retried, then fails with one clear line; nothing half-written is left", async () => {
      const c = newCase({})
      const env = await downloadEnv({ SBX_CLOUDFLARED_SHA256: FAKE_SHA256 })
      const cut = base.replace(/\/releases$/, "/cut")
      const before = cutRequests
      const r = await startServer(c, { ...env, SBX_CLOUDFLARED_BASE_URL: cut, SBX_TUNNEL_RESTARTS: "1" })
      expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
      expect(cutRequests).toBe(before + 2)
      const size = Buffer.byteLength(FAKE_CLOUDFLARED)
      expect(r.stderr().split("\n")).toContain(
        `hf-sandbox: tunnel failed: cannot download cloudflared from ${cut}/${VERSION}/cloudflared-linux-${ARCH}: ` +
          `the download was cut short (${size >> 1} of ${size} bytes)`
      )
      expect(starts(c)).toEqual([])
      expect(fs.readdirSync(path.join(c.cache, "hf-sandbox"))).toEqual([])
      expect(await waitGone([r.pid])).toEqual([])
    })

    it("refuses a version with no known digest unless SBX_CLOUDFLARED_SHA256 is given", async () => {
      const c = newCase({})
      const before = assetRequests
      const r = await startServer(c, await downloadEnv({}))
      expect(await withTimeout(r.exited, HANG_GUARD_MS)).toEqual({ code: 3, signal: null })
      await withTimeout(r.drained, 5_000)
      expect(r.stderr()).toContain(`no known sha256 for cloudflared ${VERSION} (linux-${ARCH})`)
      expect(assetRequests).toBe(before)
      expect(await waitGone([r.pid])).toEqual([])
    })
  }
)
