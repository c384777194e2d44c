/**
 * `GET /api/jobs/{ns}/{id}/metrics` as the Hub answers it (`huggingface_hub`'s `fetch_job_metrics`):
 * Server-Sent Events, one `event: metric` a second whose `data:` is a JSON sample
 * (`cpu_usage_pct`, `cpu_millicores`, `memory_used_bytes`, `memory_total_bytes`, `rx_bps`, `tx_bps`,
 * `gpus` keyed by GPU id, `replica`), with `: keep-alive` comments between. The stream does not end when
 * the job does (samples stop; keep-alives go on), and a job that has already ended is answered with a 500,
 * which clients tolerate. The samples are measured on the emulated container's process tree in /proc.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type * as http from "node:http"
import * as Effect from "effect/Effect"
import * as ProcessTree from "../processTree.js"
import { flavorOf } from "./hardware.js"
import { sendError } from "./http.js"
import { type Job, TERMINAL } from "./job.js"
import { hex } from "./util.js"

export interface MetricStreamContext {
  readonly keepAliveMs: number
  /** Time between two samples (the Hub: 1 s). */
  readonly intervalMs: number
  /** Responses held open: the emulator cuts them when it closes. */
  readonly streams: Set<http.ServerResponse>
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat's times on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100

/** CPU ticks (user + system) and resident bytes of one process, if it is still there. */
const usageOf = (pid: number): { readonly ticks: number; readonly rss: number } | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const rssKb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
    return { ticks: Number(fields[11]) + Number(fields[12]), rss: Number(rssKb ?? 0) * 1024 }
  } catch {
    return undefined
  }
}

/** The container's CPU ticks and resident bytes so far: its main process and everything below it. */
const containerUsage = (job: Job) => {
  if (job.pid === undefined || job.processGone) return { ticks: 0, rss: 0 }
  const pids = [job.pid, ...Effect.runSync(ProcessTree.descendants(job.pid))]
  let ticks = 0
  let rss = 0
  for (const pid of pids) {
    const usage = usageOf(pid)
    if (usage === undefined) continue
    ticks += usage.ticks
    rss += usage.rss
  }
  return { ticks, rss }
}

/** A stable 8-hex-digit id per GPU of the job, as the Hub keys `gpus`. */
const gpuId = (job: Job, index: number) => createHash("sha256").update(`${job.id}/${index}`).digest("hex").slice(0, 8)

/**
 * The samples of one stream. The allotment and memory total are the flavor's, as the Hub reports them
 * (it reports a little less than the flavor's nominal RAM; the emulator reports it whole), though the
 * emulated container's processes run on this machine. GPUs are the flavor's, idle (there are none to
 * measure). Network rates are 0: the emulated container shares this machine's network, so no traffic is
 * its own.
 */
const sampler = (job: Job) => {
  const flavor = flavorOf(job.flavor)
  const cpus = flavor?.cpus ?? 2
  const memoryTotal = (flavor?.ramGb ?? 16) * 2 ** 30
  const replica = hex(3).slice(0, 5)
  let last = { ...containerUsage(job), at: performance.now() }
  return () => {
    const now = { ...containerUsage(job), at: performance.now() }
    const seconds = Math.max(1e-3, (now.at - last.at) / 1000)
    const busy = Math.max(0, now.ticks - last.ticks) / CLOCK_TICKS_PER_SECOND
    last = now
    const gpus: Record<string, unknown> = {}
    for (let i = 0; i < (flavor?.gpu?.count ?? 0); i++) {
      gpus[gpuId(job, i)] = { utilization: 0, memory_used_bytes: 0, memory_total_bytes: flavor!.gpu!.vramGb * 1e9 }
    }
    return {
      cpu_usage_pct: Math.min(100, Math.round((100 * busy) / seconds / cpus)),
      cpu_millicores: cpus * 1000,
      memory_used_bytes: now.rss,
      memory_total_bytes: memoryTotal,
      rx_bps: 0,
      tx_bps: 0,
      gpus,
      replica
    }
  }
}

export const streamMetrics = (ctx: MetricStreamContext, res: http.ServerResponse, job: Job) => {
  // huggingface_hub tolerates this answer: "it returns an internal error 500 if the job has already finished".
  if (TERMINAL.has(job.stage)) return sendError(res, 500, "Internal Error")
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    "x-request-id": `Root=1-${hex(4)}-${hex(12)}`
  })
  const running = () => job.stage === "RUNNING" && job.pid !== undefined
  // A sample is a rate over the time since the previous one: the first is measured from here.
  let sample = running() ? sampler(job) : undefined
  const tick = () => {
    // No samples while the job is scheduled (no hardware yet) or once it has ended: the stream stays open.
    if (!running()) return
    if (sample === undefined) {
      sample = sampler(job)
      return
    }
    res.write(`event: metric\ndata: ${JSON.stringify(sample())}\n\n`)
  }
  const timer = setInterval(tick, ctx.intervalMs)
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), ctx.keepAliveMs)
  const cleanup = () => {
    clearInterval(timer)
    clearInterval(keepAlive)
    ctx.streams.delete(res)
  }
  ctx.streams.add(res)
  res.on("close", cleanup)
}
