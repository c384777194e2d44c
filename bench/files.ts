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
const RUNS = 21
const MiB = 1024 * 1024

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-bench-"))
  const source = path.join(dir, "source.bin")
  const data = new Uint8Array(randomBytes(SIZE))
  fs.writeFileSync(source, data)

  /** A plain copy that moves the bytes through user space, as any copy tool does. */
  const localCopy = (run: number) => {
    const t0 = now()
    fs.writeFileSync(path.join(dir, `copy-${run}.bin`), fs.readFileSync(source))
    const took = now() - t0
    fs.rmSync(path.join(dir, `copy-${run}.bin`))
    return took
  }

  // Two loops, each with its own baseline taken between its samples: the streamed file transfers
  // churn buffers (and so the garbage collector) in a way that would spill into the other figures.
  const copy: Array<number> = []
  const write: Array<number> = []
  const read: Array<number> = []
  for (let run = 0; run < RUNS; run++) {
    copy.push(localCopy(run))
    let t0 = now()
    yield* sb.files.write(`bench-${run}.bin`, data)
    write.push(now() - t0)
    t0 = now()
    const back = yield* sb.files.read(`bench-${run}.bin`)
    read.push(now() - t0)
    if (back.length !== SIZE) throw new Error(`short read: ${back.length}`)
    yield* sb.files.remove(`bench-${run}.bin`)
  }

  const fileCopy: Array<number> = []
  const upload: Array<number> = []
  const download: Array<number> = []
  for (let run = 0; run < RUNS; run++) {
    fileCopy.push(localCopy(run))
    let t0 = now()
    yield* sb.files.upload(source, `bench-up-${run}.bin`)
    upload.push(now() - t0)
    t0 = now()
    yield* sb.files.download(`bench-up-${run}.bin`, path.join(dir, `down-${run}.bin`))
    download.push(now() - t0)
    if (fs.statSync(path.join(dir, `down-${run}.bin`)).size !== SIZE) throw new Error("short download")
    yield* sb.files.remove(`bench-up-${run}.bin`)
    fs.rmSync(path.join(dir, `down-${run}.bin`))
  }
  fs.rmSync(dir, { recursive: true, force: true })

  const roundTrip = write.map((w, i) => w + read[i]!)
  const fileRoundTrip = upload.map((u, i) => u + download[i]!)
  const mibps = (mib: number, t: number) => mib / (t / 1000)
  const line = (baseline: Array<number>, name: string, mib: number, samples: Array<number>) => {
    const base = mibps(SIZE / MiB, percentile(baseline, 50))
    const rate = mibps(mib, percentile(samples, 50))
    console.log(
      `${name.padEnd(44)} p50 ${ms(percentile(samples, 50)).padStart(10)}  ${rate.toFixed(0).padStart(5)} MiB/s  ${(
        (rate / base) *
        100
      )
        .toFixed(0)
        .padStart(3)}% of baseline`
    )
  }
  console.log(`64 MiB file, ${RUNS} runs each (baseline: local readFile + writeFile copy of the same file)`)
  console.log("write/read move an in-memory buffer:")
  line(copy, "local copy [baseline]", SIZE / MiB, copy)
  line(copy, "sb.files.write", SIZE / MiB, write)
  line(copy, "sb.files.read", SIZE / MiB, read)
  // Write then read moves the file twice (in, then out); the copy moves it once.
  line(copy, "write then read, bytes moved (128 MiB)", (2 * SIZE) / MiB, roundTrip)
  line(copy, "write then read, per file (64 MiB) [target]", SIZE / MiB, roundTrip)
  console.log("upload/download move the file itself, streamed (their own baseline, taken in their loop):")
  line(fileCopy, "local copy [baseline]", SIZE / MiB, fileCopy)
  line(fileCopy, "sb.files.upload (file -> sandbox)", SIZE / MiB, upload)
  line(fileCopy, "sb.files.download (sandbox -> file)", SIZE / MiB, download)
  line(fileCopy, "upload then download, per file (64 MiB)", SIZE / MiB, fileRoundTrip)
  console.log("target (issue 2): write then read, per file, >= 40% of the baseline's throughput")
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
