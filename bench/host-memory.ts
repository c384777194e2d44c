/**
 * What an idle leased sandbox costs a host-mode server (`SBX_HOST_MODE=1`, rpc-server/sbx_server/host.py)
 * in memory: the server's RSS (Linux: /proc/PID/status VmRSS) with no sandbox, then with N idle ones
 * (default 200), and the difference per sandbox. Target (issue 15): under 1 MiB each. Nothing runs in
 * the sandboxes: this is the record, home and Landlock ruleset of each, not what its commands use.
 *
 *   npx tsx bench/host-memory.ts [--sandboxes N]
 *
 * Run as root for the real thing (a uid and a Landlock ruleset per sandbox); otherwise the server
 * starts with SBX_HOST_WEAK_ISOLATION=1 and says which isolation it had.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const argv = process.argv.slice(2)
const at = argv.indexOf("--sandboxes")
const N = at >= 0 ? Number(argv[at + 1]) : 200
const SERVER = fileURLToPath(new URL("../rpc-server/sbx_server", import.meta.url))

const rssKiB = (pid: number) => {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"))
  return Number(line?.split(/\s+/)[1])
}

const main = async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-host-memory-"))
  const token = randomBytes(32).toString("hex")
  const proc = spawn("python3", ["-u", "-S", SERVER, "--port", "0", "--exit-on-stdin-eof"], {
    cwd: dir,
    env: {
      ...process.env,
      SBX_TOKEN: token,
      SBX_HOST_MODE: "1",
      SBX_HOST_WEAK_ISOLATION: "1",
      SBX_CAPACITY: String(Math.max(N, 1)),
      SBX_HOMES_DIR: path.join(dir, "homes")
    },
    stdio: ["pipe", "pipe", "inherit"]
  })
  const listening = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
    let out = ""
    proc.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const nl = out.indexOf("\n")
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)))
    })
    proc.once("exit", (code) => reject(new Error(`server exited with ${code}`)))
  })
  const base = `http://127.0.0.1:${listening.port}`
  const call = (route: string, init: RequestInit = {}) =>
    // biome-ignore lint/suspicious/noExplicitAny: JSON answers, read field by field
    fetch(base + route, { ...init, headers: { "X-Sandbox-Token": token } }).then((r) => r.json() as Promise<any>)
  try {
    const health = await call("/health")
    // A first sandbox created and deleted: what a first use loads (the wrapper's modules, the rulesets'
    // system directories) is not counted as the sandboxes'.
    await call("/v1/sandboxes", { method: "DELETE" })
    const warm = await call("/v1/sandboxes", { method: "POST", body: "{}" })
    await call(`/v1/sandboxes/${warm.sandboxes[0].id}`, { method: "DELETE" })
    const before = rssKiB(listening.pid)
    const made = await call("/v1/sandboxes", { method: "POST", body: JSON.stringify({ count: N }) })
    const after = rssKiB(listening.pid)
    const per = (after - before) / Math.max(made.sandboxes.length, 1)
    console.log(`host-mode server, isolation ${health.isolation}, Python from PATH`)
    console.log(`RSS with 0 sandboxes:   ${(before / 1024).toFixed(2)} MiB`)
    console.log(`RSS with ${made.sandboxes.length} idle sandboxes: ${(after / 1024).toFixed(2)} MiB`)
    console.log(`per sandbox: ${per.toFixed(1)} KiB (target < 1024 KiB)`)
  } finally {
    proc.stdin.end()
    await new Promise((resolve) => proc.once("exit", resolve))
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

void main()
