/**
 * Where a tunnel sandbox's cloudflared comes from, end to end against the Hub emulator: the image's own
 * cloudflared when it is recent enough, else the pinned release downloaded from the emulated release host
 * (github.com answering 302 to its objects host) and verified — and what a bad download does to a start.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import { emulatedHub, emulatorLayer, fastSchedules } from "../support/hub.js"

// Quick Hub retries and stage checks for every sandbox here (see support/hub.ts).
const Env = Layer.merge(emulatedHub(), Schedules.layer(fastSchedules))

const emulator = Testing.HubEmulatorService
const ARCH = process.arch === "arm64" ? "arm64" : "amd64"
const PINNED = "2026.9.1"

const reset = Effect.map(emulator, (emu) => {
  Object.assign(emu.faults, Testing.noFaults())
  return emu
})

const newDownloads = (emu: Testing.HubEmulator, before: number) =>
  Effect.map(emu.downloads, (all) => all.slice(before).map((d) => `${d.host} ${d.status}`))

/** What the job's server left in its cloudflared cache (`~/.cache/hf-sandbox`; HOME is the job's dir). */
const cacheOf = (job: Testing.JobRecord) => {
  const dir = path.join(job.workdir, ".cache", "hf-sandbox")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

const lastJob = Effect.flatMap(emulator, (emu) => Effect.map(emu.jobs, (jobs) => jobs[jobs.length - 1]!))

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("cloudflared in an emulated job", (it) => {
  it.effect("a recent cloudflared in the image is used as it is; nothing is downloaded", () =>
    Effect.gen(function* () {
      const emu = yield* reset
      const before = (yield* emu.downloads).length
      const sb = yield* Sandbox.make({ cloudflared: emu.cloudflaredRelease(PINNED) })
      assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
      assert.deepStrictEqual(yield* newDownloads(emu, before), [])
      const job = yield* lastJob
      assert.isTrue(job.logs.some((line) => /tunnel: using cloudflared \S+ 2026\.8\.2 \(PATH\)/.test(line)))
    }).pipe(Effect.scoped)
  )

  it.effect(
    "an image's cloudflared older than 2026.5.0 is not used: the pinned release is downloaded via the redirect",
    () =>
      Effect.gen(function* () {
        const emu = yield* reset
        emu.faults.cloudflaredOnPath = "2026.4.2"
        const release = emu.cloudflaredRelease(PINNED)
        const before = (yield* emu.downloads).length
        const sb = yield* Sandbox.make({ cloudflared: release })
        assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
        assert.deepStrictEqual(yield* newDownloads(emu, before), [
          "github.com 302",
          "release-assets.githubusercontent.com 200"
        ])
        const [asked] = (yield* emu.downloads).slice(before)
        assert.strictEqual(asked!.path, `/cloudflare/cloudflared/releases/download/${PINNED}/cloudflared-linux-${ARCH}`)
        const job = yield* lastJob
        assert.isTrue(
          job.logs.some(
            (line) =>
              line.includes("not using cloudflared") && line.includes("it is version 2026.4.2, older than 2026.5.0")
          )
        )
        assert.isTrue(job.logs.some((line) => line.includes(`INF Version ${PINNED} `))) // the downloaded one runs
        assert.deepStrictEqual(cacheOf(job), [`cloudflared-${PINNED}-linux-${ARCH}`])
      }).pipe(Effect.scoped)
  )

  it.effect("a download cut short once is retried and the start succeeds", () =>
    Effect.gen(function* () {
      const emu = yield* reset
      emu.faults.cloudflaredOnPath = null
      emu.faults.cloudflaredDownloadTruncated = 1
      const before = (yield* emu.downloads).length
      const sb = yield* Sandbox.make({
        cloudflared: emu.cloudflaredRelease(PINNED),
        env: { SBX_TUNNEL_BACKOFF: "0.05" }
      })
      assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
      const downloads = (yield* emu.downloads).slice(before)
      assert.deepStrictEqual(
        downloads.map((d) => `${d.host} ${d.status}`),
        [
          "github.com 302",
          "release-assets.githubusercontent.com 200",
          "github.com 302",
          "release-assets.githubusercontent.com 200"
        ]
      )
      assert.isBelow(downloads[1]!.bytes, downloads[3]!.bytes)
      const job = yield* lastJob
      assert.isTrue(job.logs.some((line) => line.includes("the download was cut short")))
      assert.deepStrictEqual(cacheOf(job), [`cloudflared-${PINNED}-linux-${ARCH}`])
    }).pipe(Effect.scoped)
  )

  for (const [name, fault, env, expected] of [
    [
      "a checksum mismatch",
      "cloudflaredDownloadCorrupt",
      {},
      "hf-sandbox: tunnel failed: cloudflared download failed verification"
    ],
    [
      "a download cut short every time",
      "cloudflaredDownloadTruncated",
      { SBX_TUNNEL_RESTARTS: "1", SBX_TUNNEL_BACKOFF: "0.05" },
      "the download was cut short"
    ]
  ] as const) {
    it.effect(`${name} fails the start with the server's line, and nothing is left in the cache`, () =>
      Effect.gen(function* () {
        const emu = yield* reset
        emu.faults.cloudflaredOnPath = null
        emu.faults[fault] = 2
        const error = yield* Effect.flip(
          Sandbox.make({ cloudflared: emu.cloudflaredRelease(PINNED), env }).pipe(Effect.scoped)
        )
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "JobFailed")
        assert.include(error.message, expected)
        const job = yield* lastJob
        assert.strictEqual(job.stage, "ERROR")
        assert.deepStrictEqual(cacheOf(job), [])
        assert.isFalse(job.logs.some((line) => line.includes("Requesting new quick Tunnel"))) // never executed
      })
    )
  }

  it.effect("a pinned cloudflared.version older than 2026.5.0 is refused before any job exists", () =>
    Effect.gen(function* () {
      const emu = yield* reset
      const jobs = (yield* emu.jobs).length
      const error = yield* Effect.flip(Sandbox.make({ cloudflared: { version: "2026.4.0" } }).pipe(Effect.scoped))
      assert.strictEqual(error.reason, "InvalidOptions")
      assert.include(error.message, 'cloudflared.version: "2026.4.0" is older than 2026.5.0')
      assert.strictEqual((yield* emu.jobs).length, jobs)
    })
  )
})

/** The provider's public-DNS fallback asks the emulator's public resolver, and reaches its edge. */
const DnsEnv = Layer.unwrapScoped(
  Effect.gen(function* () {
    const emulator = yield* Testing.make({ schedulingDelay: "100 millis" })
    return Layer.mergeAll(
      emulatorLayer(emulator, [emulator.publicDns]),
      Testing.layerDnsFallback(emulator),
      Schedules.layer(fastSchedules)
    )
  })
)

layer(DnsEnv, { excludeTestServices: true, timeout: "60 seconds" })("fresh tunnel names in DNS", (it) => {
  /** The host of the tunnel the job's server announced. */
  const tunnelHost = (emu: Testing.HubEmulator, id: string) =>
    Effect.map(emu.job(id), (job) => {
      const marker = job!.logs.find((line) => line.startsWith("HF_SANDBOX_TUNNEL "))!
      return new URL((JSON.parse(marker.slice("HF_SANDBOX_TUNNEL ".length)) as { url: string }).url).hostname
    })

  const lookupsOf = (emu: Testing.HubEmulator, name: string) =>
    Effect.map(emu.dnsLookups, (all) =>
      all.filter((l) => l.name === name).map((l) => `${l.resolver} ${l.found ? "found" : "missed"}`)
    )

  it.effect("a name the system resolver cached as missing is reached through public DNS, end to end", () =>
    Effect.gen(function* () {
      const emu = yield* reset
      emu.faults.freshTunnelDns = { propagationMs: 0, systemMisses: Number.POSITIVE_INFINITY, publicMisses: 1 }
      const sb = yield* Sandbox.make()
      assert.strictEqual((yield* sb.exec(["python3", "-c", "print(1+1)"])).stdout, "2\n")
      yield* sb.files.write("notes/hello.txt", "through public DNS")
      assert.strictEqual(yield* sb.files.readText("notes/hello.txt"), "through public DNS")
      const lookups = yield* lookupsOf(emu, yield* tunnelHost(emu, sb.id))
      assert.isTrue(lookups.length >= 3, lookups.join(", "))
      // The system resolver never found it; the public one missed once (not propagated), then answered,
      // and from then on the pinned connection served every request without asking again.
      assert.isTrue(lookups.filter((l) => l.startsWith("system")).every((l) => l === "system missed"))
      assert.deepStrictEqual(
        lookups.filter((l) => l.startsWith("public")),
        ["public missed", "public found"]
      )
    }).pipe(Effect.scoped)
  )

  it.effect("a name that resolves only after a few lookups (public DNS no better): the start waits it out", () =>
    Effect.gen(function* () {
      const emu = yield* reset
      emu.faults.freshTunnelDns = { propagationMs: 0, systemMisses: 3, publicMisses: Number.POSITIVE_INFINITY }
      const sb = yield* Sandbox.make()
      assert.strictEqual((yield* sb.exec("echo up")).stdout, "up\n")
      const lookups = yield* lookupsOf(emu, yield* tunnelHost(emu, sb.id))
      assert.deepStrictEqual(lookups.filter((l) => l.startsWith("system")).slice(0, 4), [
        "system missed",
        "system missed",
        "system missed",
        "system found"
      ])
    }).pipe(Effect.scoped)
  )
})
