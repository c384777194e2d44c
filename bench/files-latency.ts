/**
 * Upload and download of a 256 MiB file over a long link — the local sandbox reached through the latency
 * relay (bench/relay.ts: 50 ms each way, a 256 KiB window per TCP stream, so ≈ 2.5 MiB/s per stream) —
 * single stream (parallelism 1) beside parallel ranged transfer (default parallelism, 8 ranges in
 * flight), and the same with no relay. Target: under latency, parallel ≥ 4× single.
 *
 * Slow by design: one stream at 2.5 MiB/s moves 256 MiB in ~100 s each way. `BENCH_FILE_MIB=64` makes a
 * smaller file. The relay counts the connections each transfer used, which shows whether the ranges
 * really travelled in parallel.
 *
 *   npx tsx bench/files-latency.ts
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type { TransferOptions } from "hf-sandbox/Files"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { OperationError } from "hf-sandbox/SandboxError"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import { DEFAULT_LATENCY_MS, DEFAULT_WINDOW_BYTES, type Relay, throughRelay } from "./relay.js"
import { Live, ms, now } from "./support.js"

const MiB = 1024 * 1024
const SIZE = Number(process.env.BENCH_FILE_MIB ?? 256) * MiB
const PARALLEL = 8
const LATENCY_MS = DEFAULT_LATENCY_MS
/** Runs per case without latency (fast); with latency each case runs once (a single stream takes minutes). */
const LOCAL_RUNS = 3

interface Sample {
  readonly ms: number
  /** Connections through the relay that carried ≥ 1 MiB of the transfer (undefined without a relay). */
  readonly connections: number | undefined
  /**
   * Connections moving data at once, on average: per 250 ms window (2.5 RTTs) in which data moved, those
   * that moved ≥ 64 KiB (a range handing over to the next connection counts both within its window).
   */
  readonly concurrent: number | undefined
  /** Last progress report seen, if any. */
  readonly progress: { bytes: number; total: number | undefined } | undefined
}

const sha256File = (file: string) =>
  Effect.promise(
    () =>
      new Promise<string>((resolve, reject) => {
        const hash = createHash("sha256")
        fs.createReadStream(file)
          .on("data", (chunk) => hash.update(chunk))
          .on("end", () => resolve(hash.digest("hex")))
          .on("error", reject)
      })
  )

const program = Effect.gen(function* () {
  const local = yield* SandboxProvider.SandboxProvider
  let relay: Relay | undefined
  const relayed = throughRelay(local, { latencyMs: LATENCY_MS }, (r) => {
    relay = r
  })
  const direct = yield* Sandbox.make()
  const far = yield* Sandbox.make().pipe(Effect.provideService(SandboxProvider.SandboxProvider, relayed))
  const farRelay = relay!

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-bench-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
  const source = path.join(dir, "source.bin")
  // Random bytes (nothing compressible), written in 16 MiB pieces to keep memory low.
  const fd = fs.openSync(source, "w")
  for (let written = 0; written < SIZE; written += 16 * MiB)
    fs.writeSync(fd, randomBytes(Math.min(16 * MiB, SIZE - written)))
  fs.closeSync(fd)
  const digest = yield* sha256File(source)

  /** One transfer, timed; how many connections carried it, and how many at once, is read from the relay. */
  const timed = (through: Relay | undefined, run: (options: TransferOptions) => Effect.Effect<void, OperationError>) =>
    Effect.gen(function* () {
      let progress: Sample["progress"]
      const before = through?.stats().perConnection ?? []
      let last = before
      const moving: Array<number> = []
      const sampler =
        through === undefined
          ? undefined
          : setInterval(() => {
              const current = through.stats().perConnection
              const n = current.filter((bytes, i) => bytes - (last[i] ?? 0) >= 64 * 1024).length
              if (n > 0) moving.push(n)
              last = current
            }, 250)
      const t0 = now()
      yield* run({ onProgress: (p) => (progress = { bytes: p.bytes, total: p.total }) }).pipe(
        Effect.ensuring(Effect.sync(() => clearInterval(sampler)))
      )
      const elapsed = now() - t0
      const used = through?.stats().perConnection.filter((bytes, i) => bytes - (before[i] ?? 0) >= MiB).length
      return {
        ms: elapsed,
        connections: used,
        concurrent: through === undefined ? undefined : moving.reduce((a, b) => a + b, 0) / Math.max(1, moving.length),
        progress
      } satisfies Sample
    })

  const upload = (sb: Sandbox.Sandbox, through: Relay | undefined, parallelism: number, remote: string) =>
    Effect.gen(function* () {
      const sample = yield* timed(through, (o) => sb.files.upload(source, remote, { ...o, parallelism }))
      const remoteDigest = (yield* sb.exec(["sha256sum", remote])).stdout.split(" ")[0]
      if (remoteDigest !== digest) throw new Error(`upload ${parallelism}: the remote file differs`)
      return sample
    })
  const download = (sb: Sandbox.Sandbox, through: Relay | undefined, parallelism: number, remote: string) =>
    Effect.gen(function* () {
      const target = path.join(dir, "down.bin")
      const sample = yield* timed(through, (o) => sb.files.download(remote, target, { ...o, parallelism }))
      if ((yield* sha256File(target)) !== digest) throw new Error(`download ${parallelism}: the local file differs`)
      fs.rmSync(target)
      return sample
    })

  const results: Record<string, Array<Sample>> = {}
  const record = (key: string, sample: Sample) => {
    results[key] ??= []
    results[key].push(sample)
  }
  const cases = (sb: Sandbox.Sandbox, through: Relay | undefined, label: string, runs: number) =>
    Effect.gen(function* () {
      for (let run = 0; run < runs; run++) {
        for (const parallelism of [1, PARALLEL]) {
          const remote = `bench-${label}-${parallelism}.bin`
          record(`${label} upload p${parallelism}`, yield* upload(sb, through, parallelism, remote))
          record(`${label} download p${parallelism}`, yield* download(sb, through, parallelism, remote))
          yield* sb.files.remove(remote)
        }
      }
    })

  // Warm-up (connections, page cache), then the local cases, then the long ones.
  yield* upload(direct, undefined, PARALLEL, "warm.bin")
  yield* direct.files.remove("warm.bin")
  yield* cases(direct, undefined, "local", LOCAL_RUNS)
  yield* cases(far, farRelay, "latency", 1)

  const median = (samples: ReadonlyArray<Sample>) =>
    [...samples].sort((a, b) => a.ms - b.ms)[Math.floor(samples.length / 2)]!
  const rate = (sample: Sample) => SIZE / MiB / (sample.ms / 1000)
  console.log(
    `${SIZE / MiB} MiB file, upload (file -> sandbox) and download (sandbox -> file); p1 = one stream, p${PARALLEL} = ${PARALLEL} ranges in parallel`
  )
  console.log(
    `latency: through the relay, ${LATENCY_MS} ms each way, ${DEFAULT_WINDOW_BYTES / 1024} KiB window per stream (${(
      DEFAULT_WINDOW_BYTES / MiB / ((2 * LATENCY_MS) / 1000)
    ).toFixed(1)} MiB/s per stream at most); local: direct, ${LOCAL_RUNS} runs, median`
  )
  for (const [key, samples] of Object.entries(results)) {
    const sample = median(samples)
    const conns =
      sample.connections === undefined
        ? ""
        : `  ${sample.connections} connection(s) used, ${sample.concurrent!.toFixed(1)} at once on average`
    const progress =
      sample.progress === undefined
        ? "  no progress reported"
        : `  progress ${sample.progress.bytes}/${sample.progress.total}${sample.progress.bytes === SIZE ? "" : " (INCOMPLETE)"}`
    console.log(
      `${key.padEnd(26)} ${ms(sample.ms).padStart(12)}  ${rate(sample).toFixed(1).padStart(7)} MiB/s${conns}${progress}`
    )
  }
  for (const label of ["local", "latency"]) {
    for (const op of ["upload", "download"]) {
      const single = median(results[`${label} ${op} p1`]!)
      const parallel = median(results[`${label} ${op} p${PARALLEL}`]!)
      const ratio = rate(parallel) / rate(single)
      console.log(
        `${label} ${op}: p${PARALLEL} / p1 = ${ratio.toFixed(2)}x${label === "latency" ? `  (target >= 4x)` : ""}`
      )
    }
  }
  const oneConnection = Object.entries(results).some(
    ([key, samples]) =>
      key.startsWith("latency") && key.endsWith(`p${PARALLEL}`) && (median(samples).concurrent ?? 0) < 1.5
  )
  if (oneConnection) {
    console.log(
      `note: a p${PARALLEL} transfer moved data on fewer than 1.5 connections at once on average through the relay: its ranges did not travel in parallel (option not implemented yet?)`
    )
  }
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
