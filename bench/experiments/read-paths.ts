/**
 * Experiment (issue 2): the fastest way to receive a 64 MiB read answer into ONE Uint8Array.
 * Every variant is timed against a plain local copy (readFileSync + writeFileSync) in the same round;
 * variants run round-robin so machine noise spreads over all of them.
 *
 *   npx tsx bench/experiments/read-paths.ts [rounds] [filter-regex]
 *   (node --expose-gc via NODE_OPTIONS=--expose-gc collects garbage before each sample)
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as nodeHttp from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as DirectRead from "../../src/internal/wire/directRead.js"
import { ms, now, percentile } from "../support.js"

const MiB = 1024 * 1024
const SIZE = 64 * MiB
const ROUNDS = Number(process.argv[2] ?? 11)
const FILTER = new RegExp(process.argv[3] ?? ".")
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

// Wrap the local provider so the experiment learns the endpoint (base URL and token).
let endpoint: SandboxProvider.Endpoint | undefined
const Provider = Layer.effect(
  SandboxProvider.SandboxProvider,
  Effect.map(LocalSandbox.make(), (service) => ({
    ...service,
    provision: (spec: SandboxProvider.Spec) =>
      Effect.tap(service.provision(spec), (ep) =>
        Effect.sync(() => {
          endpoint = ep
        })
      )
  }))
).pipe(Layer.provide(NodeContext.layer))
const Live = Layer.merge(Provider, NodeHttpClient.layerUndici)

type Undici = { body: NodeJS.ReadableStream & { on: (e: string, f: (x: never) => void) => unknown } }
// The undici response under the InterruptibleResponse wrapper that HttpClient.make adds.
const undiciBody = (r: HttpClientResponse.HttpClientResponse) => {
  const inner = (r as unknown as { original?: unknown }).original ?? r
  return (inner as { source: Undici }).source.body
}

const intoBuffer = (body: Undici["body"], out: Uint8Array, offset: number) =>
  new Promise<number>((resolve, reject) => {
    let at = offset
    body.on("data", (chunk: Uint8Array) => {
      out.set(chunk, at)
      at += chunk.length
    })
    body.on("end", () => resolve(at - offset))
    body.on("error", reject)
  })

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const http = yield* HttpClient.HttpClient
  const ep = endpoint!
  const base = ep.baseUrl
  const token = Redacted.value(ep.token)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-exp-"))
  const source = path.join(dir, "source.bin")
  const data = new Uint8Array(randomBytes(SIZE))
  fs.writeFileSync(source, data)
  yield* sb.files.write("exp.bin", data)

  const get = (offset: number, length: number) =>
    http.execute(
      HttpClientRequest.get(`${base}/v1/files/read`).pipe(
        HttpClientRequest.setUrlParams({ path: "exp.bin", offset: String(offset), length: String(length) }),
        HttpClientRequest.setHeader("x-sandbox-token", token)
      )
    )
  const reused = new Uint8Array(SIZE).fill(1)
  const ranges = (size: number) => Array.from({ length: SIZE / size }, (_, i) => i * size)

  // Generic (any HttpClient): one response's `stream` into out at offset, with runForEachChunk.
  const streamChunks = (out: Uint8Array, offset: number, length: number) =>
    Effect.scoped(
      Effect.flatMap(get(offset, length), (r) => {
        let at = offset
        return Stream.runForEachChunk(r.stream, (chunks) =>
          Effect.sync(() => {
            for (const c of chunks) {
              out.set(c, at)
              at += c.length
            }
          })
        )
      })
    )
  const undiciData = (out: Uint8Array, offset: number, length: number) =>
    Effect.scoped(
      Effect.flatMap(get(offset, length), (r) => Effect.promise(() => intoBuffer(undiciBody(r), out, offset)))
    )
  const arrayBufferInto = (out: Uint8Array, offset: number, length: number) =>
    Effect.scoped(
      Effect.flatMap(get(offset, length), (r) =>
        Effect.map(r.arrayBuffer, (ab) => {
          out.set(new Uint8Array(ab), offset)
        })
      )
    )
  const parallel = (
    size: number,
    conc: number,
    one: (out: Uint8Array, offset: number, length: number) => Effect.Effect<unknown, unknown>
  ) =>
    Effect.suspend(() => {
      const out = new Uint8Array(SIZE)
      return Effect.as(
        Effect.forEach(ranges(size), (o) => one(out, o, size), { concurrency: conc, discard: true }),
        out
      )
    })

  const variants: Array<[string, Effect.Effect<Uint8Array, unknown>]> = [
    ["sb.files.read default (local: 1 direct read)", sb.files.read("exp.bin")],
    ["sb.files.read 8 MiB x 8 (direct)", sb.files.read("exp.bin", { rangeSize: 8 * MiB, parallelism: 8 })],
    [
      "directRead exchange alone, fresh",
      Effect.async<Uint8Array>((resume) => {
        const exchange = DirectRead.open(new URL(base), `/v1/files/read?path=exp.bin`, { "x-sandbox-token": token })
        exchange.head((head) => {
          if (head instanceof DirectRead.ExchangeError) throw new Error(head.detail)
          const out = new Uint8Array(head.length)
          exchange.receive(
            out,
            () => {},
            () => {
              exchange.close()
              resume(Effect.succeed(out))
            }
          )
        })
      })
    ],
    ["sb.files.read 8 MiB x 2", sb.files.read("exp.bin", { parallelism: 2 })],
    ["sb.files.read 16 MiB x 4", sb.files.read("exp.bin", { rangeSize: 16 * MiB, parallelism: 4 })],
    ["sb.files.read 32 MiB x 2", sb.files.read("exp.bin", { rangeSize: 32 * MiB, parallelism: 2 })],
    [
      "stream runForEachChunk, fresh",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        return Effect.as(streamChunks(out, 0, SIZE), out)
      })
    ],
    ["stream runForEachChunk, reused buf", Effect.as(streamChunks(reused, 0, SIZE), reused)],
    [
      "stream runForEach (per element)",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        let at = 0
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Stream.runForEach(r.stream, (c) =>
                Effect.sync(() => {
                  out.set(c, at)
                  at += c.length
                })
              )
            )
          ),
          out
        )
      })
    ],
    [
      "stream rechunk(16)+timeout+map (openRead)",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        let at = 0
        let _counted = 0 // the count openRead kept then: its cost is part of what is measured
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Stream.runForEachChunk(
                r.stream.pipe(
                  Stream.rechunk(16),
                  Stream.timeoutFail(() => "idle", "30 seconds"),
                  Stream.mapChunks((cs) => {
                    for (const c of cs) _counted += c.length
                    return cs
                  })
                ),
                (cs) =>
                  Effect.sync(() => {
                    for (const c of cs) {
                      out.set(c, at)
                      at += c.length
                    }
                  })
              )
            )
          ),
          out
        )
      })
    ],
    [
      "stream + counter + idle watchdog (no rechunk)",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        let at = 0
        // Idle bound without a timer per pull: a side fiber checks progress once per period.
        const watchdog = (period: number): Effect.Effect<never, string> =>
          Effect.suspend(() => {
            const seen = at
            return Effect.flatMap(Effect.sleep(period), () => (at === seen ? Effect.fail("idle") : watchdog(period)))
          })
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Effect.raceFirst(
                Stream.runForEachChunk(r.stream, (cs) =>
                  Effect.sync(() => {
                    for (const c of cs) {
                      out.set(c, at)
                      at += c.length
                    }
                  })
                ),
                watchdog(30_000)
              )
            )
          ),
          out
        )
      })
    ],
    [
      "stream toPull loop",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        let at = 0
        return Effect.as(
          Effect.scoped(
            Effect.gen(function* () {
              const r = yield* get(0, SIZE)
              const pull = yield* Stream.toPull(r.stream)
              for (;;) {
                const next = yield* Effect.option(pull)
                if (next._tag === "None") break
                for (const c of next.value) {
                  out.set(c, at)
                  at += c.length
                }
              }
            })
          ),
          out
        )
      })
    ],
    [
      "stream toAsyncIterable for-await",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Effect.promise(async () => {
                let at = 0
                for await (const c of Stream.toAsyncIterable(r.stream)) {
                  out.set(c, at)
                  at += c.length
                }
              })
            )
          ),
          out
        )
      })
    ],
    [
      "node:http into fresh buf (not HttpClient)",
      Effect.promise(
        () =>
          new Promise<Uint8Array>((resolve, reject) => {
            const u = new URL(`${base}/v1/files/read`)
            u.searchParams.set("path", "exp.bin")
            let out = new Uint8Array(0)
            let at = 0
            const req = nodeHttp.get(
              u,
              {
                headers: { "x-sandbox-token": token },
                agent: false
              },
              (res) => {
                out = new Uint8Array(Number(res.headers["content-length"]))
                res.on("data", (c: Uint8Array) => {
                  out.set(c, at)
                  at += c.length
                })
                res.on("end", () => resolve(out))
                res.on("error", reject)
              }
            )
            req.on("error", reject)
          })
      )
    ],
    [
      "stream -> toReadableStream reader",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Effect.promise(async () => {
                const reader = Stream.toReadableStream(r.stream).getReader()
                let at = 0
                for (;;) {
                  const { done, value } = await reader.read()
                  if (done) break
                  out.set(value, at)
                  at += value.length
                }
              })
            )
          ),
          out
        )
      })
    ],
    [
      "response.arrayBuffer (undici bytes)",
      Effect.scoped(Effect.flatMap(get(0, SIZE), (r) => Effect.map(r.arrayBuffer, (ab) => new Uint8Array(ab))))
    ],
    ["arrayBuffer 16 MiB x 4, copied in", parallel(16 * MiB, 4, arrayBufferInto)],
    ["arrayBuffer 8 MiB x 8, copied in", parallel(8 * MiB, 8, arrayBufferInto)],
    [
      "undici body for-await, fresh",
      Effect.suspend(() => {
        const out = new Uint8Array(SIZE)
        return Effect.as(
          Effect.scoped(
            Effect.flatMap(get(0, SIZE), (r) =>
              Effect.promise(async () => {
                let at = 0
                for await (const c of undiciBody(r) as AsyncIterable<Uint8Array>) {
                  out.set(c, at)
                  at += c.length
                }
              })
            )
          ),
          out
        )
      })
    ],
    ["undici body on(data), fresh", parallel(SIZE, 1, undiciData)],
    ["undici body on(data), reused buf", Effect.as(undiciData(reused, 0, SIZE), reused)],
    [
      "undici body on(data), allocUnsafeSlow",
      Effect.suspend(() => {
        const out = new Uint8Array(Buffer.allocUnsafeSlow(SIZE).buffer)
        return Effect.as(undiciData(out, 0, SIZE), out)
      })
    ],
    [
      "undici on(data), highWaterMark 4 MiB",
      Effect.provideService(parallel(SIZE, 1, undiciData), NodeHttpClient.UndiciRequestOptions, {
        highWaterMark: 4 * MiB
      } as never)
    ],
    [
      "stream runForEachChunk, hwm 4 MiB",
      Effect.provideService(parallel(SIZE, 1, streamChunks), NodeHttpClient.UndiciRequestOptions, {
        highWaterMark: 4 * MiB
      } as never)
    ],
    ["undici on(data) 16 MiB x 4", parallel(16 * MiB, 4, undiciData)],
    ["undici on(data) 32 MiB x 2", parallel(32 * MiB, 2, undiciData)],
    ["stream runForEachChunk 16 MiB x 4", parallel(16 * MiB, 4, streamChunks)],
    ["stream runForEachChunk 32 MiB x 2", parallel(32 * MiB, 2, streamChunks)],
    ["stream runForEachChunk 8 MiB x 8", parallel(8 * MiB, 8, streamChunks)],
    [
      "raw Stream.toArray then concat (Chunk)",
      Effect.scoped(
        Effect.flatMap(get(0, SIZE), (r) =>
          Effect.map(Stream.runCollect(r.stream), (chunks) => {
            const out = new Uint8Array(SIZE)
            let at = 0
            for (const c of Chunk.toReadonlyArray(chunks)) {
              out.set(c, at)
              at += c.length
            }
            return out
          })
        )
      )
    ]
  ]
  if (process.env.PROBE) {
    // How the generic stream delivers a 64 MiB body: batches per Chunk and chunk sizes.
    const batches: Array<number> = []
    const sizes = new Map<number, number>()
    yield* Effect.scoped(
      Effect.flatMap(get(0, SIZE), (r) =>
        Stream.runForEachChunk(r.stream, (cs) =>
          Effect.sync(() => {
            batches.push(cs.length)
            for (const c of cs) sizes.set(c.length, (sizes.get(c.length) ?? 0) + 1)
          })
        )
      )
    ).pipe(
      process.env.PROBE === "hwm"
        ? Effect.provideService(NodeHttpClient.UndiciRequestOptions, { highWaterMark: 4 * MiB } as never)
        : (x) => x
    )
    const hist = new Map<number, number>()
    for (const b of batches) hist.set(b, (hist.get(b) ?? 0) + 1)
    console.log("batches", batches.length, "elements/batch", [...hist].sort((a, b) => b[1] - a[1]).slice(0, 8))
    console.log("chunk sizes", [...sizes].sort((a, b) => b[1] - a[1]).slice(0, 8))
  }
  const active = variants.filter(([name]) => FILTER.test(name))
  const copy: Array<number> = []
  const samples = new Map<string, Array<number>>(active.map(([name]) => [name, []]))
  const busy = new Map<string, Array<number>>(active.map(([name]) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    gc()
    let t0 = now()
    fs.writeFileSync(path.join(dir, "copy.bin"), fs.readFileSync(source))
    copy.push(now() - t0)
    for (const [name, run] of active) {
      gc()
      const elu0 = performance.eventLoopUtilization()
      t0 = now()
      const out = yield* run
      samples.get(name)!.push(now() - t0)
      busy.get(name)!.push(performance.eventLoopUtilization(elu0).utilization)
      if (out.length !== SIZE || out[SIZE - 1] !== data[SIZE - 1] || out[12345] !== data[12345]) {
        throw new Error(`${name}: wrong bytes`)
      }
    }
    fs.rmSync(path.join(dir, "copy.bin"))
  }
  fs.rmSync(dir, { recursive: true, force: true })
  const baseMs = percentile(copy, 50)
  const baseMin = Math.min(...copy)
  console.log(`64 MiB, ${ROUNDS} rounds, p50; node ${process.version}; gc between samples: ${gc.name !== ""}`)
  console.log(`${"local copy [baseline]".padEnd(44)} ${ms(baseMs).padStart(10)}  100%   (min ${ms(baseMin)})`)
  for (const [name, s] of samples) {
    const p = percentile(s, 50)
    console.log(
      `${name.padEnd(44)} ${ms(p).padStart(10)}  ${((baseMs / p) * 100).toFixed(0).padStart(3)}%   (min ${ms(Math.min(...s))}, ${((baseMin / Math.min(...s)) * 100).toFixed(0)}% of min; event loop busy ${(percentile(busy.get(name)!, 50) * 100).toFixed(0)}%)`
    )
  }
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Live)))
