/**
 * `SandboxPool` figures (issue 15 §3), on the local provider and on HF Jobs through the Hub emulator
 * with `Testing.realistic` scheduling (a 2 s scheduling delay per job, log and tunnel delays):
 *
 * 1. a lease on a warm host: `SandboxPool.make` → the result of its first `exec("true")`, p50/p99 over
 *    LEASES sequential leases, split into the lease (make) and the first exec, as a ratio to
 *    `exec("true")` on a dedicated sandbox (`Sandbox.make`) of the same provider in the same run
 *    (target ≤ 2×);
 * 2. N sandboxes (default 100 and 1,000) leased through one pool of 50 per host, each running `echo hi`,
 *    then released, all at once (`Effect.forEach(range(N), task, { concurrency: N })`): wall time, p50/p99
 *    per sandbox (lease → result → release), the client's memory and each host server's RSS; with the
 *    hosts pre-warmed (`warmUp` = hosts needed), and for 100 also booted on demand (`warmUp: 0`);
 * 3. after each pool's scope closes, how many of its hosts' processes are still alive (should be 0).
 *
 *   npx tsx bench/pool.ts [--provider local|emulator] [--sizes 100,1000] [--leases 100] [--concurrency N]
 *     [--per-host 50]    (--leases 0 skips part 1)
 *
 * (`--sizes 0`: part 1 only; `--leases 0`: part 2 only.)
 *
 * Benchmarks print figures; nothing passes or fails on speed. Run as root for the real isolation (a uid
 * and a Landlock ruleset per sandbox); otherwise the pools are made with `weakIsolation`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxPool from "hf-sandbox/SandboxPool"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Testing from "hf-sandbox/testing"
import { emulatedHfJobs, Live, ms, now, percentile } from "./support.js"

const argv = process.argv.slice(2)
const arg = (name: string) => {
  const at = argv.indexOf(`--${name}`)
  return at >= 0 ? argv[at + 1] : undefined
}
const PROVIDERS = (arg("provider") ?? "local,emulator").split(",")
/** `--sizes 0` runs part 1 only. */
const SIZES = (arg("sizes") ?? "100,1000")
  .split(",")
  .map(Number)
  .filter((n) => n > 0)
const LEASES = Number(arg("leases") ?? 100)
/** Leases in flight at once in part 2; default: all of them. */
const CONCURRENCY = arg("concurrency") === undefined ? undefined : Number(arg("concurrency"))
/** Sandboxes per host in part 2 (default 50, as HF's figures); fewer hosts make a smaller reproduction of a burst. */
const PER_HOST = Number(arg("per-host") ?? 50)
const weakIsolation = process.getuid?.() !== 0

type Env = SandboxProvider.SandboxProvider | HttpClient.HttpClient

/** A provider under test: its services, and the pids of a host's server and of everything it started. */
interface Target {
  readonly name: string
  readonly context: Layer.Layer<Env>
  /** Options of every sandbox and host it starts. */
  readonly options: { readonly transport?: "proxy" }
  /** The host server's pid (for its RSS). */
  readonly serverPid: (host: SandboxPool.HostInfo) => Effect.Effect<number | undefined>
  /** Every pid of the host that must be gone once the pool closed. */
  readonly pids: (host: SandboxPool.HostInfo) => Effect.Effect<ReadonlyArray<number>>
}

// ---------------------------------------------------------------------------------------------------
// /proc

const statusKiB = (pid: number, field: string): number | undefined => {
  try {
    const line = fs
      .readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith(`${field}:`))
    return line === undefined ? undefined : Number(line.split(/\s+/)[1])
  } catch {
    return undefined
  }
}

/** CPU seconds of a process and of its reaped children (utime, stime, cutime, cstime), in clock ticks of 10 ms. */
const cpuSeconds = (pid: number): number => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0) / 100
  } catch {
    return 0
  }
}

/** pid, state, parent and process group of every process, from /proc/<pid>/stat. */
const processes = () =>
  fs.readdirSync("/proc").flatMap((entry) => {
    if (!/^\d+$/.test(entry)) return []
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return [{ pid: Number(entry), state: state!, ppid: Number(ppid), pgrp: Number(pgrp) }]
    } catch {
      return []
    }
  })

const cmdline = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")
  } catch {
    return ""
  }
}

/** Alive and not a zombie. */
const alive = (pid: number) => {
  const state = processes().find((p) => p.pid === pid)?.state
  return state !== undefined && state !== "Z" && state !== "X"
}

/** The host server of an emulated job: the `sbx_server` process of its process group whose parent is not one. */
const serverInGroup = (pgid: number): number | undefined => {
  const group = processes().filter((p) => p.pgrp === pgid && cmdline(p.pid).includes("sbx_server"))
  const pids = new Set(group.map((p) => p.pid))
  return group.find((p) => !pids.has(p.ppid))?.pid
}

// ---------------------------------------------------------------------------------------------------
// Providers

const local: Target = {
  name: "local",
  context: Live,
  options: {},
  serverPid: (host) => Effect.succeed(host.details.serverPid as number | undefined),
  pids: (host) =>
    Effect.succeed([host.details.pid, host.details.serverPid].filter((pid): pid is number => typeof pid === "number"))
}

const emulated = (emulator: Testing.HubEmulator): Target => {
  const pgidOf = (host: SandboxPool.HostInfo) => Effect.map(emulator.job(host.id), (job) => job?.pid)
  return {
    name: "HF Jobs on the emulator (Testing.realistic, transport proxy)",
    context: emulatedHfJobs(emulator),
    // HF's SandboxPool reaches its hosts through the Jobs proxy; `Testing.realistic` has no cloudflared on
    // the jobs' PATH, and its download has no network here.
    options: { transport: "proxy" },
    serverPid: (host) => Effect.map(pgidOf(host), (pgid) => (pgid === undefined ? undefined : serverInGroup(pgid))),
    // The job's whole process group: what its container would hold.
    pids: (host) =>
      Effect.map(pgidOf(host), (pgid) =>
        pgid === undefined ? [] : [pgid, ...processes().flatMap((p) => (p.pgrp === pgid ? [p.pid] : []))]
      )
  }
}

// ---------------------------------------------------------------------------------------------------
// Pieces

const row = (name: string, samples: ReadonlyArray<number>, base?: { p50: number; p90: number; p99: number }) => {
  const at = (p: 50 | 90 | 99) => percentile(samples, p)
  const ratios =
    base === undefined
      ? ""
      : `  ${(at(50) / base.p50).toFixed(2)}x / ${(at(90) / base.p90).toFixed(2)}x / ${(at(99) / base.p99).toFixed(2)}x`
  console.log(
    `  ${name.padEnd(40)} p50 ${ms(at(50)).padStart(11)}  p90 ${ms(at(90)).padStart(11)}  p99 ${ms(at(99)).padStart(11)}${ratios}`
  )
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** Time of an effect, pushed onto `into`. */
const timed = <A, E, R>(into: Array<number>, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const t0 = now()
    const a = yield* effect
    into.push(now() - t0)
    return a
  })

const checkEcho = (result: Sandbox.ExecResult) =>
  result.stdout === "hi\n" && result.exitCode === 0
    ? Effect.void
    : Effect.dieMessage(`echo hi gave exit ${result.exitCode}, stdout ${JSON.stringify(result.stdout)}`)

/**
 * After the pool's scope closed: how many of its hosts' pids are still alive, waiting up to 10 s for
 * processes that are on their way out.
 */
const leftovers = (pids: ReadonlyArray<number>) =>
  Effect.suspend(() => {
    const left = pids.filter(alive)
    return left.length === 0 ? Effect.succeed(left) : Effect.fail(left)
  }).pipe(Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo("10 seconds"))), Effect.merge)

/** The pool's hosts, and every pid of theirs, recorded so that they can be checked once the pool closed. */
const recordHosts = (target: Target, pool: SandboxPool.SandboxPool, into: Set<number>) =>
  Effect.gen(function* () {
    const hosts = yield* pool.hosts
    for (const host of hosts) for (const pid of yield* target.pids(host)) into.add(pid)
    return hosts
  })

const reportLeftovers = (pids: Set<number>) =>
  Effect.map(leftovers([...pids]), (left) =>
    console.log(
      `  cleanup: ${left.length} of ${pids.size} host pids alive after the pool's scope closed${
        left.length === 0 ? "" : ` (${left.join(", ")})`
      }`
    )
  )

// ---------------------------------------------------------------------------------------------------
// 1. A lease on a warm host

const ROUNDS = 10

const warmLease = (target: Target) =>
  Effect.gen(function* () {
    const dedicated = yield* Sandbox.make(target.options)
    const pool = yield* SandboxPool.SandboxPool
    const pids = new Set<number>()
    yield* recordHosts(target, pool, pids)
    const baseline: Array<number> = []
    const lease: Array<number> = []
    const first: Array<number> = []
    const total: Array<number> = []
    const second: Array<number> = []
    const release: Array<number> = []
    const oneLease = Effect.scoped(
      Effect.gen(function* () {
        const t0 = now()
        const sb = yield* SandboxPool.make()
        const t1 = now()
        yield* sb.exec("true")
        const t2 = now()
        yield* timed(second, sb.exec("true"))
        lease.push(t1 - t0)
        first.push(t2 - t1)
        total.push(t2 - t0)
        return now()
      })
    ).pipe(Effect.flatMap((at) => Effect.sync(() => release.push(now() - at))))
    // Warm-up of both paths (JIT, connections), then interleaved rounds so the shared machine's noise
    // hits both series alike.
    for (let i = 0; i < 10; i++) yield* Effect.zip(dedicated.exec("true"), oneLease)
    lease.length = first.length = total.length = second.length = release.length = 0
    const per = Math.ceil(LEASES / ROUNDS)
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < per; i++) yield* timed(baseline, dedicated.exec("true"))
      for (let i = 0; i < per; i++) yield* oneLease
    }
    const base = { p50: percentile(baseline, 50), p90: percentile(baseline, 90), p99: percentile(baseline, 99) }
    const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
    console.log(
      `1. lease on a warm host, ${total.length} sequential leases (ratios p50 / p90 / p99 to the dedicated exec's; load ${load})`
    )
    row('dedicated sb.exec("true") [baseline]', baseline, base)
    row("SandboxPool.make (lease alone)", lease, base)
    row('first sb.exec("true") of the lease', first, base)
    row("make -> first result", total, base)
    row('second sb.exec("true") of the lease', second, base)
    row("release (the lease's scope closing)", release, base)
    console.log(
      `  target: make -> first result p50 <= 2.00x baseline -> ${(percentile(total, 50) / base.p50).toFixed(2)}x (p90 ${(percentile(total, 90) / base.p90).toFixed(2)}x)`
    )
    return pids
  }).pipe(
    Effect.scoped,
    Effect.provide(
      SandboxPool.layer({ ...target.options, name: "bench-warm", sandboxesPerHost: PER_HOST, warmUp: 1, weakIsolation })
    ),
    Effect.flatMap(reportLeftovers)
  )

// ---------------------------------------------------------------------------------------------------
// 2. N sandboxes through one pool

/** Peaks of the client's RSS and of each host server's RSS, sampled every 100 ms while `effect` runs. */
const sampling = <A, E, R>(serverPids: ReadonlyArray<number>, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const peaks = { client: process.memoryUsage().rss, servers: serverPids.map((pid) => statusKiB(pid, "VmRSS") ?? 0) }
    const sample = Effect.sync(() => {
      peaks.client = Math.max(peaks.client, process.memoryUsage().rss)
      serverPids.forEach((pid, i) => {
        peaks.servers[i] = Math.max(peaks.servers[i]!, statusKiB(pid, "VmRSS") ?? 0)
      })
    })
    const sampler = yield* Effect.fork(Effect.repeat(sample, Schedule.spaced("100 millis")))
    const a = yield* effect
    yield* sample
    yield* Fiber.interrupt(sampler)
    return { a, peaks }
  })

/** The causes of an error, outermost first: tag or name, message, and a Node error's code. */
const causeChain = (error: unknown): Array<string> => {
  const out: Array<string> = []
  let at: unknown = error
  for (let depth = 0; at !== undefined && at !== null && depth < 8; depth++) {
    const e = at as { _tag?: string; name?: string; message?: string; code?: string; cause?: unknown }
    out.push(
      `${e._tag ?? e.name ?? typeof at}${e.code === undefined ? "" : ` ${e.code}`}: ${(e.message ?? String(at)).split("\n")[0]}`
    )
    at = e.cause
  }
  return out
}

/** Failures grouped by their host and by their chain of causes, with the time of the first. */
const reportFailures = (failures: ReadonlyArray<{ readonly at: number; readonly cause: Cause.Cause<unknown> }>) => {
  const groups = new Map<string, { count: number; first: number }>()
  for (const { at, cause } of failures) {
    const error = Cause.squash(cause) as { host?: string }
    const key = `host ${error.host ?? "?"}: ${causeChain(error).join(" <- ")}`
    const group = groups.get(key) ?? { count: 0, first: at }
    group.count += 1
    group.first = Math.min(group.first, at)
    groups.set(key, group)
  }
  for (const [key, { count, first }] of groups) {
    console.log(`  ${count} failed, first at ${(first / 1000).toFixed(2)} s: ${key}`)
  }
}

const kib = (n: number) => `${(n / 1024).toFixed(1)}`

const fanOut = (target: Target, n: number, warm: boolean) =>
  Effect.gen(function* () {
    const pool = yield* SandboxPool.SandboxPool
    const pids = new Set<number>()
    const warmHosts = yield* recordHosts(target, pool, pids)
    const serverPids = (yield* Effect.forEach(warmHosts, target.serverPid)).filter((p): p is number => p !== undefined)
    const idle = serverPids.map((pid) => statusKiB(pid, "VmRSS") ?? 0)
    const before = process.memoryUsage()
    const cpuBefore = { client: process.cpuUsage(), hosts: serverPids.map(cpuSeconds) }
    const latency: Array<number> = []
    const failures: Array<{ readonly at: number; readonly cause: Cause.Cause<unknown> }> = []
    const phases = { make: [] as Array<number>, exec: [] as Array<number>, release: [] as Array<number> }
    // The release is the lease's scope closing: timed from the result to the scope's end.
    const oneSandbox = Effect.scoped(
      Effect.gen(function* () {
        const sb = yield* timed(phases.make, SandboxPool.make())
        yield* checkEcho(yield* timed(phases.exec, sb.exec("echo hi")))
        return now()
      })
    )
    const task = (_: number) =>
      timed(
        latency,
        Effect.flatMap(oneSandbox, (at) => Effect.sync(() => phases.release.push(now() - at)))
      ).pipe(Effect.catchAllCause((cause) => Effect.sync(() => failures.push({ at: now() - t0, cause }))))
    const t0 = now()
    const { peaks } = yield* sampling(
      serverPids,
      Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        task,
        { concurrency: CONCURRENCY ?? n, discard: true }
      )
    )
    const wall = now() - t0
    const after = process.memoryUsage()
    const cpu = process.cpuUsage(cpuBefore.client)
    const hostsCpu = serverPids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - cpuBefore.hosts[i]!, 0)
    const hosts = yield* recordHosts(target, pool, pids)
    console.log(
      `  wall ${(wall / 1000).toFixed(2)} s, ${latency.length} ok, ${failures.length} failed, ${hosts.length} hosts at the end`
    )
    if (failures.length > 0) reportFailures(failures)
    row("per sandbox: lease -> result -> release", latency)
    row("  of which SandboxPool.make", phases.make)
    row('  of which sb.exec("echo hi")', phases.exec)
    row("  of which the release (scope close)", phases.release)
    console.log(
      `  client: rss ${MiB(before.rss)} -> ${MiB(after.rss)} (peak ${MiB(peaks.client)}), heapUsed ${MiB(before.heapUsed)} -> ${MiB(after.heapUsed)}`
    )
    if (serverPids.length > 0) {
      console.log(
        `  CPU during the run: client ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s, host servers and their commands ${hostsCpu.toFixed(1)} s (of ${((wall / 1000) * os.cpus().length).toFixed(1)} core-seconds)`
      )
      console.log(`  host servers' VmRSS, MiB, idle -> peak during the run (${serverPids.length} pre-warmed hosts):`)
      console.log(`    ${serverPids.map((_, i) => `${kib(idle[i]!)}->${kib(peaks.servers[i]!)}`).join("  ")}`)
    }
    if (!warm) {
      const now = yield* Effect.forEach(hosts, target.serverPid)
      console.log(
        `  host servers' VmRSS after the run, MiB (${hosts.length} hosts booted on demand): ${now
          .map((pid) => (pid === undefined ? "?" : kib(statusKiB(pid, "VmRSS") ?? 0)))
          .join("  ")}`
      )
    }
    return pids
  })

const fanOutPool = (target: Target, n: number, warm: boolean) =>
  Effect.gen(function* () {
    const hostsNeeded = Math.ceil(n / PER_HOST)
    console.log(
      `2. ${n} sandboxes, ${PER_HOST} per host, concurrency ${CONCURRENCY ?? n}, hosts ${
        warm ? `pre-warmed (warmUp ${hostsNeeded})` : "booted on demand (warmUp 0)"
      }`
    )
    const t0 = now()
    const built = yield* Layer.build(
      SandboxPool.layer({
        ...target.options,
        name: `bench-${n}`,
        sandboxesPerHost: PER_HOST,
        warmUp: warm ? hostsNeeded : 0,
        weakIsolation
      })
    )
    if (warm) console.log(`  pool layer built (${hostsNeeded} hosts started) in ${((now() - t0) / 1000).toFixed(2)} s`)
    return yield* fanOut(target, n, warm).pipe(Effect.provide(built))
  }).pipe(Effect.scoped, Effect.flatMap(reportLeftovers))

// ---------------------------------------------------------------------------------------------------

const runTarget = (target: Target) =>
  Effect.gen(function* () {
    console.log("")
    console.log(`=== ${target.name} ===`)
    if (LEASES > 0) yield* warmLease(target)
    for (const n of SIZES) {
      yield* fanOutPool(target, n, true)
      if (n <= 100) yield* fanOutPool(target, n, false)
    }
  }).pipe(Effect.provide(target.context))

const header = () => {
  const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
  console.log(
    `SandboxPool bench: ${new Date().toISOString()}, ${process.getuid?.() === 0 ? "root: a uid + Landlock per sandbox" : "not root: weakIsolation"}`
  )
  console.log(`machine: one, ${os.cpus().length} cores, load ${load}; shared with other engineers' runs`)
  console.log(
    "HF publishes 100 sandboxes created, run and killed in 8.2 s and 1,000 in 15.8 s. Here: one machine, no network,"
  )
  console.log(
    "hosts are local processes (emulator: its job runner's processes, 2 s scheduling delay) instead of VMs, so no"
  )
  console.log(
    "VM boots (~6 s median on HF, inside HF's figures); all hosts and the client share the same cores. The emulator"
  )
  console.log("(Hub, proxy edge, tunnels) runs inside the client's process: its memory counts as the client's.")
}

const program = Effect.gen(function* () {
  header()
  if (PROVIDERS.includes("local")) yield* runTarget(local)
  if (PROVIDERS.includes("emulator")) {
    yield* Effect.scoped(Effect.flatMap(Testing.make(Testing.realistic), (emulator) => runTarget(emulated(emulator))))
  }
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
