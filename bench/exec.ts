/**
 * exec round-trip through the client, beside spawning the same program directly from Node in the
 * same run. Target (issue 2): exec("true") p50 ≤ 1.5× the direct spawn.
 *
 * The client's own CPU per call too (process.cpuUsage around each round's loop: the client process
 * only, not the sandbox's server), beside Node's CPU per direct spawn of the same program in the same
 * rounds (issue 11: a client driving thousands of small commands is bound by its own CPU).
 *
 * Also, for `execStream`:
 * - time to the first output byte of `echo hi`, as a ratio to the exec("true") round trip p50 of the same
 *   run (target ≤ 2×: streaming adds no round trip of its own);
 * - event throughput of a command printing 100 MiB, counted as the stream is consumed, beside the same
 *   command spawned from Node with its stdout drained (target ≥ 100 MiB/s on loopback).
 */
import { spawn } from "node:child_process"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live, ms, now, percentile } from "./support.js"

// Fewer on a shared machine: BENCH_RUNS=3 BENCH_STREAM_RUNS=2 npx tsx bench/exec.ts
const ROUNDS = Number(process.env.BENCH_RUNS ?? 10)
const PER_ROUND = 50
const MiB = 1024 * 1024
const STREAM_BYTES = 100 * MiB
const STREAM_RUNS = Number(process.env.BENCH_STREAM_RUNS ?? 7)

const spawnTrue = () =>
  new Promise<void>((resolve, reject) => {
    const child = spawn("true", { stdio: ["ignore", "pipe", "pipe"] })
    child.on("error", reject)
    child.on("close", () => resolve())
  })

/** Runs `head -c STREAM_BYTES /dev/zero` from Node and drains its stdout; resolves with the bytes read. */
const spawnHead = () =>
  new Promise<number>((resolve, reject) => {
    const child = spawn("head", ["-c", String(STREAM_BYTES), "/dev/zero"], { stdio: ["ignore", "pipe", "ignore"] })
    let bytes = 0
    child.stdout.on("data", (chunk: Buffer) => {
      bytes += chunk.length
    })
    child.on("error", reject)
    child.on("close", () => resolve(bytes))
  })

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const direct: Array<number> = []
  const viaShell: Array<number> = []
  const viaArgv: Array<number> = []
  // CPU per call, one figure per round and series.
  const cpuDirect: Array<number> = []
  const cpuShell: Array<number> = []
  const cpuArgv: Array<number> = []
  const firstByte: Array<number> = []
  /** The time from asking for the stream to its first Stdout event; the stream is consumed to the end. */
  const timeFirstByte = Effect.suspend(() => {
    const t0 = now()
    let seen = false
    return sb.execStream("echo hi").pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (!seen && event._tag === "Stdout") {
            seen = true
            firstByte.push(now() - t0)
          }
        })
      )
    )
  })
  /** Consumes the stream of a command printing STREAM_BYTES, counting bytes. */
  const streamHead = Effect.suspend(() => {
    let bytes = 0
    let exitCode: number | null = null
    return sb.execStream(`head -c ${STREAM_BYTES} /dev/zero`).pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (event._tag === "Stdout") bytes += event.data.length
          else if (event._tag === "Exit") exitCode = event.exitCode
        })
      ),
      Effect.map(() => {
        if (bytes !== STREAM_BYTES || exitCode !== 0) throw new Error(`execStream: ${bytes} bytes, exit ${exitCode}`)
        return bytes
      })
    )
  })
  const time = <A, E>(into: Array<number>, effect: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const t0 = now()
      yield* effect
      into.push(now() - t0)
    })
  /** One round of a series, timed call by call, and the client's CPU per call over the round. */
  const series = <A, E>(into: Array<number>, cpu: Array<number>, effect: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const c0 = process.cpuUsage()
      for (let i = 0; i < PER_ROUND; i++) yield* time(into, effect)
      const used = process.cpuUsage(c0)
      cpu.push((used.user + used.system) / 1000 / PER_ROUND)
    })
  // Warm up both paths (JIT, connection pool, page cache).
  for (let i = 0; i < 30; i++) {
    yield* sb.exec("true")
    yield* Effect.promise(spawnTrue)
    yield* timeFirstByte
  }
  firstByte.length = 0
  // Interleaved rounds, so that noise from the shared machine hits every series alike.
  for (let round = 0; round < ROUNDS; round++) {
    yield* series(direct, cpuDirect, Effect.promise(spawnTrue))
    yield* series(viaShell, cpuShell, sb.exec("true"))
    yield* series(viaArgv, cpuArgv, sb.exec(["true"]))
    for (let i = 0; i < PER_ROUND; i++) yield* timeFirstByte
  }
  // Throughput: interleaved runs of the baseline and the stream, one warm-up each.
  yield* Effect.promise(spawnHead)
  yield* streamHead
  const headDirect: Array<number> = []
  const headStream: Array<number> = []
  for (let run = 0; run < STREAM_RUNS; run++) {
    yield* time(
      headDirect,
      Effect.promise(spawnHead).pipe(
        Effect.map((bytes) => {
          if (bytes !== STREAM_BYTES) throw new Error(`direct: ${bytes} bytes`)
          return bytes
        })
      )
    )
    yield* time(headStream, streamHead)
  }
  const base = percentile(direct, 50)
  const row = (name: string, samples: Array<number>) =>
    console.log(
      `${name.padEnd(34)} p50 ${ms(percentile(samples, 50)).padStart(9)}  p99 ${ms(percentile(samples, 99)).padStart(
        9
      )}  p50 ratio ${(percentile(samples, 50) / base).toFixed(2)}x`
    )
  console.log(`exec round-trip, ${ROUNDS * PER_ROUND} samples each (baseline: direct spawn from Node)`)
  row("node spawn('true') [baseline]", direct)
  row('sb.exec("true")  (via /bin/sh)', viaShell)
  row('sb.exec(["true"]) (argv)', viaArgv)
  console.log(`target: sb.exec("true") p50 <= 1.50x baseline -> ${(percentile(viaShell, 50) / base).toFixed(2)}x`)

  const cpuBase = percentile(cpuDirect, 50)
  const cpuRow = (name: string, perRound: Array<number>) =>
    console.log(
      `${name.padEnd(34)} ${ms(percentile(perRound, 50)).padStart(9)} per call  ratio ${(
        percentile(perRound, 50) / cpuBase
      ).toFixed(2)}x`
    )
  console.log("")
  console.log(
    `client CPU per call (user+sys of this process), median of ${ROUNDS} rounds of ${PER_ROUND} (baseline: direct spawn)`
  )
  cpuRow("node spawn('true') [baseline]", cpuDirect)
  cpuRow('sb.exec("true")  (via /bin/sh)', cpuShell)
  cpuRow('sb.exec(["true"]) (argv)', cpuArgv)

  const execP50 = percentile(viaShell, 50)
  console.log("")
  console.log(`execStream time to first output byte, ${firstByte.length} samples (baseline: sb.exec("true") p50)`)
  console.log(
    `${'sb.execStream("echo hi") first Stdout'.padEnd(34)} p50 ${ms(percentile(firstByte, 50)).padStart(9)}  p99 ${ms(
      percentile(firstByte, 99)
    ).padStart(9)}  p50 ratio ${(percentile(firstByte, 50) / execP50).toFixed(2)}x  p99 ratio ${(
      percentile(firstByte, 99) / execP50
    ).toFixed(2)}x`
  )
  console.log(
    `target: first byte p50 <= 2.00x exec("true") p50 -> ${(percentile(firstByte, 50) / execP50).toFixed(2)}x`
  )

  const mibps = (t: number) => STREAM_BYTES / MiB / (t / 1000)
  const headBase = mibps(percentile(headDirect, 50))
  const tput = (name: string, samples: Array<number>) => {
    const rate = mibps(percentile(samples, 50))
    console.log(
      `${name.padEnd(44)} p50 ${ms(percentile(samples, 50)).padStart(10)}  ${rate.toFixed(0).padStart(5)} MiB/s  ${(
        rate / headBase
      ).toFixed(2)}x baseline`
    )
  }
  console.log("")
  console.log(`execStream throughput, ${STREAM_BYTES / MiB} MiB of stdout, ${STREAM_RUNS} runs each`)
  tput("node spawn head, stdout drained [baseline]", headDirect)
  tput("sb.execStream head, Stdout bytes counted", headStream)
  console.log(`target: >= 100 MiB/s -> ${mibps(percentile(headStream, 50)).toFixed(0)} MiB/s`)
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
