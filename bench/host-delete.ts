/**
 * What deleting pooled sandboxes costs when many are deleted at once (issue 15: a lease's release at
 * 1,000 sandboxes): HOSTS host servers with PER sandboxes each, one `exec("true")` run in every sandbox
 * (as a lease's command), then every sandbox deleted at once (`DELETE /v1/sandboxes/{id}`, all hosts
 * together): wall time and p50/p99 per delete. A delete kills the sandbox's processes by uid until none is
 * left, with a scan of /proc that deletes at once share (proctree.FreshScan), and removes its home.
 *
 *   npx tsx bench/host-delete.ts [--per 50] [--hosts 4]
 *
 * Run as root for the real thing (a uid per sandbox); otherwise the hosts start with
 * SBX_HOST_WEAK_ISOLATION=1. Benchmarks print figures; nothing passes or fails on speed.
 */
import * as fs from "node:fs"
import { createOne, exec, json, startHost, stopHost } from "../test/support/hostServer.js"
import { percentile } from "./support.js"

const argv = process.argv.slice(2)
const arg = (name: string, fallback: number) => {
  const at = argv.indexOf(`--${name}`)
  return at >= 0 ? Number(argv[at + 1]) : fallback
}
const PER = arg("per", 50)
const HOSTS = arg("hosts", 4)

const hosts = await Promise.all(Array.from({ length: HOSTS }, () => startHost({ env: { SBX_CAPACITY: String(PER) } })))
try {
  const leased = await Promise.all(
    hosts.map(async (host) => {
      const sandboxes = await Promise.all(Array.from({ length: PER }, () => createOne(host)))
      await Promise.all(sandboxes.map((sb) => exec(host, sb, "true")))
      return sandboxes.map((sb) => ({ host, sb }))
    })
  )
  const processes = fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).length
  const times: Array<number> = []
  const t0 = performance.now()
  await Promise.all(
    leased.flat().map(async ({ host, sb }) => {
      const t = performance.now()
      const answer = await json(host, `/v1/sandboxes/${sb.id}`, host.token, { method: "DELETE" })
      if (answer.status !== 200) throw new Error(`delete ${sb.id}: HTTP ${answer.status}`)
      times.push(performance.now() - t)
    })
  )
  const wall = performance.now() - t0
  const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
  console.log(`${HOSTS} hosts x ${PER} sandboxes deleted at once; ${processes} processes on the machine; load ${load}`)
  console.log(
    `  wall ${wall.toFixed(0)} ms; per delete p50 ${percentile(times, 50).toFixed(0)} ms, p99 ${percentile(times, 99).toFixed(0)} ms`
  )
} finally {
  await Promise.all(hosts.map(stopHost))
}
