/**
 * What a command costs in a host-mode sandbox beside a dedicated server, in one run (issue 15): the
 * time of `exec("true")` (request → exit event, one keep-alive connection per server) on a dedicated
 * server, on a host whose commands all start a cold confining wrapper (`SBX_HOST_WARM_WRAPPERS=0`),
 * and on a host with warm wrappers (rpc-server/sbx_server/warm.py; default stock), runs interleaved;
 * then a lease's first command (`POST /v1/sandboxes` + `exec("true")`), the target being ≤ 2×
 * a dedicated `exec("true")`; and what one idle warm wrapper holds in memory (VmRSS, and Pss: its
 * share of the pages it has in common with other Pythons).
 *
 * Each run waits PAUSE ms before each request (every server alike): the stock refills in the
 * background, so this measures a command on a host that is not starting commands back to back.
 *
 *   npx tsx bench/host-exec.ts [--runs N]   (default 200)
 *
 * Run as root for the real thing (a uid and a Landlock ruleset per sandbox); otherwise the hosts start
 * with SBX_HOST_WEAK_ISOLATION=1 and say which isolation they had (with none, no wrapper is used).
 */
import * as fs from "node:fs"
import { type Host, sandboxToken, startHost, stopHost } from "../test/support/hostServer.js"
import { type Running, startServer, stopServer } from "../test/support/server.js"
import { ms, now, percentile } from "./support.js"

const argv = process.argv.slice(2)
const at = argv.indexOf("--runs")
const RUNS = at >= 0 ? Number(argv[at + 1]) : 200
const PAUSE = 30
const LEASES = Math.min(RUNS, 50)
const asRoot = process.platform === "linux" && process.getuid?.() === 0

const sleep = (n: number) => new Promise((resolve) => setTimeout(resolve, n))

/** POST `route` with `body` and reads the whole answer; throws unless 200. */
const post = async (server: Running, route: string, token: string, body: unknown) => {
  const res = await fetch(server.base + route, {
    method: "POST",
    headers: { "X-Sandbox-Token": token },
    body: JSON.stringify(body)
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${route}: ${res.status} ${text}`)
  return text
}

const execTrue = async (server: Running, prefix: string, token: string) => {
  const text = await post(server, `${prefix}/exec`, token, { cmd: ["true"] })
  if (!text.includes('"exit_code":0')) throw new Error(`exec true: ${text}`)
}

interface Target {
  readonly name: string
  readonly server: Running
  readonly prefix: string
  readonly token: string
}

/** A sandbox of `host`, as a target of exec. */
const lease = async (host: Host) => {
  const made = JSON.parse(await post(host, "/v1/sandboxes", host.token, {}))
  const id = made.sandboxes[0].id as string
  return { id, prefix: `/v1/sandboxes/${id}`, token: sandboxToken(host.token, id) }
}

const release = (host: Host, id: string) =>
  fetch(`${host.base}/v1/sandboxes/${id}`, { method: "DELETE", headers: { "X-Sandbox-Token": host.token } }).then((r) =>
    r.text()
  )

const wrapperMemory = (server: number) => {
  for (const name of fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8")
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== server) continue
      if (fs.readFileSync(`/proc/${name}/comm`, "utf8").trim() !== "sbx-warm") continue // warm.py TAG
      const kib = (file: string, key: string) =>
        Number(
          /\d+/.exec(
            fs
              .readFileSync(file, "utf8")
              .split("\n")
              .find((l) => l.startsWith(key)) ?? ""
          )?.[0]
        )
      return { rss: kib(`/proc/${name}/status`, "VmRSS:"), pss: kib(`/proc/${name}/smaps_rollup`, "Pss:") }
    } catch {}
  }
  return undefined
}

const summary = (name: string, samples: ReadonlyArray<number>, base: ReadonlyArray<number>) => {
  const [p50, p99] = [percentile(samples, 50), percentile(samples, 99)]
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`
  return `${name.padEnd(34)} p50 ${ms(p50).padStart(9)}  p99 ${ms(p99).padStart(9)}   ${ratio(p50, percentile(base, 50))} / ${ratio(p99, percentile(base, 99))}`
}

const main = async () => {
  const weak = !asRoot
  const dedicated = await startServer({ prefix: "sbx-bench-" })
  const cold = await startHost({ weak, env: { SBX_HOST_WARM_WRAPPERS: "0", SBX_CAPACITY: "100" } })
  const warm = await startHost({ weak, env: { SBX_CAPACITY: "100" } })
  try {
    const health = await (await fetch(`${warm.base}/health`)).json()
    const [c, w] = [await lease(cold), await lease(warm)]
    const targets: Array<Target> = [
      { name: "dedicated", server: dedicated, prefix: "/v1", token: dedicated.token },
      { name: "host, cold wrapper (0 warm)", server: cold, ...c },
      { name: "host, warm wrappers", server: warm, ...w }
    ]
    const samples = targets.map(() => [] as Array<number>)
    for (let i = 0; i < 10; i++) for (const t of targets) await execTrue(t.server, t.prefix, t.token) // warm-up
    for (let i = 0; i < RUNS; i++) {
      for (const [k, t] of targets.entries()) {
        await sleep(PAUSE)
        const t0 = now()
        await execTrue(t.server, t.prefix, t.token)
        samples[k]!.push(now() - t0)
      }
    }
    const leases = [cold, warm].map(() => [] as Array<number>)
    for (let i = 0; i < LEASES; i++) {
      for (const [k, host] of [cold, warm].entries()) {
        await sleep(PAUSE)
        const t0 = now()
        const sb = await lease(host)
        await execTrue(host, sb.prefix, sb.token)
        leases[k]!.push(now() - t0)
        await release(host, sb.id)
      }
    }
    const memory = wrapperMemory(warm.pid)
    const base = samples[0]!
    console.log(
      `exec("true"), ${RUNS} runs each, interleaved, ${PAUSE} ms apart; host isolation: ${health.isolation}; ratio to dedicated p50 / p99`
    )
    for (const [k, t] of targets.entries()) console.log(summary(t.name, samples[k]!, base))
    console.log(`lease + first exec("true"), ${LEASES} runs each (target ≤ 2× dedicated exec):`)
    console.log(summary("host, cold wrapper (0 warm)", leases[0]!, base))
    console.log(summary("host, warm wrappers", leases[1]!, base))
    console.log(
      memory === undefined
        ? "idle warm wrapper: none found (no confinement: commands start without a wrapper)"
        : `idle warm wrapper: VmRSS ${(memory.rss / 1024).toFixed(1)} MiB, Pss ${(memory.pss / 1024).toFixed(1)} MiB`
    )
  } finally {
    await Promise.all([stopServer(dedicated), stopHost(cold), stopHost(warm)])
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
