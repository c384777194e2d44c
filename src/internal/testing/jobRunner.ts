/**
 * The Hub emulator's job runner: a job's life on this machine, from SCHEDULING to its end. It spawns the
 * job's command in its own process group with the container's environment, captures stdout and stderr as
 * the job's log line by line, and moves the stage on exit, cancel or timeout, killing whatever is left in
 * the container.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { StringDecoder } from "node:string_decoder"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Testing from "../../Testing.js"
import * as ProcessTree from "../processTree.js"
import { containerMembers, freePort, withoutCloudflared } from "./container.js"
import { take } from "./faults.js"
import type { ValidSpec } from "./jobSpec.js"
import { interpreterDir } from "./python.js"
import type { Releases } from "./releases.js"
import type { Settings } from "./settings.js"
import { delay, hex } from "./util.js"

const CANCEL_GRACE_MS = 2000
const DRAIN_MS = 1000
export const TERMINAL = new Set(["COMPLETED", "ERROR", "CANCELED", "DELETED"])

/** `YYYY-MM-DD HH:MM:SS` in UTC, as in the `===== Job started at … =====` line. */
const startStamp = (date: Date) => date.toISOString().slice(0, 19).replace("T", " ")

const signalNumber = (sig: NodeJS.Signals) => (os.constants.signals as Record<string, number>)[sig] ?? 0

export interface LogEntry {
  readonly data: string
  readonly timestamp: string
}

export interface Job {
  readonly id: string
  readonly seq: number
  readonly namespace: string
  readonly spec: unknown
  readonly createdAt: Date
  startedAt: Date | undefined
  finishedAt: Date | undefined
  stage: string
  message: string | null
  readonly image: { readonly dockerImage: string } | { readonly spaceId: string }
  readonly command: ReadonlyArray<string>
  readonly arguments: ReadonlyArray<string>
  readonly environment: Record<string, string>
  readonly secrets: Record<string, string>
  readonly flavor: string
  readonly labels: Record<string, string>
  readonly timeoutSeconds: number | undefined
  readonly expose: ReadonlyArray<number> | undefined
  readonly ports: ReadonlyMap<number, number>
  readonly env: Record<string, string>
  readonly dir: string
  crash: boolean
  child: ChildProcess | undefined
  pid: number | undefined
  processGone: boolean
  readonly processExited: Promise<void>
  markProcessExited: () => void
  startLine: LogEntry | undefined
  readonly logs: Array<LogEntry>
  readonly flushers: Array<() => void>
  cancelRequests: number
  readonly waiters: Set<() => void>
  readonly timers: Set<NodeJS.Timeout>
}

export interface RunnerContext {
  readonly settings: Settings
  readonly faults: Testing.Faults
  readonly releases: Releases
  readonly jobsDir: string
  /** The emulator's control URL (`…/__emulator`), once it listens. */
  readonly controlUrl: () => string | undefined
  /** A job stopped (it ended, or was cancelled or timed out): its tunnels close. */
  readonly onStopped: (jobId: string) => void
}

export class JobRunner {
  readonly jobs = new Map<string, Job>()
  seq = 0
  /** Set when the emulator shuts down: no job starts any more. */
  closed = false

  constructor(readonly ctx: RunnerContext) {}

  /** A new job in SCHEDULING, from a valid spec; it starts running after the scheduling delay. */
  async create(spec: ValidSpec, body: unknown, namespace: string): Promise<Job> {
    const id = hex(12)
    const dir = path.join(this.ctx.jobsDir, id)
    await fs.promises.mkdir(dir, { recursive: true })
    // Exposed ports share this machine: map each to a free loopback port and rewrite the variables
    // that carry it (see the module docs of Testing).
    const ports = new Map<number, number>()
    const environment = { ...spec.environment }
    for (const port of spec.expose ?? []) {
      const carriers = Object.keys(environment).filter((name) => environment[name] === String(port))
      const local = carriers.length > 0 ? await freePort() : port
      ports.set(port, local)
      for (const name of carriers) environment[name] = String(local)
    }
    const bin = await this.ctx.releases.pathDir()
    const python = await interpreterDir()
    const env: Record<string, string> = {
      // The real interpreter before any shim: see ./python.ts.
      PATH: `${bin}:${withoutCloudflared(`${python ?? ""}:${process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"}`)}`,
      HOME: dir,
      // Each container has its own /tmp: what a job writes there goes away with the job.
      TMPDIR: dir,
      LANG: "C.UTF-8",
      HF_EMULATOR_CONTROL: this.ctx.controlUrl() ?? "",
      HF_EMULATOR_JOB_ID: id,
      ...environment,
      ...spec.secrets
    }
    let markProcessExited!: () => void
    const processExited = new Promise<void>((resolve) => {
      markProcessExited = resolve
    })
    const crash = take(this.ctx.faults, "crashBeforeReady")
    const job: Job = {
      id,
      seq: this.seq++,
      namespace,
      spec: body,
      createdAt: new Date(),
      startedAt: undefined,
      finishedAt: undefined,
      stage: "SCHEDULING",
      message: null,
      image: spec.image,
      command: spec.command,
      arguments: spec.arguments,
      environment: spec.environment,
      secrets: spec.secrets,
      flavor: spec.flavor,
      labels: spec.labels,
      timeoutSeconds: spec.timeoutSeconds,
      expose: spec.expose,
      ports,
      env,
      dir,
      crash,
      child: undefined,
      pid: undefined,
      processGone: false,
      processExited,
      markProcessExited,
      startLine: undefined,
      logs: [],
      flushers: [],
      cancelRequests: 0,
      waiters: new Set(),
      timers: new Set()
    }
    this.jobs.set(id, job)
    const schedulingMs =
      this.ctx.faults.schedulingDelay === undefined
        ? this.ctx.settings.schedulingDelayMs
        : Duration.toMillis(Duration.decode(this.ctx.faults.schedulingDelay))
    this.timer(job, schedulingMs, () => this.run(job))
    return job
  }

  private timer(job: Job, ms: number, f: () => void) {
    const handle = setTimeout(() => {
      job.timers.delete(handle)
      f()
    }, ms)
    job.timers.add(handle)
  }

  private clearTimers(job: Job) {
    for (const handle of job.timers) clearTimeout(handle)
    job.timers.clear()
  }

  private notify(job: Job) {
    for (const waiter of [...job.waiters]) waiter()
  }

  private run(job: Job) {
    if (job.stage !== "SCHEDULING" || this.closed) return
    const startedAt = new Date()
    job.stage = "RUNNING"
    job.startedAt = startedAt
    job.startLine = { data: `===== Job started at ${startStamp(startedAt)} =====`, timestamp: startedAt.toISOString() }
    const [file, ...args] = [...job.command, ...job.arguments]
    let child: ChildProcess
    try {
      child = spawn(file!, args, {
        cwd: job.dir,
        env: job.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
    } catch (error) {
      this.spawnFailed(job, error)
      return
    }
    job.child = child
    job.pid = child.pid
    let open = 0
    const closed = new Promise<void>((resolve) => {
      const attach = (stream: NodeJS.ReadableStream | null) => {
        if (stream === null) return
        open += 1
        const decoder = new StringDecoder("utf8")
        let buffer = ""
        const flush = () => {
          buffer += decoder.end()
          if (buffer.length > 0) this.appendLog(job, buffer)
          buffer = ""
        }
        job.flushers.push(flush)
        stream.on("data", (chunk: Buffer) => {
          buffer += decoder.write(chunk)
          let newline = buffer.indexOf("\n")
          while (newline >= 0) {
            this.appendLog(job, buffer.slice(0, newline).replace(/\r$/, ""))
            buffer = buffer.slice(newline + 1)
            newline = buffer.indexOf("\n")
          }
        })
        stream.on("close", () => {
          flush()
          open -= 1
          if (open === 0) resolve()
        })
      }
      attach(child.stdout)
      attach(child.stderr)
      if (open === 0) resolve()
    })
    child.once("error", (error) => {
      if (job.pid === undefined) this.spawnFailed(job, error)
    })
    child.once("exit", (code, sig) => {
      if (job.pid === undefined) return
      job.processGone = true
      job.markProcessExited()
      // The container stops with its main process: whatever else ran in it dies too.
      this.killTree(job, "SIGKILL")
      void Promise.race([closed, delay(DRAIN_MS)]).then(() => {
        for (const flush of job.flushers) flush()
        const exitCode = code ?? (sig === null ? 1 : 128 + signalNumber(sig))
        this.finish(job, exitCode)
      })
    })
    if (job.timeoutSeconds !== undefined) {
      this.timer(job, job.timeoutSeconds * 1000, () => this.terminate(job, "CANCELED", "timeout"))
    }
    this.notify(job)
  }

  private spawnFailed(job: Job, error: unknown) {
    if (job.processGone) return
    job.processGone = true
    job.markProcessExited()
    const code = (error as NodeJS.ErrnoException | undefined)?.code
    this.appendLog(
      job,
      code === "ENOENT"
        ? `exec: "${job.command[0]}": executable file not found in $PATH`
        : `exec: "${job.command[0]}": ${String((error as Error | undefined)?.message ?? error)}`
    )
    this.finish(job, code === "ENOENT" ? 127 : 126)
  }

  private appendLog(job: Job, line: string) {
    job.logs.push({ data: line, timestamp: new Date().toISOString() })
    if (job.crash) {
      job.crash = false
      this.killTree(job, "SIGKILL")
    }
    this.notify(job)
  }

  private finish(job: Job, exitCode: number) {
    this.clearTimers(job)
    if (!TERMINAL.has(job.stage)) {
      job.stage = exitCode === 0 ? "COMPLETED" : "ERROR"
      job.message = exitCode === 0 ? null : `Job failed with exit code: ${exitCode}`
    }
    job.finishedAt ??= new Date()
    this.ctx.onStopped(job.id)
    this.notify(job)
  }

  /** Cancel or timeout: the stage changes at once, the processes get SIGTERM, then SIGKILL. */
  private terminate(job: Job, stage: string, message: string | null) {
    if (TERMINAL.has(job.stage)) return
    this.clearTimers(job)
    job.stage = stage
    job.message = message
    job.finishedAt = new Date()
    this.ctx.onStopped(job.id)
    this.notify(job)
    if (job.child !== undefined && !job.processGone) {
      this.killTree(job, "SIGTERM")
      const handle = setTimeout(() => this.killTree(job, "SIGKILL"), CANCEL_GRACE_MS)
      void job.processExited.then(() => clearTimeout(handle))
    }
  }

  /** Signals everything in the job's "container": its process group, descendants and escaped members. */
  killTree(job: Job, sig: NodeJS.Signals) {
    const pid = job.pid
    if (pid === undefined) return
    const family = job.processGone ? [] : Effect.runSync(ProcessTree.descendants(pid))
    ProcessTree.signal(-pid, sig)
    if (!job.processGone) ProcessTree.signal(pid, sig)
    for (const member of [...family, ...this.members(job.id)]) ProcessTree.signal(member, sig)
  }

  /** The processes of the container of `jobId`, or of every job of this emulator (see {@link containerMembers}). */
  private members(jobId?: string): Array<number> {
    const control = this.ctx.controlUrl()
    return control === undefined ? [] : containerMembers(control, jobId)
  }

  /** Cancel: 200 whatever the stage; a job still going stops. */
  cancel(job: Job) {
    job.cancelRequests += 1
    this.terminate(job, "CANCELED", null)
  }

  record(job: Job): Testing.JobRecord {
    return {
      id: job.id,
      namespace: job.namespace,
      spec: job.spec,
      stage: job.stage,
      message: job.message,
      pid: job.pid,
      cancelRequests: job.cancelRequests,
      logs: job.logs.map((entry) => entry.data),
      environment: { ...job.env },
      secrets: { ...job.secrets },
      workdir: job.dir,
      ports: Object.fromEntries([...job.ports].map(([p, l]) => [String(p), l]))
    }
  }

  killJob(id: string) {
    const job = this.jobs.get(id)
    if (job !== undefined) this.killTree(job, "SIGKILL")
  }

  /** The running job's timeout comes due now, by the same path as its timer (see HubEmulator.expireTimeout). */
  expireTimeout(id: string): boolean {
    const job = this.jobs.get(id)
    if (job === undefined || job.timeoutSeconds === undefined || job.stage !== "RUNNING") return false
    this.terminate(job, "CANCELED", "timeout")
    return true
  }

  /** Last resort if the test process exits without releasing the emulator: no job outlives it. */
  killAll() {
    for (const job of this.jobs.values()) this.killTree(job, "SIGKILL")
    for (const pid of this.members()) ProcessTree.signal(pid, "SIGKILL")
  }

  /** Stops every job: SIGTERM to the containers, SIGKILL to what is left after the grace period; bounded. */
  async stop() {
    this.closed = true
    const jobs = [...this.jobs.values()]
    for (const job of jobs) this.clearTimers(job)
    const live = jobs.filter((job) => job.child !== undefined && !job.processGone)
    const strays = () => this.members()
    for (const job of live) this.killTree(job, "SIGTERM")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGTERM")
    const exited = Promise.all(live.map((job) => job.processExited))
    const allGone = async () => {
      await exited
      while (strays().some(ProcessTree.isAlive)) await delay(25)
    }
    await Promise.race([allGone(), delay(CANCEL_GRACE_MS)])
    for (const job of jobs) this.killTree(job, "SIGKILL")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGKILL")
    await Promise.race([allGone(), delay(1000)])
  }
}
