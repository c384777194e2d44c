/**
 * A job of the Hub emulator: its state from creation to its end, how it is made from a valid spec, and how
 * it is shown (the Hub's JobInfo, the tests' JobRecord).
 */
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type * as Testing from "../../Testing.js"
import { type Accounts, owner } from "./accounts.js"
import { freePort, withoutCloudflared } from "./container.js"
import { take } from "./faults.js"
import type { ValidSpec } from "./jobSpec.js"
import { interpreterDir } from "./python.js"
import type { Releases } from "./releases.js"
import { hex } from "./util.js"
import * as Volumes from "./volumes.js"

export const TERMINAL = new Set(["COMPLETED", "ERROR", "CANCELED", "DELETED"])

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
  readonly volumes: ReadonlyArray<Volumes.EmulatedVolume>
  readonly ssh: boolean
  /** Each volume's mount path with the directory that stands in for it (see ./volumes.ts). */
  readonly mounts: Record<string, string>
  /** The directories its command must see read-only (see ./volumes.ts `confine`). */
  readonly readOnlyMounts: ReadonlyArray<string>
}

/** What making a job needs from the emulator. */
export interface JobContext {
  readonly faults: Testing.Faults
  readonly releases: Releases
  readonly jobsDir: string
  /** The emulator's control URL (`…/__emulator`), once it listens. */
  readonly controlUrl: () => string | undefined
}

/**
 * Creation times strictly increase, one millisecond at least apart: the Hub orders jobs by them, and
 * `Sandbox.getOrCreate`'s racing creators agree on a winner by them (two in one millisecond would tie).
 */
let lastCreatedMs = 0
const nextCreatedAt = (): Date => {
  lastCreatedMs = Math.max(Date.now(), lastCreatedMs + 1)
  return new Date(lastCreatedMs)
}

/** A new job in SCHEDULING from a valid spec, with its directory and its container's environment. */
export const make = async (
  ctx: JobContext,
  spec: ValidSpec,
  body: unknown,
  namespace: string,
  nextSeq: () => number,
  volumeFiles: ReadonlyArray<Volumes.VolumeFiles> = []
): Promise<Job> => {
  const id = hex(12)
  const dir = path.join(ctx.jobsDir, id)
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
  const volumeRoot = path.join(dir, "volumes")
  const mounts = await Volumes.mount(volumeRoot, spec.volumes, volumeFiles)
  const bin = await ctx.releases.pathDir()
  const python = await interpreterDir()
  const env: Record<string, string> = {
    // The real interpreter before any shim: see ./python.ts.
    PATH: `${bin}:${withoutCloudflared(`${python ?? ""}:${process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"}`)}`,
    HOME: dir,
    // Each container has its own /tmp: what a job writes there goes away with the job.
    TMPDIR: dir,
    // A pool host's sandboxes live in its container's own /sbx/homes (a job may set its own).
    ...(spec.environment.SBX_HOST_MODE !== undefined ? { SBX_HOMES_DIR: path.join(dir, "sbx-homes") } : {}),
    LANG: "C.UTF-8",
    HF_EMULATOR_CONTROL: ctx.controlUrl() ?? "",
    HF_EMULATOR_JOB_ID: id,
    ...(spec.volumes.length > 0 ? { HF_EMULATOR_VOLUMES: volumeRoot } : {}),
    ...environment,
    ...spec.secrets
  }
  let markProcessExited!: () => void
  const processExited = new Promise<void>((resolve) => {
    markProcessExited = resolve
  })
  const crash = take(ctx.faults, "crashBeforeReady")
  const job: Job = {
    id,
    seq: nextSeq(),
    namespace,
    spec: body,
    createdAt: nextCreatedAt(),
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
    timers: new Set(),
    volumes: spec.volumes,
    ssh: spec.ssh,
    mounts: mounts.dirs,
    readOnlyMounts: mounts.readOnly
  }
  return job
}

/** Runs `f` after `ms` unless the job's timers are cleared first. */
export const schedule = (job: Job, ms: number, f: () => void) => {
  const handle = setTimeout(() => {
    job.timers.delete(handle)
    f()
  }, ms)
  job.timers.add(handle)
}

/** Cancels the job's pending timers (scheduling, timeout). */
export const clearTimers = (job: Job) => {
  for (const handle of job.timers) clearTimeout(handle)
  job.timers.clear()
}

/** Wakes whoever waits on the job (its log streams). */
export const notify = (job: Job) => {
  for (const waiter of [...job.waiters]) waiter()
}

/** What a test sees of a job (`HubEmulator.jobs`). */
export const record = (job: Job): Testing.JobRecord => {
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
    ports: Object.fromEntries([...job.ports].map(([p, l]) => [String(p), l])),
    mounts: { ...job.mounts }
  }
}

/** The Hub's JobInfo of a job. */
export const info = (job: Job, accounts: Accounts) => {
  const now = Date.now()
  const end = job.finishedAt?.getTime() ?? now
  const started = job.startedAt?.getTime()
  return {
    id: job.id,
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    ...job.image,
    command: job.command,
    arguments: job.arguments,
    environment: job.environment,
    secrets: Object.keys(job.secrets),
    flavor: job.flavor,
    labels: job.labels,
    ...(job.timeoutSeconds === undefined ? {} : { timeoutSeconds: job.timeoutSeconds }),
    ...(job.volumes.length === 0 ? {} : { volumes: job.volumes }),
    status: {
      stage: job.stage,
      message: job.message,
      ...(job.expose === undefined
        ? {}
        : { exposeUrls: job.expose.map((port) => `https://${job.id}--${port}.hf.jobs`) }),
      ...(job.ssh ? { sshUrl: Volumes.sshUrl(job.id) } : {})
    },
    durations: {
      schedulingSecs: Math.round(((started ?? end) - job.createdAt.getTime()) / 1000),
      runningSecs: started === undefined ? 0 : Math.round((end - started) / 1000),
      totalSecs: Math.round((end - job.createdAt.getTime()) / 1000)
    },
    owner: owner(accounts, job.namespace),
    initiator: { type: "user", id: accounts.userId, name: accounts.user }
  }
}
