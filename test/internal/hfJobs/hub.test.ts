/**
 * The Hub API wrapper (src/internal/hfJobs/hub.ts) against servers that misbehave in ways the emulator does
 * not: an endless or looping chain of next-page links, a next link to another host. Real loopback HTTP.
 */
import * as http from "node:http"
import type * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Hub from "../../../src/internal/hfJobs/hub.js"
import { HubError } from "../../../src/SandboxError.js"

const TOKEN = "hf_client_test_0123456789"

interface Seen {
  readonly url: string
  readonly authorization: string | undefined
}

/** A loopback server answering every request with `answer`; records what it got. */
const server = (answer: (req: http.IncomingMessage, res: http.ServerResponse, base: string) => void) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ url: string; seen: Array<Seen>; server: http.Server }>((resolve) => {
          const seen: Array<Seen> = []
          let base = ""
          const s = http.createServer((req, res) => {
            seen.push({ url: req.url ?? "", authorization: req.headers.authorization })
            answer(req, res, base)
          })
          s.listen(0, "127.0.0.1", () => {
            base = `http://127.0.0.1:${(s.address() as net.AddressInfo).port}`
            resolve({ url: base, seen, server: s })
          })
        })
    ),
    ({ server: s }) =>
      Effect.promise(() => new Promise<void>((resolve) => s.close(() => resolve()))).pipe(
        Effect.timeout("2 seconds"),
        Effect.ignore
      )
  )

const job = (id: string) => ({ id, status: { stage: "RUNNING" }, labels: { "hf-sandbox": "1" } })
const noRetry = Schedule.recurs(0)

const client = (endpoint: string) => Hub.make({ endpoint, token: Redacted.make(TOKEN), userAgent: "hf-sandbox-test" })

describe("Hub API wrapper", () => {
  it("reads the RateLimit reset first, then Retry-After", () => {
    const headers = (entries: Record<string, string>) => new Headers(entries)
    assert.strictEqual(Hub.waitAsked(429, headers({ ratelimit: '"api";r=0;t=55', "retry-after": "3" })), 55_000)
    assert.strictEqual(Hub.waitAsked(429, headers({ RateLimit: '"api" ; r = 0 ; t = 7' })), 7_000)
    // Something left in the window: not the reset to wait for.
    assert.strictEqual(Hub.waitAsked(429, headers({ ratelimit: '"api";r=4;t=55', "retry-after": "2" })), 2_000)
    assert.strictEqual(Hub.waitAsked(503, headers({ "retry-after": "9" })), 9_000)
    assert.isUndefined(Hub.waitAsked(429, headers({})))
  })

  it("finds the next link of a Link header in any of its forms", () => {
    assert.strictEqual(
      Hub.nextLink('<https://huggingface.co/api/jobs/a?cursor=x>; rel="next"'),
      "https://huggingface.co/api/jobs/a?cursor=x"
    )
    assert.strictEqual(Hub.nextLink('<https://h/p?1>; rel="prev", <https://h/p?3>; rel=next'), "https://h/p?3")
    assert.strictEqual(Hub.nextLink('<https://h/p?3>; title="a"; REL="last next"'), "https://h/p?3")
    assert.isUndefined(Hub.nextLink('<https://h/p?1>; rel="prev"'))
    assert.isUndefined(Hub.nextLink(undefined))
  })

  it.scopedLive("an endless chain of next links ends in an error, not a loop", () =>
    Effect.gen(function* () {
      const hub = yield* server((req, res, base) => {
        const n = Number(new URL(req.url ?? "/", base).searchParams.get("cursor") ?? "0")
        res.writeHead(200, {
          "content-type": "application/json",
          link: `<${base}/api/jobs/alice?cursor=${n + 1}>; rel="next"`
        })
        res.end(JSON.stringify([job(String(n))]))
      })
      const error = yield* Effect.flip(client(hub.url).listJobs("alice", {}, noRetry, 30))
      assert.include(error.message, "did not end after 30 pages")
      assert.strictEqual(hub.seen.length, 30)
    })
  )

  it.scopedLive("a next link that loops back, or leads to another host, stops the listing; no token goes there", () =>
    Effect.gen(function* () {
      const elsewhere = yield* server((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end("[]")
      })
      // Every page, the second one included, says the next one is the second one.
      const looping = yield* server((_req, res, base) => {
        res.writeHead(200, {
          "content-type": "application/json",
          link: `<${base}/api/jobs/alice?cursor=1>; rel="next"`
        })
        res.end(JSON.stringify([job("x")]))
      })
      const loop = yield* Effect.flip(client(looping.url).listJobs("alice", {}, noRetry))
      assert.include(loop.message, "loop")

      const leaking = yield* server((_req, res) => {
        res.writeHead(200, {
          "content-type": "application/json",
          link: `<${elsewhere.url}/api/jobs/alice?cursor=1>; rel="next"`
        })
        res.end(JSON.stringify([job("y")]))
      })
      const refused = yield* Effect.flip(client(leaking.url).listJobs("alice", { labels: { a: "b" } }, noRetry))
      assert.include(refused.message, new URL(elsewhere.url).host)
      assert.deepStrictEqual(elsewhere.seen, [])
      assert.strictEqual(leaking.seen[0]?.url, "/api/jobs/alice?label=a%3Db")
      assert.strictEqual(leaking.seen[0]?.authorization, `Bearer ${TOKEN}`)
    })
  )

  it.scopedLive("a 429 is retried no sooner than its RateLimit reset; the listing then resumes from that page", () =>
    Effect.gen(function* () {
      let limited = false
      const hub = yield* server((req, res, base) => {
        const cursor = new URL(req.url ?? "/", base).searchParams.get("cursor")
        if (cursor === "1" && !limited) {
          limited = true
          res.writeHead(429, {
            "content-type": "application/json",
            ratelimit: '"api";r=0;t=1',
            "ratelimit-policy": '"fixed window";"api";q=1000;w=300'
          })
          res.end(JSON.stringify({ error: "rate limited" }))
          return
        }
        res.writeHead(200, {
          "content-type": "application/json",
          ...(cursor === null ? { link: `<${base}/api/jobs/alice?cursor=1>; rel="next"` } : {})
        })
        res.end(JSON.stringify([job(cursor ?? "0")]))
      })
      const started = Date.now()
      const jobs = yield* client(hub.url).listJobs("alice", {}, Schedule.recurs(3))
      assert.deepStrictEqual(
        jobs.map((j) => j.id),
        ["0", "1"]
      )
      assert.isAtLeast(Date.now() - started, 1000, "waited for the window's reset")
      assert.deepStrictEqual(
        hub.seen.map((s) => s.url),
        ["/api/jobs/alice", "/api/jobs/alice?cursor=1", "/api/jobs/alice?cursor=1"]
      )
    })
  )

  it.effect("a refused connection is asked again once, not for the whole retry schedule", () =>
    Effect.gen(function* () {
      let attempts = 0
      const refused = Effect.suspend(() => {
        attempts++
        return Effect.fail(
          new HubError({
            operation: "whoami",
            detail: "fetch failed",
            unreachable: { endpoint: "http://127.0.0.1:9", cause: "connect ECONNREFUSED 127.0.0.1:9" }
          })
        )
      })
      const schedule = Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(6)), Schedule.asVoid)
      const fiber = yield* Effect.fork(Effect.flip(Hub.retryTransient(schedule)(refused)))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(attempts, 2)
      assert.strictEqual(error.unreachable?.endpoint, "http://127.0.0.1:9")
      // A 503 still gets the whole schedule.
      let busy = 0
      const unavailable = Effect.suspend(() => {
        busy++
        return Effect.fail(new HubError({ operation: "whoami", status: 503, detail: "busy" }))
      })
      const second = yield* Effect.fork(Effect.flip(Hub.retryTransient(schedule)(unavailable)))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(second)
      assert.strictEqual(busy, 7)
    })
  )
})

describe("Hub API wrapper: one failure mapping for calls, requests and streams", () => {
  const withSource = (endpoint: string) =>
    Hub.make({ endpoint, token: Redacted.make(TOKEN), userAgent: "hf-sandbox-test", tokenSource: "HF_TOKEN" })
  /** The same failure through each way a request is sent: an SDK call, the HttpClient, an SSE stream. */
  const failures = (endpoint: string) =>
    Effect.gen(function* () {
      const hub = withSource(endpoint)
      return {
        call: yield* Effect.flip(hub.getJob("alice", "x")),
        send: yield* Effect.flip(hub.listJobs("alice", {}, noRetry)),
        sse: yield* Effect.flip(Stream.runDrain(hub.logs("alice", "x"))),
        metrics: yield* Effect.flip(Stream.runDrain(hub.metrics("alice", "x")))
      }
    })
  const fields = (error: HubError) => ({
    status: error.status,
    unreachable: error.unreachable?.endpoint,
    tokenSource: error.tokenSource
  })

  it.scopedLive("nothing listening: each marks the Hub unreachable and names the token's source", () =>
    Effect.gen(function* () {
      // A port that was just free: nothing answers there.
      const gone = yield* server(() => undefined)
      yield* Effect.promise(() => new Promise<void>((resolve) => gone.server.close(() => resolve())))
      for (const [way, error] of Object.entries(yield* failures(gone.url))) {
        assert.deepStrictEqual(
          fields(error),
          { status: undefined, unreachable: gone.url, tokenSource: "HF_TOKEN" },
          way
        )
      }
    })
  )

  it.scopedLive("a redirect to another host: each is refused with its 3xx, and no token goes there", () =>
    Effect.gen(function* () {
      const elsewhere = yield* server((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{}")
      })
      const hub = yield* server((_req, res) => {
        res.writeHead(302, { location: `${elsewhere.url.replace("127.0.0.1", "localhost")}/api/jobs/alice` })
        res.end()
      })
      for (const [way, error] of Object.entries(yield* failures(hub.url))) {
        assert.deepStrictEqual(fields(error), { status: 302, unreachable: undefined, tokenSource: "HF_TOKEN" }, way)
        assert.include(error.message, "another host", way)
        // In the Effect API's terms: the layer's option, by its layer.
        assert.include(error.message, "Check HF_ENDPOINT (or the `endpoint` option of HfJobs.layer)", way)
      }
      assert.deepStrictEqual(elsewhere.seen, [])
    })
  )
})
