/**
 * What makes a job's processes an emulated container on this machine: the PATH it gets, the loopback
 * ports its exposed ports map to, and the processes that belong to it.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as ProcessTree from "../processTree.js"
import type { Job } from "./job.js"

/**
 * This machine's PATH without the directories that hold a `cloudflared`: a job's container has only the
 * cloudflared the emulator puts there (`faults.cloudflaredOnPath`), never the test machine's own.
 */
export const withoutCloudflared = (PATH: string) =>
  PATH.split(path.delimiter)
    .filter((dir) => dir !== "" && !fs.existsSync(path.join(dir, "cloudflared")))
    .join(path.delimiter)

/**
 * A free loopback port for an exposed job port. Ports come from a range below the kernel's ephemeral
 * range (32768+ on Linux), handed out in turn, so a mapped port is never also picked by a `--port 0`
 * server or a cloudflared metrics port between our probe and the job's bind.
 */
const EXPOSED_PORTS = { first: 20000, count: 10000 }
// Each process starts at its own place in the range: test files run side by side (and several suites on
// one machine), and two emulators handing out the same ports in the same order could both find a port
// free before either job has bound it, so that one job's requests would reach the other's server.
let nextExposed = Math.floor(Math.random() * EXPOSED_PORTS.count)
const probe = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })
export const freePort = async (): Promise<number> => {
  for (let tries = 0; tries < EXPOSED_PORTS.count; tries++) {
    const port = EXPOSED_PORTS.first + (nextExposed++ % EXPOSED_PORTS.count)
    if (await probe(port)) return port
  }
  throw new Error("no free port for an exposed job port")
}

/**
 * The processes of an emulated container: every process whose initial environment carries this
 * emulator's control URL (and, if given, the job id). This finds what left the job's process group
 * (setsid, start_new_session) and was re-parented, as a container's cgroup would. Linux only; elsewhere
 * the process-group kill is all there is.
 */
export const containerMembers = (control: string, jobId?: string): Array<number> => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  const controlVar = `\0HF_EMULATOR_CONTROL=${control}\0`
  const jobVar = jobId === undefined ? undefined : `\0HF_EMULATOR_JOB_ID=${jobId}\0`
  const found: Array<number> = []
  for (const name of entries) {
    const pid = Number(name)
    if (pid === process.pid) continue
    let environ: string
    try {
      environ = `\0${fs.readFileSync(`/proc/${name}/environ`, "latin1")}\0`
    } catch {
      continue
    }
    if (environ.includes(controlVar) && (jobVar === undefined || environ.includes(jobVar))) found.push(pid)
  }
  return found
}

/**
 * Signals everything in a job's "container": its process group, descendants and escaped members (those
 * found by the emulator's `control` URL, once it listens).
 */
export const signalContainer = (job: Job, sig: NodeJS.Signals, control: string | undefined) => {
  const pid = job.pid
  if (pid === undefined) return
  const family = job.processGone ? [] : Effect.runSync(ProcessTree.descendants(pid))
  ProcessTree.signal(-pid, sig)
  if (!job.processGone) ProcessTree.signal(pid, sig)
  const members = control === undefined ? [] : containerMembers(control, job.id)
  for (const member of [...family, ...members]) ProcessTree.signal(member, sig)
}
