/**
 * The Hub emulator's job runner: a job's life on this machine, from SCHEDULING to its end. It spawns the
 * job's command in its own process group with the container's environment, captures stdout and stderr as
 * the job's log line by line, and moves the stage on exit, cancel or timeout, killing whatever is left in
 * the container.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import { StringDecoder } from "node:string_decoder"
import * as Duration from "effect/Duration"
import * as ProcessTree from "../processTree.js"
import { containerMembers, signalContainer } from "./container.js"
import * as Job from "./job.js"
import type { ValidSpec } from "./jobSpec.js"
import type { Settings } from "./settings.js"
import { delay } from "./util.js"
import { confine, type VolumeFiles } from "./volumes.js"

const CANCEL_GRACE_MS = 2000
const DRAIN_MS = 1000

/** `YYYY-MM-DD HH:MM:SS` in UTC, as in the `===== Job started at … =====` line. */
const startStamp = (date: Date) => date.toISOString().slice(0, 19).replace("T", " ")

const signalNumber = (sig: NodeJS.Signals) => (os.constants.signals as Record<string, number>)[sig] ?? 0

/**
 * The job's log from its stdout and stderr, line by line (a partial last line when a stream closes, or when
 * the job's flushers run); resolves when both streams have closed.
 */
const capture = (job: Job.Job, child: ChildProcess, append: (line: string) => void) => {
  let open = 0
  return new Promise<void>((resolve) => {
    const attach = (stream: NodeJS.ReadableStream | null) => {
      if (stream === null) return
      open += 1
      const decoder = new StringDecoder("utf8")
      let buffer = ""
      const flush = () => {
        buffer += decoder.end()
        if (buffer.length > 0) append(buffer)
        buffer = ""
      }
      job.flushers.push(flush)
      stream.on("data", (chunk: Buffer) => {
        buffer += decoder.write(chunk)
        let newline = buffer.indexOf("\n")
        while (newline >= 0) {
          append(buffer.slice(0, newline).replace(/\r$/, ""))
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
}

/** What a container runtime reports when the command cannot start: its log line and exit code. */
const spawnFailure = (command: string | undefined, error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return {
    line:
      code === "ENOENT"
        ? `exec: "${command}": executable file not found in $PATH`
        : `exec: "${command}": ${String((error as Error | undefined)?.message ?? error)}`,
    exitCode: code === "ENOENT" ? 127 : 126
  }
}

export interface RunnerContext extends Job.JobContext {
  readonly settings: Settings
  /** A job stopped (it ended, or was cancelled or timed out): its tunnels close. */
  readonly onStopped: (jobId: string) => void
}

export class JobRunner {
  readonly jobs = new Map<string, Job.Job>()
  seq = 0
  /** Set when the emulator shuts down: no job starts any more. */
  closed = false

  constructor(readonly ctx: RunnerContext) {}

  /** A new job in SCHEDULING, from a valid spec; it starts running after the scheduling delay. */
  async create(
    spec: ValidSpec,
    body: unknown,
    namespace: string,
    volumeFiles: ReadonlyArray<VolumeFiles> = []
  ): Promise<Job.Job> {
    const job = await Job.make(this.ctx, spec, body, namespace, () => this.seq++, volumeFiles)
    this.jobs.set(job.id, job)
    const schedulingMs =
      this.ctx.faults.schedulingDelay === undefined
        ? this.ctx.settings.schedulingDelayMs
        : Duration.toMillis(Duration.decode(this.ctx.faults.schedulingDelay))
    // A flavor with no machine free keeps its jobs in SCHEDULING until they are cancelled or time out.
    if (!this.ctx.faults.unavailableFlavors.includes(job.flavor)) Job.schedule(job, schedulingMs, () => this.run(job))
    return job
  }

  private run(job: Job.Job) {
    if (job.stage !== "SCHEDULING" || this.closed) return
    const startedAt = new Date()
    job.stage = "RUNNING"
    job.startedAt = startedAt
    job.startLine = { data: `===== Job started at ${startStamp(startedAt)} =====`, timestamp: startedAt.toISOString() }
    const [file, ...args] = confine(job.readOnlyMounts, [...job.command, ...job.arguments])
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
    const closed = capture(job, child, (line) => this.appendLog(job, line))
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
      Job.schedule(job, job.timeoutSeconds * 1000, () => this.terminate(job, "CANCELED", "timeout"))
    }
    Job.notify(job)
  }

  private spawnFailed(job: Job.Job, error: unknown) {
    if (job.processGone) return
    job.processGone = true
    job.markProcessExited()
    const failure = spawnFailure(job.command[0], error)
    this.appendLog(job, failure.line)
    this.finish(job, failure.exitCode)
  }

  private appendLog(job: Job.Job, line: string) {
    job.logs.push({ data: line, timestamp: new Date().toISOString() })
    if (job.crash) {
      job.crash = false
      this.killTree(job, "SIGKILL")
    }
    Job.notify(job)
  }

  private finish(job: Job.Job, exitCode: number) {
    Job.clearTimers(job)
    if (!Job.TERMINAL.has(job.stage)) {
      job.stage = exitCode === 0 ? "COMPLETED" : "ERROR"
      job.message = exitCode === 0 ? null : `Job failed with exit code: ${exitCode}`
    }
    job.finishedAt ??= new Date()
    this.ctx.onStopped(job.id)
    Job.notify(job)
  }

  /** Cancel or timeout: the stage changes at once, the processes get SIGTERM, then SIGKILL. */
  private terminate(job: Job.Job, stage: string, message: string | null) {
    if (Job.TERMINAL.has(job.stage)) return
    Job.clearTimers(job)
    job.stage = stage
    job.message = message
    job.finishedAt = new Date()
    this.ctx.onStopped(job.id)
    Job.notify(job)
    if (job.child !== undefined && !job.processGone) {
      this.killTree(job, "SIGTERM")
      const handle = setTimeout(() => this.killTree(job, "SIGKILL"), CANCEL_GRACE_MS)
      void job.processExited.then(() => clearTimeout(handle))
    }
  }

  /** Signals everything in the job's "container" (see {@link signalContainer}). */
  killTree(job: Job.Job, sig: NodeJS.Signals) {
    signalContainer(job, sig, this.ctx.controlUrl())
  }

  /** The processes of the container of `jobId`, or of every job of this emulator (see {@link containerMembers}). */
  private members(jobId?: string): Array<number> {
    const control = this.ctx.controlUrl()
    return control === undefined ? [] : containerMembers(control, jobId)
  }

  /** Cancel: 200 whatever the stage; a job still going stops. */
  cancel(job: Job.Job) {
    job.cancelRequests += 1
    this.terminate(job, "CANCELED", null)
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
    for (const job of jobs) Job.clearTimers(job)
    const live = jobs.filter((job) => job.child !== undefined && !job.processGone)
    const strays = () => this.members()
    for (const job of live) this.killTree(job, "SIGTERM")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGTERM")
    const exited = Promise.all(live.map((job) => job.processExited))
    // The poll of /proc stops with its wait: a process that outlives SIGKILL is not watched forever.
    const allGone = async (ms: number) => {
      const deadline = Date.now() + ms
      await Promise.race([exited, delay(ms)])
      while (Date.now() < deadline && strays().some(ProcessTree.isAlive)) await delay(25)
    }
    await allGone(CANCEL_GRACE_MS)
    for (const job of jobs) this.killTree(job, "SIGKILL")
    for (const pid of strays()) ProcessTree.signal(pid, "SIGKILL")
    await allGone(1000)
  }
}
