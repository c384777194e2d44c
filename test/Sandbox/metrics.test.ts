/**
 * Metrics and hardware: the emulator's `GET /api/jobs/hardware` and job metrics stream in the Hub's shapes
 * (read with `@huggingface/hub`, the official client), `HfJobs.hardware()`, and `sb.metrics` on a local
 * sandbox (its server measures) and on an emulated HF sandbox (the Jobs metrics stream).
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Hub from "@huggingface/hub"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as PromiseApi from "hf-sandbox/promise"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import { cancelRaw, emulator } from "../support/hfJobs.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { localLayer } from "../support/local.js"

const hubArgs = (hub: Testing.HubEmulator) => ({ hubUrl: hub.url, accessToken: Redacted.value(hub.token) })

const post = (hub: Testing.HubEmulator, route: string, body?: unknown) =>
  Effect.promise(() =>
    fetch(`${hub.url}${route}`, {
      method: "POST",
      headers: { authorization: `Bearer ${Redacted.value(hub.token)}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    }).then(async (res) => ({
      status: res.status,
      // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field
      json: (await res.json().catch(() => undefined)) as any
    }))
  )

/** The first `n` samples of a job's metrics stream, read as `@huggingface/hub` reads them. */
const firstSamples = (hub: Testing.HubEmulator, jobId: string, n: number) =>
  Effect.promise(async () => {
    // biome-ignore lint/suspicious/noExplicitAny: JSON samples are checked field by field
    const samples: Array<any> = []
    const controller = new AbortController()
    const stream = Hub.streamJobMetrics({
      namespace: hub.user,
      jobId,
      ...hubArgs(hub),
      fetch: (input, init) => fetch(input, { ...init, signal: controller.signal })
    })
    for await (const data of stream) {
      samples.push(JSON.parse(data))
      if (samples.length >= n) break
    }
    controller.abort()
    return samples
  })

describe("Hub emulator: hardware and metrics", () => {
  it.scopedLive("lists the documented catalog, as @huggingface/hub reads it, and creates only its flavors", () =>
    Effect.gen(function* () {
      const hub = yield* Testing.make({ schedulingDelay: "50 millis" })
      const catalog = yield* Effect.promise(() => Hub.listJobHardware({ hubUrl: hub.url }))
      // hub-docs jobs-configuration.md: `hf jobs hardware`.
      assert.deepStrictEqual(catalog[0], {
        name: "cpu-basic",
        prettyName: "CPU Basic",
        cpu: "2 vCPU",
        ram: "16 GB",
        ephemeralStorage: "50 GB",
        accelerator: null,
        unitCostMicroUSD: 167,
        unitCostUSD: 0.000167,
        unitLabel: "minute"
      } as never)
      const largex2 = catalog.find((h) => h.name === "a10g-largex2")!
      assert.deepStrictEqual(largex2.accelerator, {
        type: "gpu",
        model: "A10G",
        quantity: "2",
        vram: "48 GB",
        manufacturer: "Nvidia"
      })
      assert.strictEqual(largex2.unitCostMicroUSD, 50000)
      assert.includeMembers(
        catalog.map((h) => h.name),
        ["cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large", "a100-large", "h200x8"]
      )
      const refused = yield* post(hub, `/api/jobs/${hub.user}`, {
        dockerImage: "python:3.12",
        command: ["true"],
        flavor: "h100"
      })
      assert.strictEqual(refused.status, 400)
      assert.match(refused.json.error, /flavor must be one of cpu-basic, /)
    })
  )

  it.scopedLive("streams a running job's samples as SSE metric events, with zeroed GPUs of its flavor", () =>
    Effect.gen(function* () {
      const hub = yield* Testing.make({ schedulingDelay: "50 millis", metricsInterval: "100 millis" })
      const created = yield* post(hub, `/api/jobs/${hub.user}`, {
        dockerImage: "python:3.12",
        command: ["python3", "-c", "while True: pass"],
        flavor: "a10g-largex2"
      })
      assert.strictEqual(created.status, 200)
      const id: string = created.json.id
      const samples = yield* firstSamples(hub, id, 3)
      for (const sample of samples) {
        assert.deepStrictEqual(Object.keys(sample).sort(), [
          "cpu_millicores",
          "cpu_usage_pct",
          "gpus",
          "memory_total_bytes",
          "memory_used_bytes",
          "replica",
          "rx_bps",
          "tx_bps"
        ])
        assert.isAbove(sample.memory_used_bytes, 0)
        assert.isAbove(sample.memory_total_bytes, 0)
        assert.deepStrictEqual(
          Object.values(sample.gpus),
          [1, 2].map(() => ({ utilization: 0, memory_used_bytes: 0, memory_total_bytes: 24e9 }))
        )
        for (const gpuId of Object.keys(sample.gpus)) assert.match(gpuId, /^[0-9a-f]{8}$/)
      }
      // The job's busy loop shows (the first sample may fall before it ran at all).
      assert.isTrue(samples.some((s) => s.cpu_usage_pct > 0))

      // Its auth and errors are the logs stream's; an ended job is a 500, which clients tolerate.
      const anonymous = yield* Effect.promise(() => fetch(`${hub.url}/api/jobs/${hub.user}/${id}/metrics`))
      assert.strictEqual(anonymous.status, 401)
      const unknown = yield* Effect.promise(() =>
        fetch(`${hub.url}/api/jobs/${hub.user}/0123456789abcdef01234567/metrics`, {
          headers: { authorization: `Bearer ${Redacted.value(hub.token)}` }
        })
      )
      assert.strictEqual(unknown.status, 404)
      yield* post(hub, `/api/jobs/${hub.user}/${id}/cancel`)
      const ended = yield* Effect.promise(() =>
        fetch(`${hub.url}/api/jobs/${hub.user}/${id}/metrics`, {
          headers: { authorization: `Bearer ${Redacted.value(hub.token)}` }
        })
      )
      assert.strictEqual(ended.status, 500)
    })
  )
})

const HfEnv = Layer.merge(
  emulatedHub({ metricsInterval: "100 millis" }),
  Schedules.layer({ ...fastSchedules, logReconnect: fastSchedules.stageCheck })
)

layer(HfEnv, { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs (emulated): hardware and metrics", (it) => {
  it.effect("HfJobs.hardware() decodes the catalog, with the price per hour", () =>
    Effect.gen(function* () {
      const catalog = yield* HfJobs.hardware()
      const byName = new Map(catalog.map((h) => [h.name, h]))
      assert.deepStrictEqual(byName.get("a10g-small"), {
        name: "a10g-small",
        prettyName: "Nvidia A10G - small",
        cpu: "4 vCPU",
        ram: "15 GB",
        storage: "110 GB",
        accelerator: { type: "gpu", model: "A10G", quantity: 1, vram: "24 GB", manufacturer: "Nvidia" },
        unitCostUsd: 0.016667,
        unitCostMicroUsd: 16667,
        unitLabel: "minute",
        pricePerHour: 1
      })
      assert.strictEqual(byName.get("h200x8")?.pricePerHour, 40)
      assert.strictEqual(byName.get("cpu-basic")?.pricePerHour, 0.01)
      assert.strictEqual(byName.get("cpu-basic")?.accelerator, undefined)
    })
  )

  for (const transport of ["tunnel", "proxy"] as const) {
    it.effect(`sb.metrics follows the Jobs metrics stream (${transport})`, () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport, flavor: "t4-small" })
        const samples = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(sb.metrics(), 2)))
        assert.strictEqual(samples.length, 2)
        for (const sample of samples) {
          assert.strictEqual(sample.cpuMillicores % 1000, 0)
          assert.isAbove(sample.memoryTotalBytes, 0)
          assert.isAbove(sample.memoryUsedBytes, 0)
          assert.strictEqual(sample.gpus.length, 1)
          assert.deepInclude(sample.gpus[0], { utilization: 0, memoryUsedBytes: 0, memoryTotalBytes: 16e9 })
        }
        const emu = yield* emulator
        const metricsRequests = (yield* emu.requests).filter((r) => r.route === "metrics")
        assert.isAbove(metricsRequests.length, 0)
      }).pipe(Effect.scoped)
    )
  }

  it.effect("sb.metrics ends once the job has ended: the Hub's stream goes silent, the job's stage says why", () =>
    Effect.gen(function* () {
      // A pass may stay silent for 1 s instead of 10 (ten of the emulator's samples' time, as on the Hub). A
      // pass that ends while the job still runs (a loaded machine's gap between samples) is opened again, so
      // only the job's stage can end the stream, as with the default.
      const sb = yield* Sandbox.make({ transport: "proxy", schedules: { metricsSilence: "1 second" } })
      const first = yield* Deferred.make<void>()
      const samples = yield* Effect.fork(
        Stream.runCount(sb.metrics().pipe(Stream.tap(() => Deferred.succeed(first, void 0))))
      )
      yield* Deferred.await(first)
      yield* cancelRaw(sb.id)
      // The pass stays open and silent (as the Hub's does) for that second; then the stage ends the stream.
      const count = yield* Fiber.join(samples).pipe(Effect.timeout("40 seconds"))
      assert.isAtLeast(count, 1)
    }).pipe(Effect.scoped)
  )
})

layer(localLayer(), { excludeTestServices: true, timeout: "60 seconds" })("local sandbox: metrics", (it) => {
  it.effect("sb.metrics samples the server's processes: a busy loop raises the CPU", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      yield* sb.spawnScoped(["python3", "-c", "while True: pass"])
      // A busy loop shows within a few samples (it may not have run before the first).
      const busy = yield* sb.metrics({ interval: "200 millis" }).pipe(
        Stream.take(20),
        Stream.filter((sample) => {
          assert.isAbove(sample.memoryTotalBytes, 0)
          assert.isAbove(sample.memoryUsedBytes, 0)
          assert.isAbove(sample.cpuMillicores, 0)
          return sample.cpuPercent > 0
        }),
        Stream.runHead
      )
      assert.isTrue(busy._tag === "Some", "no sample showed the busy loop")
      const bad = yield* Effect.flip(Stream.runDrain(sb.metrics({ interval: "1 millis" })))
      assert.strictEqual(bad._tag, "InvalidArgumentError")
      assert.include(bad.message, "interval")
    }).pipe(Effect.scoped)
  )

  it.effect("the stream ends, without an error, when the sandbox's server exits", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const first = yield* Deferred.make<void>()
      const samples = yield* Effect.fork(
        Stream.runCount(sb.metrics({ interval: "100 millis" }).pipe(Stream.tap(() => Deferred.succeed(first, void 0))))
      )
      yield* Deferred.await(first)
      process.kill(sb.details.serverPid as number, "SIGKILL")
      // Joined without a ConnectionLostError: the sandbox ended, and so did its samples.
      const count = yield* Fiber.join(samples).pipe(Effect.timeout("20 seconds"))
      assert.isAtLeast(count, 1)
    }).pipe(Effect.scoped)
  )
})

describe("Promise facade: metrics", () => {
  it("sb.metrics() is an async iterator of samples; leaving the loop ends the stream", async () => {
    const sb = await PromiseApi.Sandbox.create({ provider: "local" })
    try {
      const samples: Array<Sandbox.MetricsSample> = []
      for await (const sample of sb.metrics({ interval: "100 millis" })) {
        samples.push(sample)
        if (samples.length === 2) break
      }
      assert.strictEqual(samples.length, 2)
      assert.isAbove(samples[1]!.memoryTotalBytes, 0)
      // Still usable afterwards: the loop ended only the stream.
      assert.strictEqual((await sb.exec("echo ok")).stdout, "ok\n")
    } finally {
      await sb.terminate()
    }
  })
})
