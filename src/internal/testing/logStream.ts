/**
 * `GET /api/jobs/{ns}/{id}/logs` as the Hub answers it: Server-Sent Events, each log entry as
 * `data: {"data","timestamp"}`, replayed from the start (or the last `?tail=N`) on every request, then live
 * until the job ends, with `: keep-alive` comments between; the fault knobs delay, silence or cut it.
 */
import type * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { take } from "./faults.js"
import { type Job, type LogEntry, TERMINAL } from "./job.js"
import { delay, hex } from "./util.js"

export interface LogStreamContext {
  readonly faults: Testing.Faults
  readonly keepAliveMs: number
  /** Responses held open: the emulator cuts them when it closes. */
  readonly streams: Set<http.ServerResponse>
  /** Whether the emulator is closing. */
  readonly closed: () => boolean
}

export const streamLogs = async (ctx: LogStreamContext, res: http.ServerResponse, url: URL, job: Job) => {
  if (ctx.faults.logFirstByteDelayMs > 0) {
    ctx.streams.add(res)
    await delay(ctx.faults.logFirstByteDelayMs)
    ctx.streams.delete(res)
    if (res.destroyed || ctx.closed()) return
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
  const silent = job.stage === "RUNNING" && take(ctx.faults, "silentLogStreams")
  const cut = !silent && take(ctx.faults, "cutLogStreams")
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
  }, ctx.keepAliveMs)
  const cleanup = () => {
    done = true
    clearInterval(keepAlive)
    job.waiters.delete(pump)
    ctx.streams.delete(res)
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
  ctx.streams.add(res)
  job.waiters.add(pump)
  res.on("close", cleanup)
  send(job.startLine)
  pump()
}
