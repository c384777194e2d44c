/**
 * Client CPU (`process.cpuUsage`) of small-file transfers on the local provider: `files.write` +
 * `files.read` of 1 KiB, and `uploadDir` / `downloadDir` of 500 files of 1 KiB (per file), each beside a
 * plain `http` PUT + GET of the same bytes to a trivial Node server in another process, measured in the
 * same run between the samples (the ratio is the figure to compare; the machine's load moves the rest).
 *
 *   npx tsx bench/small-files.ts      (SF_N: pairs per round, SF_FILES: files per tree)
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { Live } from "./support.js"

const N = Number(process.env.SF_N ?? 300)
const FILES = Number(process.env.SF_FILES ?? 500)
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const data = new Uint8Array(1024).fill(7)
  // Baseline server: a trivial Node server in its own process, keeping PUT bodies in memory.
  const server = spawn(
    process.execPath,
    [
      "-e",
      `const m=new Map();require("http").createServer((q,s)=>{const b=[];q.on("data",c=>b.push(c));q.on("end",()=>{if(q.method==="PUT"){m.set(q.url,Buffer.concat(b));s.end("{}")}else{s.end(m.get(q.url))}})}).listen(0,"127.0.0.1",function(){console.log(this.address().port)})`
    ],
    { stdio: ["ignore", "pipe", "inherit"] }
  )
  const port = yield* Effect.promise(
    () => new Promise<number>((resolve) => server.stdout!.once("data", (d) => resolve(Number(String(d).trim()))))
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => server.kill()))
  const agent = new http.Agent({ keepAlive: true })
  const req = (method: string, body?: Uint8Array) =>
    new Promise<Buffer>((resolve, reject) => {
      const r = http.request({ host: "127.0.0.1", port, path: "/f", method, agent }, (res) => {
        const b: Array<Buffer> = []
        res.on("data", (c) => b.push(c))
        res.on("end", () => resolve(Buffer.concat(b)))
      })
      r.on("error", reject)
      r.end(body)
    })
  const baseline = () =>
    Effect.promise(async () => {
      await req("PUT", data)
      await req("GET")
    })
  const roundTrip = Effect.gen(function* () {
    yield* sb.files.write("small.bin", data)
    const back = yield* sb.files.read("small.bin")
    if (back.length !== data.length) throw new Error("short read")
  })
  for (let i = 0; i < 30; i++) {
    yield* roundTrip
    yield* baseline()
  }
  const rounds = 3
  for (let round = 0; round < rounds; round++) {
    let t = cpu()
    for (let i = 0; i < N; i++) yield* baseline()
    const base = (cpu() - t) / N
    t = cpu()
    for (let i = 0; i < N; i++) yield* roundTrip
    const ours = (cpu() - t) / N
    console.log(
      `write+read 1 KiB: ${ours.toFixed(3)} ms CPU per pair; http PUT+GET baseline ${base.toFixed(3)} ms (${(ours / base).toFixed(2)}x)`
    )
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-bench-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
  fs.mkdirSync(path.join(dir, "up"))
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(dir, "up", `f${i}.txt`), data)
  for (let round = 0; round < rounds; round++) {
    let t = cpu()
    for (let i = 0; i < FILES; i++) yield* baseline()
    const base = (cpu() - t) / FILES
    t = cpu()
    yield* sb.files.uploadDir(path.join(dir, "up"), `tree-${round}`)
    const up = (cpu() - t) / FILES
    t = cpu()
    yield* sb.files.downloadDir(`tree-${round}`, path.join(dir, `down-${round}`))
    const down = (cpu() - t) / FILES
    yield* sb.files.remove(`tree-${round}`, { recursive: true })
    console.log(
      `${FILES} files: uploadDir ${up.toFixed(3)} ms CPU/file (${(up / base).toFixed(2)}x), downloadDir ${down.toFixed(3)} ms CPU/file (${(down / base).toFixed(2)}x); baseline PUT+GET ${base.toFixed(3)} ms`
    )
  }
  agent.destroy()
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
