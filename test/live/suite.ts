/**
 * The live conformance suite: the path a user takes on huggingface.co, plus a check of every fact about
 * the real services that the client relies on. `npm run test:live` runs it against `HF_ENDPOINT` with
 * `HF_TOKEN` (scripts/test-live.ts); `npm test` runs the very same code against the Hub emulator with its
 * realistic delays (test/live.test.ts), so it cannot rot.
 *
 * Every check is recorded, never thrown: a live run must report all it saw, not stop at the first
 * surprise. Facts that are observations rather than requirements (a page size, whether the proxy
 * forwards `Authorization`) are recorded with `ok: true` and their value.
 */
import { createHash, randomBytes } from "node:crypto"
import * as dns from "node:dns"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import { parseMarker } from "../../src/internal/hfJobs/tunnel.js"

/** Where the suite runs: the Hub's URL, a token, and what to start. */
export interface Target {
  /** `huggingface.co` or `emulator`: printed in the report. */
  readonly name: string
  readonly endpoint: string
  readonly token: Redacted.Redacted<string>
  readonly namespace: string
  readonly image: string
  readonly flavor: string
  /** Bytes of the file sent up and back. 64 MiB on the real service. */
  readonly roundTripBytes: number
  /** Execs timed for the exec p50. */
  readonly execSamples: number
  /** Bound on each sandbox start (a real `cpu-basic` queue can take minutes). */
  readonly startTimeout: Duration.DurationInput
  /** Where the tunnel's cloudflared comes from when the image has none (default: the pinned release). */
  readonly cloudflared?: Sandbox.MakeOptions["cloudflared"]
  /**
   * The sandboxes' schedules (default: the library's). The emulator run shortens the quiet window that
   * ends a log snapshot: its logs are replayed in one burst, and four snapshots of 5 s each were half the run.
   */
  readonly schedules?: Sandbox.MakeOptions["schedules"]
}

/** One observation. */
export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

/** Timings per transport, in the form of `bench/`. */
export interface Timings {
  readonly transport: string
  readonly createToFirstCommandMs: number
  readonly execP50Ms: number
  readonly uploadMiBps: number
  readonly downloadMiBps: number
}

/** What a run saw. */
export interface Report {
  readonly target: string
  readonly checks: ReadonlyArray<Check>
  readonly timings: ReadonlyArray<Timings>
}

const MiB = 1024 * 1024

const now = () => performance.now()

const median = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const sha256File = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/** The Hub's headers that tell about rate limits, as seen on one answer. */
const rateLimitHeaders = (headers: Readonly<Record<string, string>>) =>
  ["ratelimit", "ratelimit-policy", "retry-after"]
    .filter((name) => headers[name] !== undefined)
    .map((name) => `${name}: ${headers[name]}`)

/** A collector of checks: each step records what it saw and never fails the run. */
const makeRecorder = () => {
  const checks: Array<Check> = []
  const rateLimit = new Set<string>()
  const record = (name: string, ok: boolean, detail: string) =>
    Effect.sync(() => void checks.push({ name, ok, detail }))
  /** Runs `effect` and records its detail, or its failure as a failed check. */
  const step = <A, E, R>(
    name: string,
    effect: Effect.Effect<{ readonly ok: boolean; readonly detail: string; readonly value?: A }, E, R>
  ) =>
    effect.pipe(
      Effect.tap((r) => record(name, r.ok, r.detail)),
      Effect.map((r) => Option.fromNullable(r.value)),
      Effect.catchAllCause((cause) =>
        Effect.as(record(name, false, `failed: ${String(cause).split("\n").slice(0, 3).join(" ")}`), Option.none<A>())
      )
    )
  return { checks, rateLimit, record, step }
}

type Recorder = ReturnType<typeof makeRecorder>

/** Raw Hub calls, for the facts the library's own calls do not show. */
const makeRaw = (target: Target, recorder: Recorder) =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const authorized = (request: HttpClientRequest.HttpClientRequest) =>
      request.pipe(HttpClientRequest.bearerToken(Redacted.value(target.token)))
    const send = (request: HttpClientRequest.HttpClientRequest) =>
      client.execute(authorized(request)).pipe(
        Effect.tap((response) =>
          Effect.sync(() => {
            for (const header of rateLimitHeaders(response.headers))
              recorder.rateLimit.add(`${response.status} ${header}`)
          })
        )
      )
    const url = (pathname: string) => `${target.endpoint.replace(/\/+$/, "")}${pathname}`
    return { client, send, url }
  })

type Raw = Effect.Effect.Success<ReturnType<typeof makeRaw>>

/** The facts of `GET /api/jobs/{ns}`: page size, `Link`, and whether both filters hold. */
const listFacts = (raw: Raw, target: Target, jobId: string) =>
  Effect.gen(function* () {
    const base = raw.url(`/api/jobs/${encodeURIComponent(target.namespace)}`)
    const labelled = yield* raw.send(HttpClientRequest.get(`${base}?label=hf-sandbox=1`))
    const page = (yield* labelled.json) as ReadonlyArray<{ id: string; labels?: Record<string, string> }>
    const link = labelled.headers.link
    const unfiltered = page.filter((job) => job.labels?.["hf-sandbox"] !== "1").length
    const running = yield* raw.send(HttpClientRequest.get(`${base}?label=hf-sandbox=1&stage=RUNNING`))
    const live = (yield* running.json) as ReadonlyArray<{ id: string; status: { stage: string } }>
    const otherStages = live.filter((job) => job.status.stage !== "RUNNING").length
    return {
      ok: labelled.status === 200 && unfiltered === 0 && otherStages === 0 && live.some((job) => job.id === jobId),
      detail:
        `first page ${page.length} jobs, Link ${link === undefined ? "absent" : `present (${link.slice(0, 80)})`}; ` +
        `label filter ${unfiltered === 0 ? "honoured" : `ignored (${unfiltered} unlabelled)`}; ` +
        `stage filter ${otherStages === 0 ? "honoured" : `ignored (${otherStages} not RUNNING)`}`
    }
  })

/** Time to the first byte of a job's log stream, and the size of the create command the Hub kept. */
const jobFacts = (raw: Raw, target: Target, jobId: string) =>
  Effect.gen(function* () {
    const base = raw.url(`/api/jobs/${encodeURIComponent(target.namespace)}/${jobId}`)
    const start = now()
    const firstByteMs = yield* raw.send(HttpClientRequest.get(`${base}/logs`)).pipe(
      Effect.flatMap((response) => Stream.runHead(response.stream)),
      Effect.map(() => now() - start),
      Effect.scoped,
      Effect.timeout("60 seconds")
    )
    const info = (yield* Effect.flatMap(raw.send(HttpClientRequest.get(base)), (r) => r.json)) as {
      command?: ReadonlyArray<string>
    }
    const commandBytes = Buffer.byteLength(JSON.stringify(info.command ?? []))
    return { firstByteMs, commandBytes }
  })

/** The tunnel host the job announced, from its log. */
const tunnelHost = (jobId: string) =>
  HfJobs.logs(jobId).pipe(
    Stream.filterMap(parseMarker),
    Stream.runLast,
    Effect.map(Option.map((url) => new URL(url).host))
  )

/** Whether this machine's resolver already knows a fresh tunnel name (it may cache a miss for 30 min). */
const systemResolves = (host: string) =>
  Effect.promise(() =>
    dns.promises.lookup(host).then(
      () => "resolves",
      (error: NodeJS.ErrnoException) => `does not resolve yet (${error.code ?? error.message})`
    )
  )

/** One transport end to end: create, first command, execs, a round trip, a followed process, list, logs, end. */
const transportRun = (target: Target, recorder: Recorder, raw: Raw, transport: "tunnel" | "proxy") =>
  Effect.gen(function* () {
    const fsys = yield* FileSystem.FileSystem
    const name = (what: string) => `${transport}: ${what}`
    const started = now()
    const sb = yield* Sandbox.make({
      image: target.image,
      flavor: target.flavor,
      transport,
      lifetime: "20 minutes",
      idleTimeout: "5 minutes",
      startTimeout: target.startTimeout,
      labels: { "hf-sandbox-live": "1" },
      ...(target.cloudflared === undefined ? {} : { cloudflared: target.cloudflared }),
      ...(target.schedules === undefined ? {} : { schedules: target.schedules })
    })
    yield* sb.exec("true")
    const createToFirstCommandMs = now() - started
    yield* recorder.record(
      name("create → first command"),
      true,
      `${(createToFirstCommandMs / 1000).toFixed(1)} s (${sb.id})`
    )

    const samples: Array<number> = []
    for (let i = 0; i < target.execSamples; i++) {
      const t = now()
      yield* sb.exec("true")
      samples.push(now() - t)
    }
    const execP50Ms = median(samples)

    // A round trip of random bytes, compared by digest.
    const dir = yield* fsys.makeTempDirectoryScoped({ prefix: "hf-sandbox-live-" })
    const source = path.join(dir, "up.bin")
    fs.writeFileSync(source, randomBytes(target.roundTripBytes))
    const up0 = now()
    yield* sb.files.upload(source, "live/big.bin")
    const uploadMs = now() - up0
    const back = path.join(dir, "down.bin")
    const down0 = now()
    yield* sb.files.download("live/big.bin", back)
    const downloadMs = now() - down0
    const same = sha256File(source) === sha256File(back)
    const mibps = (ms: number) => target.roundTripBytes / MiB / (ms / 1000)
    yield* recorder.record(
      name(`${target.roundTripBytes / MiB} MiB round trip`),
      same,
      same
        ? `byte-exact, up ${mibps(uploadMs).toFixed(1)} MiB/s, down ${mibps(downloadMs).toFixed(1)} MiB/s`
        : "bytes differ"
    )

    // A background process's output must arrive while it runs (a buffering edge would hold it until the end).
    yield* recorder.step(
      name("background output streams while the process runs"),
      Effect.gen(function* () {
        const proc = yield* sb.spawn("echo first; while [ ! -e live/go ]; do sleep 0.1; done; echo second", {
          tag: "live"
        })
        const lines = yield* proc.output({ follow: true }).pipe(
          Stream.filter((e) => e._tag === "Stdout"),
          Stream.map((e) => ("text" in e ? String(e.text) : "")),
          Stream.tap((text) => (text.includes("first") ? sb.files.write("live/go", "") : Effect.void)),
          Stream.runCollect,
          Effect.timeout("60 seconds")
        )
        const text = Array.from(lines).join("")
        return { ok: text.includes("first") && text.includes("second"), detail: JSON.stringify(text) }
      })
    )

    yield* recorder.step(
      name("HfJobs.list finds it"),
      Effect.map(HfJobs.list(), (jobs) => ({
        ok: jobs.some((job) => job.id === sb.id),
        detail: `${jobs.length} live sandboxes listed`
      }))
    )
    yield* recorder.step(name("list: page size and filters"), listFacts(raw, target, sb.id))
    yield* recorder.step(
      name("job log and create command"),
      Effect.map(jobFacts(raw, target, sb.id), ({ commandBytes, firstByteMs }) => ({
        ok: true,
        detail: `log first byte after ${firstByteMs.toFixed(0)} ms; create command of ${commandBytes} bytes accepted`
      }))
    )
    yield* recorder.step(
      name("logs snapshot"),
      Effect.map(Stream.runCollect(sb.logs()), (lines) => ({
        ok: lines.length > 0,
        detail: `${lines.length} lines`
      }))
    )
    if (transport === "tunnel") {
      yield* recorder.step(
        name("tunnel created from the job; fresh-name DNS"),
        Effect.gen(function* () {
          const host = yield* tunnelHost(sb.id)
          if (Option.isNone(host)) return { ok: false, detail: "no tunnel marker in the job's log" }
          return { ok: true, detail: `${host.value}: system resolver ${yield* systemResolves(host.value)}` }
        })
      )
    } else {
      yield* recorder.step(
        name("does the proxy forward Authorization to the job?"),
        Effect.map(Stream.runCollect(sb.logs()), (lines) => ({
          ok: true,
          detail: Array.from(lines).some((line) => line.includes("foreign Authorization header"))
            ? "yes: the job's server saw the HF token's header (it ignores it)"
            : "no: the job's server never saw an Authorization header other than its own token"
        }))
      )
    }

    yield* sb.terminate
    yield* recorder.step(
      name("terminate ends the job; cancel's answer"),
      Effect.gen(function* () {
        const base = raw.url(`/api/jobs/${encodeURIComponent(target.namespace)}/${sb.id}`)
        const stage = yield* Effect.flatMap(raw.send(HttpClientRequest.get(base)), (r) => r.json).pipe(
          Effect.map((info) => (info as { status: { stage: string } }).status.stage),
          Effect.filterOrFail(
            (s) => ["COMPLETED", "CANCELED", "ERROR", "DELETED"].includes(s),
            (s) => new Error(`the job is still ${s}`)
          ),
          Effect.retry(Schedule.spaced("1 second")),
          Effect.timeout("120 seconds")
        )
        const cancel = yield* raw.send(HttpClientRequest.post(`${base}/cancel`))
        const body = yield* cancel.text
        return {
          ok: ["COMPLETED", "CANCELED"].includes(stage) && cancel.status < 300,
          detail: `stage ${stage}; cancel of an ended job answers ${cancel.status} with ${body.length === 0 ? "an empty body" : `${body.length} bytes`}`
        }
      })
    )
    return {
      transport,
      createToFirstCommandMs,
      execP50Ms,
      uploadMiBps: mibps(uploadMs),
      downloadMiBps: mibps(downloadMs)
    } satisfies Timings
  }).pipe(Effect.scoped)

/** Runs the whole suite on `target`; never fails: what went wrong is in the report. */
export const run = (target: Target) =>
  Effect.gen(function* () {
    const recorder = makeRecorder()
    const raw = yield* makeRaw(target, recorder)
    const timings: Array<Timings> = []
    for (const transport of ["tunnel", "proxy"] as const) {
      const result = yield* transportRun(target, recorder, raw, transport).pipe(
        Effect.map(Option.some),
        Effect.catchAllCause((cause) =>
          Effect.as(
            recorder.record(
              `${transport}: sandbox`,
              false,
              `failed: ${String(cause).split("\n").slice(0, 4).join(" ")}`
            ),
            Option.none<Timings>()
          )
        )
      )
      if (Option.isSome(result)) timings.push(result.value)
    }
    yield* recorder.record(
      "rate-limit headers seen",
      true,
      recorder.rateLimit.size === 0 ? "none on any answer" : [...recorder.rateLimit].join("; ")
    )
    return { target: target.name, checks: recorder.checks, timings } satisfies Report
  })

/** The report as text, like the benchmarks print theirs. */
export const format = (report: Report): string => {
  const lines = [`hf-sandbox live conformance: ${report.target} (${os.hostname()}, ${new Date().toISOString()})`, ""]
  for (const check of report.checks) lines.push(`${check.ok ? "ok  " : "FAIL"}  ${check.name}: ${check.detail}`)
  lines.push("", "transport  create→first command  exec p50   upload      download")
  for (const t of report.timings) {
    lines.push(
      `${t.transport.padEnd(9)}  ${`${(t.createToFirstCommandMs / 1000).toFixed(2)} s`.padEnd(20)}  ` +
        `${`${t.execP50Ms.toFixed(1)} ms`.padEnd(9)}  ${`${t.uploadMiBps.toFixed(1)} MiB/s`.padEnd(10)}  ${t.downloadMiBps.toFixed(1)} MiB/s`
    )
  }
  const failed = report.checks.filter((c) => !c.ok).length
  lines.push("", `${report.checks.length - failed} checks ok, ${failed} not`)
  return lines.join("\n")
}
