/**
 * Write then read a 64 MiB file through the client, beside a plain local file copy of the same file
 * in the same run. Target (issue 2): ≥ 40% of the local copy's throughput.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live, ms, now, percentile } from "./support.js"

const SIZE = 64 * 1024 * 1024
const RUNS = 7
const MiB = 1024 * 1024

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-bench-"))
  const source = path.join(dir, "source.bin")
  const data = new Uint8Array(randomBytes(SIZE))
  fs.writeFileSync(source, data)

  const copy: Array<number> = []
  const write: Array<number> = []
  const read: Array<number> = []
  for (let run = 0; run < RUNS; run++) {
    let t0 = now()
    // A plain copy that moves the bytes through user space, as any copy tool does.
    fs.writeFileSync(path.join(dir, `copy-${run}.bin`), fs.readFileSync(source))
    copy.push(now() - t0)

    t0 = now()
    yield* sb.files.write(`bench-${run}.bin`, data)
    write.push(now() - t0)
    t0 = now()
    const back = yield* sb.files.read(`bench-${run}.bin`)
    read.push(now() - t0)
    if (back.length !== SIZE) throw new Error(`short read: ${back.length}`)
    yield* sb.files.remove(`bench-${run}.bin`)
    fs.rmSync(path.join(dir, `copy-${run}.bin`))
  }
  fs.rmSync(dir, { recursive: true, force: true })

  const roundTrip = write.map((w, i) => w + read[i]!)
  const mibps = (t: number) => SIZE / MiB / (t / 1000)
  const base = mibps(percentile(copy, 50))
  const line = (name: string, samples: Array<number>) =>
    console.log(
      `${name.padEnd(36)} p50 ${ms(percentile(samples, 50)).padStart(10)}  ${mibps(percentile(samples, 50)).toFixed(0).padStart(5)} MiB/s  ${(
        (mibps(percentile(samples, 50)) / base) * 100
      ).toFixed(0)}% of baseline`
    )
  console.log(`64 MiB file, ${RUNS} runs each (baseline: local read+write copy of the same file)`)
  line("local copy [baseline]", copy)
  line("sb.files.write", write)
  line("sb.files.read", read)
  line("write then read (round trip)", roundTrip)
  console.log(
    `target: round trip >= 40% of baseline -> ${((mibps(percentile(roundTrip, 50)) / base) * 100).toFixed(0)}%`
  )
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
