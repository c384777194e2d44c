/**
 * Streamed stdin through the CLI: 1 GiB piped into `hf-sandbox exec -i ID -- sh -c '… cat > /dev/null …'`
 * on a local sandbox, beside the same bytes piped into the same local `sh -c '…'`, fed the same way
 * (this process writes one reused 1 MiB buffer into the child's stdin, respecting back-pressure) and
 * interleaved in the same run. Prints each one's throughput, the ratio, and the CLI process's memory
 * growth: its peak RSS (VmHWM, Linux) with 1 GiB minus its peak RSS with 1 KiB of stdin, so that what the
 * CLI costs anyway (Node, the bundle, the connection) is left out. The ratio is of the whole runs; the line
 * also gives the streaming part alone: the time minus that of a 1 KiB run just after (the CLI's start,
 * attaching, starting the command and ending it), which is most of the time once the bytes flow fast.
 * And the steady state: the bytes over the time from the first byte's arrival in the command to the end of
 * input there, as the command itself clocks them (both commands are the same `sh` line, which reads one
 * byte with `dd`, prints the time, `cat`s the rest to /dev/null and prints the time again). CPU times (the
 * CLI's, and the server's with the command it ran) are given too: on a loaded machine they say more than
 * the times.
 *
 *   npx tsx bench/stdin.ts            (BENCH_MIB=1024 by default, BENCH_RUNS=2)
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { bundleCli } from "../test/support/bundleCli.js"

const MiB = 1024 * 1024
const TOTAL_MIB = Number(process.env.BENCH_MIB ?? 1024)
const RUNS = Number(process.env.BENCH_RUNS ?? 2)
const work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-bench-stdin-"))
let bin = ""
const env = {
  PATH: process.env.PATH,
  HOME: work,
  HF_SANDBOX_STATE_DIR: path.join(work, "state"),
  HF_HUB_DISABLE_TELEMETRY: "1"
}

const cli = (args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
    })
    child.once("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${args.join(" ")}: ${code}`))))
  })

/** The peak resident set of a running process so far (Linux), in bytes; 0 where unknown. */
const peakRss = (pid: number) => {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** CPU seconds (user + system) a running process has used so far (Linux); 0 where unknown. */
const cpuSeconds = (pid: number) => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0
  }
}

/**
 * CPU seconds (user + system) the local sandbox's server has used so far (Linux): its supervisor, the
 * server and what they run, the commands they reaped included (`cat` of a finished run). 0 where unknown.
 */
const serverCpu = (id: string) => {
  const tree = (pid: number): number => {
    try {
      const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
      const own = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) / 100 // utime stime cutime cstime
      const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ").filter(Boolean)
      return own + children.reduce((sum, child) => sum + tree(Number(child)), 0)
    } catch {
      return 0
    }
  }
  try {
    return tree(JSON.parse(fs.readFileSync(path.join(env.HF_SANDBOX_STATE_DIR, `${id}.json`), "utf8")).pid)
  } catch {
    return 0
  }
}

/**
 * What both sides run: the first byte read alone, then the rest into /dev/null, each end clocked (ns) on
 * stdout: the steady state is measured inside the command, where the bytes arrive.
 */
const COMMAND = "dd bs=1 count=1 of=/dev/null 2>/dev/null; date +%s%N; cat > /dev/null; date +%s%N"

/**
 * Writes `bytes` (one reused 1 MiB buffer) into the child's stdin; resolves with seconds, its peak RSS,
 * the CPU time it used (as last sampled before it exited) and the command's own first-to-last-byte time.
 */
const feed = (child: ChildProcess, bytes: number) =>
  new Promise<{ seconds: number; peak: number; cpu: number; steady: number }>((resolve, reject) => {
    const chunk = Buffer.alloc(Math.min(MiB, bytes), 0x61)
    let peak = 0
    let cpu = 0
    const sampler = setInterval(() => {
      peak = Math.max(peak, peakRss(child.pid!))
      cpu = Math.max(cpu, cpuSeconds(child.pid!))
    }, 20)
    const t0 = performance.now()
    let sent = 0
    const write = () => {
      while (sent < bytes) {
        const n = Math.min(chunk.length, bytes - sent)
        sent += n
        if (!child.stdin!.write(n === chunk.length ? chunk : chunk.subarray(0, n)))
          return child.stdin!.once("drain", write)
      }
      child.stdin!.end()
    }
    let out = ""
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
    })
    child.stdin!.on("error", reject)
    child.once("close", (code) => {
      clearInterval(sampler)
      if (code !== 0) return reject(new Error(`exited with ${code}`))
      resolve({ seconds: (performance.now() - t0) / 1000, peak, cpu, steady: steadyOf(out) })
    })
    write()
  })

const viaSandbox = (id: string, bytes: number) =>
  feed(
    spawn(process.execPath, [bin, "--local", "exec", "-i", id, "--", "sh", "-c", COMMAND], {
      env,
      stdio: ["pipe", "pipe", "inherit"]
    }),
    bytes
  )

const viaLocalPipe = (bytes: number) =>
  feed(spawn("sh", ["-c", COMMAND], { stdio: ["pipe", "pipe", "inherit"] }), bytes)

/** The first byte to the last as the command clocked them (its two `date` lines), in seconds. */
const steadyOf = (out: string) => {
  const [first, last] = out.trim().split("\n").map(BigInt)
  return first !== undefined && last !== undefined ? Number(last - first) / 1e9 : Number.NaN
}

const hasSocat = () => {
  try {
    return execFileSync("socat", ["-V"], { stdio: ["ignore", "pipe", "ignore"] }).length > 0
  } catch {
    return false
  }
}

/** The same bytes and command through socat over loopback TCP (see the header); undefined without socat. */
const viaSocat = async (bytes: number) => {
  const server = spawn(
    "sh",
    ["-c", `exec socat -d -d -b ${MiB} TCP-LISTEN:0,bind=127.0.0.1 STDOUT | sh -c '${COMMAND}'`],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  let out = ""
  server.stdout!.on("data", (d: Buffer) => {
    out += d.toString()
  })
  const ended = new Promise<void>((resolve) => server.once("close", () => resolve()))
  const port = await new Promise<string>((resolve, reject) => {
    let log = ""
    server.stderr!.on("data", (d: Buffer) => {
      log += d.toString()
      const m = /listening on .*?:(\d+)\s*$/m.exec(log)
      if (m !== null) resolve(m[1]!)
    })
    server.once("close", () => reject(new Error(`socat did not listen: ${log}`)))
  })
  const client = await feed(
    spawn("socat", ["-b", String(MiB), "STDIN", `TCP:127.0.0.1:${port}`], { stdio: ["pipe", "pipe", "inherit"] }),
    bytes
  )
  await ended
  return { seconds: client.seconds, steady: steadyOf(out) }
}

const rate = (bytes: number, seconds: number) => `${(bytes / MiB / seconds).toFixed(0)} MiB/s`

const main = async () => {
  bin = await bundleCli(work)
  const id = await cli(["--local", "create", "-q"])
  const socat = hasSocat()
  try {
    const bytes = TOTAL_MIB * MiB
    const small = await viaSandbox(id, 1024)
    for (let run = 1; run <= RUNS; run++) {
      const local = await viaLocalPipe(bytes)
      const server0 = serverCpu(id)
      const sandbox = await viaSandbox(id, bytes)
      const server = serverCpu(id) - server0
      const fixed = await viaSandbox(id, 1024)
      const relay = socat ? await viaSocat(bytes) : undefined
      const streaming = sandbox.seconds - fixed.seconds
      // On a loaded machine the 1 KiB run can take longer than the whole one: then there is no figure.
      const withoutFixed =
        streaming > 0
          ? `${rate(bytes, streaming)}, ratio ${((100 * local.seconds) / streaming).toFixed(0)}%`
          : "n/a (the 1 KiB run took longer)"
      console.log(
        `run ${run}: ${TOTAL_MIB} MiB | local cat pipe ${rate(bytes, local.seconds)} (${local.seconds.toFixed(2)} s)` +
          ` | hf-sandbox exec -i ${rate(bytes, sandbox.seconds)} (${sandbox.seconds.toFixed(2)} s)` +
          ` | ratio ${((100 * local.seconds) / sandbox.seconds).toFixed(0)}%` +
          ` | CLI peak RSS ${(sandbox.peak / MiB).toFixed(0)} MiB, growth over a 1 KiB stdin ${((sandbox.peak - small.peak) / MiB).toFixed(0)} MiB` +
          ` | CLI CPU ${sandbox.cpu.toFixed(1)} s, server CPU (with the command) ${server.toFixed(1)} s | load ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} CPUs` +
          ` | without the CLI's fixed ${fixed.seconds.toFixed(2)} s (${fixed.cpu.toFixed(1)} s CPU) of a 1 KiB run:` +
          ` ${withoutFixed}` +
          ` | steady state in the command: local ${rate(bytes, local.steady)}, hf-sandbox ${rate(bytes, sandbox.steady)},` +
          ` ratio ${((100 * local.steady) / sandbox.steady).toFixed(0)}%`
      )
      if (relay !== undefined) {
        console.log(
          `       the same hops by socat, no protocol: ${rate(bytes, relay.seconds)}` +
            ` | ratio ${((100 * local.seconds) / relay.seconds).toFixed(0)}%` +
            ` | steady state ${rate(bytes, relay.steady)}, ratio ${((100 * local.steady) / relay.steady).toFixed(0)}%`
        )
      }
    }
  } finally {
    await cli(["--local", "kill", id])
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
