/**
 * A bounded, seeded, loopback-only fuzz suite for the server's HTTP framing, query parsing and JSON
 * bodies (issue 12, item 5). Each case is one fresh connection to a real server process: bytes derived
 * from a valid request (mutated head, odd framing, odd numbers, odd JSON), sent with a half-close, so
 * the server has all there is and must answer or close within a bound.
 *
 * Invariants, for every input: no 500 (505 for an unknown HTTP version is fine), only HTTP comes back, no
 * more responses than requests (unless byte mutations or a deliberately wrong length made the count
 * unknowable: a body or a bad header line answered as a request is smuggling), the connection ends
 * within the bound, the server's log shows no traceback, and `/health` answers after the run (and every
 * 100 cases).
 *
 * `npm test` runs a few hundred cases (a few seconds). `FUZZ_ITERATIONS=100000` runs longer;
 * `FUZZ_SEED=<n>` picks another sequence, and a failure prints the seed, the case's index and its bytes,
 * so `FUZZ_SEED=<n> FUZZ_ONLY=<index>` replays exactly that case.
 *
 * Nothing here can run an arbitrary command or touch a file outside the server's temp directory:
 * commands are `true` (never mutated byte by byte) or a path that cannot exist, and every path a
 * writing route gets is built inside that directory from names without `/`.
 */
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { waitGone } from "../support/processes.js"
import { exchange } from "../support/rawHttp.js"
import { type Running, started, startServer, stopServer } from "../support/server.js"

const envInt = (name: string, fallback: number) => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`)
  return n
}

const SEED = envInt("FUZZ_SEED", 20261205)
const ITERATIONS = envInt("FUZZ_ITERATIONS", 400)
const ONLY = process.env.FUZZ_ONLY === undefined ? undefined : envInt("FUZZ_ONLY", 0)
const PARALLEL = 4
/** How long a half-closed connection may stay open: generous, for a loaded 2-core machine. */
const BOUND_MS = 15_000

/** mulberry32: a tiny deterministic PRNG, one per case (seed and index), so any case replays alone. */
const rng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Rand = ReturnType<typeof rng>
const int = (r: Rand, n: number) => Math.floor(r() * n)
const pick = <A>(r: Rand, xs: ReadonlyArray<A>): A => xs[int(r, xs.length)]!

// ---- building blocks ----

/** Numbers as a parameter or a length may be written, valid or not. */
const NUMBERS = [
  "0",
  "1",
  "7",
  "65",
  "9223372036854775807",
  "9223372036854775808",
  "18446744073709551616",
  "9".repeat(30),
  "1".repeat(5000),
  "-1",
  "+1",
  "-0",
  "0x10",
  "1_0",
  "1e3",
  "1.5",
  " 1",
  "1 ",
  "%C2%B2",
  "%D9%A3",
  "%EF%BC%91", // FULLWIDTH DIGIT ONE
  "%00",
  "%0A",
  "",
  "inf",
  "nan",
  "0.000000001",
  "999999999999.999999999"
]

/** Bytes that framing parsers disagree on. */
const ODD = [
  "\r",
  "\n",
  "\r\n",
  "\0",
  " ",
  "\t",
  ":",
  ";",
  ",",
  '"',
  "\\",
  "\x0b",
  "\x0c",
  "\x7f",
  "\x80",
  "\xb2",
  "\xff",
  "%",
  "?",
  "#",
  "/"
]

/** A file name without `/` (so never `..` as a component that goes up), sometimes odd. */
const name = (r: Rand) => {
  const chars = ["a", "b", "z", "0", ".", "-", "_", "%00", "%0A", "%1B", "%C2%B2", "%FF", "+", "%20", "~"]
  let out = ""
  const n = 1 + int(r, 8)
  for (let i = 0; i < n; i++) out += pick(r, chars)
  return out === "." || out === ".." ? "f" : out
}

const odd = (r: Rand) => pick(r, NUMBERS)

const jsonValue = (r: Rand, depth: number): unknown => {
  switch (int(r, depth > 3 ? 6 : 8)) {
    case 0:
      return null
    case 1:
      return r() < 0.5
    case 2:
      return pick(r, [0, -1, 1.5, 1e300, -1e300, 2 ** 63, 5e-324, 64 * 1024 * 1024 + 1])
    case 3:
      return pick(r, ["", "x", "\u0000", "\u001b[2J", "\ud800", "é", "a".repeat(300)])
    case 4:
      return pick(r, ["true", "utf-8", "base64", "TERM", "p-1"])
    case 5:
      return { [pick(r, ["a", "", "=", "\u0000"])]: pick(r, ["x", "\u0000"]) }
    case 6:
      return Array.from({ length: int(r, 3) }, () => jsonValue(r, depth + 1))
    default:
      return { k: jsonValue(r, depth + 1) }
  }
}

/** A JSON body for an exec-like route: the command `true`, other fields random (or a whole odd body). */
const execBody = (r: Rand, dir: string): string => {
  if (r() < 0.15) {
    return pick(r, [
      `{"cmd":${"[".repeat(100 + int(r, 5000))}`,
      `{"cmd":"true","timeout":1${"0".repeat(300 + int(r, 200))}}`,
      `{"cmd":"true","timeout":${odd(r).replace(/%../g, "") || "0"}}`,
      "[]",
      "null",
      '"x"',
      "{",
      '{"cmd":"true"}garbage',
      '{"cmd":"tr\\u0000ue"}',
      "\xff\xfe",
      `{"cmd":"true","env":{"A":${"[".repeat(70)}${"]".repeat(70)}}}`
    ])
  }
  const body: Record<string, unknown> = {
    cmd: pick(r, ["true", ["true"], ["/nonexistent/hf-sandbox-fuzz"], "", [], 5, null, [""]])
  }
  for (const field of [
    "shell",
    "env",
    "cwd",
    "timeout",
    "stdin",
    "stdin_b64",
    "encoding",
    "buffer_bytes",
    "tag",
    "idempotency_key",
    "stdin_pipe"
  ]) {
    if (r() < 0.25) body[field] = jsonValue(r, 0)
  }
  if (r() < 0.2) body.cwd = path.join(dir, name(r))
  if (r() < 0.2) body.timeout = pick(r, [1e300, 1e-9, 0.5, 86400 * 365 * 1000])
  return JSON.stringify(body)
}

interface Template {
  readonly method: string
  readonly target: string
  readonly body?: string
  /** Its bytes may be mutated at random: it can neither run a command nor write a file. */
  readonly mutable: boolean
}

/** A request as a client would send it, before the framing is tampered with. */
const template = (r: Rand, dir: string, token: string): Template => {
  const inDir = () => encodeURIComponent(path.join(dir, name(r)))
  const q = (k: string) => `${k}=${r() < 0.6 ? odd(r) : String(int(r, 100))}`
  switch (int(r, 14)) {
    case 0:
      return { method: "GET", target: "/health", mutable: true }
    case 1:
      return { method: "GET", target: `/v1/files/read?path=${inDir()}&${q("offset")}&${q("length")}`, mutable: true }
    case 2:
      return { method: "GET", target: `/v1/files/stat?path=${inDir()}&symlink_targets=${odd(r)}`, mutable: true }
    case 3:
      return {
        method: "GET",
        target: `/v1/files/list?path=${encodeURIComponent(dir)}&recursive=${pick(r, ["1", "0", odd(r)])}`,
        mutable: false
      }
    case 4:
      return {
        method: "PUT",
        target: `/v1/files/write?path=${inDir()}&${q(pick(r, ["offset", "truncate_to"]))}&mode=${pick(r, ["644", "0o7777", "99", odd(r)])}`,
        // Sometimes a whole authenticated request: a parser that loses the body's framing would run it.
        body:
          r() < 0.6
            ? `GET /v1/processes HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${token}\r\n\r\n`
            : "x".repeat(int(r, 40)),
        mutable: false
      }
    case 5:
      return { method: "POST", target: "/v1/exec", body: execBody(r, dir), mutable: false }
    case 6:
      return { method: "POST", target: "/v1/processes", body: execBody(r, dir), mutable: false }
    case 7:
      return {
        method: pick(r, ["GET", "POST"]),
        target: `/v1/processes/${pick(r, ["p-1", "1", odd(r)])}/wait?timeout=${odd(r)}`,
        mutable: true
      }
    case 8:
      return {
        method: "DELETE",
        target: `/v1/processes/${pick(r, ["p-1", odd(r)])}?signal=${pick(r, ["TERM", "0", "64", odd(r)])}`,
        mutable: true
      }
    case 9:
      return {
        method: "GET",
        target: `/v1/processes/p-1/output?stdout_offset=${odd(r)}&stderr_offset=${odd(r)}`,
        mutable: true
      }
    case 10:
      return {
        method: "POST",
        target: "/read",
        body: JSON.stringify({ path: pick(r, ["", "/nonexistent\u0000x", "/nonexistent/\ud800", 5, "/nonexistent"]) }),
        mutable: true
      }
    case 11:
      return {
        method: "POST",
        target: "/exec",
        body: '{"cmd":"/nonexistent/hf-sandbox-fuzz","timeout":1e300}',
        mutable: true
      }
    case 12:
      return { method: "POST", target: `/v1/files/mkdir?path=${inDir()}&parents=${odd(r)}`, mutable: false }
    default:
      return { method: "POST", target: `/v1/files/rename?from=${inDir()}&to=${inDir()}`, mutable: false }
  }
}

/** Frames a template: Content-Length (sometimes odd) or chunked (sometimes odd), maybe a second request after it. */
/** The bytes of a request (maybe two, pipelined), and how many requests a correct parser sees in them. */
const frame = (r: Rand, t: Template, token: string): { payload: string; requests: number } => {
  const body = t.body ?? ""
  const fields: Array<string> = ["Host: x"]
  let misframed = false
  // Sometimes in absolute form, as a proxy may send it (the path, and so what the route touches, is the same).
  const target =
    r() < 0.1 ? pick(r, ["http://x", "http://[::1", "http://x:99999", "HTTP://x", "//x"]) + t.target : t.target
  if (r() < 0.95) {
    const value = r() < 0.9 ? token : "wrong"
    fields.push(pick(r, [`X-Sandbox-Token: ${value}`, `x-sandbox-token:${value}`, `Authorization: Bearer ${value}`]))
  }
  let payload: string
  const chunked = body.length > 0 && r() < 0.3
  if (chunked) {
    fields.push(
      pick(r, [
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding:chunked"
      ])
    )
    if (r() < 0.1) fields.push(`Content-Length: ${body.length}`)
    const size = (n: number) =>
      r() < 0.8
        ? n.toString(16)
        : pick(r, [
            `0x${n.toString(16)}`,
            `+${n.toString(16)}`,
            `${n.toString(16)};x=y`,
            `${n.toString(16)} ;x="a b"`,
            `0${n.toString(16)}`,
            `${n.toString(16)}_`,
            "-0",
            ""
          ])
    const cut = int(r, body.length + 1)
    const parts = [body.slice(0, cut), body.slice(cut)].filter((p) => p.length > 0)
    let bodyBytes = parts
      .map((p) => `${size(Buffer.byteLength(p))}\r\n${p}${r() < 0.95 ? "\r\n" : pick(r, ["\n", "", "  \r\n"])}`)
      .join("")
    bodyBytes += `0\r\n${r() < 0.2 ? Array.from({ length: pick(r, [1, 99, 100, 101]) }, (_, i) => `T${i}: v\r\n`).join("") : ""}\r\n`
    payload = `${t.method} ${target} HTTP/1.1\r\n${fields.join("\r\n")}\r\n\r\n${bodyBytes}`
  } else {
    const length = Buffer.byteLength(body)
    if (body.length > 0 || r() < 0.3) {
      const exact = r() < 0.8
      // A valid length other than the body's makes the rest of the body the next request, rightly.
      if (!exact) misframed = true
      fields.push(
        `Content-Length: ${exact ? length : pick(r, [`${length}, ${length}`, `+${length}`, `0${length}`, "\xb2", odd(r)])}`
      )
    }
    if (r() < 0.05) fields.push(`Content-Length: ${length + 1}`)
    payload = `${t.method} ${target} HTTP/1.1\r\n${fields.join("\r\n")}\r\n\r\n${body}`
  }
  const pipelined = r() < 0.3
  if (pipelined) payload += `GET /health HTTP/1.1\r\nHost: x\r\n\r\n`
  return { payload, requests: misframed ? Number.POSITIVE_INFINITY : pipelined ? 2 : 1 }
}

/** A malformed field line inside the head (never in the request line or the body). */
const badFieldLine = (r: Rand, s: string): string => {
  const headEnd = s.indexOf("\r\n\r\n")
  const lineEnds: Array<number> = []
  for (let at = s.indexOf("\r\n"); at >= 0 && at < headEnd; at = s.indexOf("\r\n", at + 2)) lineEnds.push(at)
  const at = pick(r, lineEnds)
  const line = pick(r, [
    "bad line",
    " folded",
    "X: a\0b",
    "X-Cr: a\rb",
    ": v",
    "X : v",
    "Content-Length : 3",
    "X:\u00b2\x01"
  ])
  return `${s.slice(0, at)}\r\n${line}${s.slice(at)}`
}

/** Byte-level mutations of a head that can neither run a command nor write a file. */
const mutate = (r: Rand, s: string): string => {
  let out = s
  const n = 1 + int(r, 3)
  for (let i = 0; i < n; i++) {
    const at = int(r, out.length + 1)
    switch (int(r, 6)) {
      case 0:
        out = out.slice(0, at) + pick(r, ODD) + out.slice(at)
        break
      case 1:
        out = out.slice(0, at) + out.slice(at + 1)
        break
      case 2:
        out = out.slice(0, at) + pick(r, ODD) + out.slice(at + 1)
        break
      case 3: {
        const lineEnd = out.indexOf("\r\n", at)
        if (lineEnd > 0)
          out = `${out.slice(0, lineEnd)}\r\n${pick(r, ["bad line", " folded", "X: a\0b", "Content-Length: 3", "Transfer-Encoding: chunked", ": v", "X : v"])}${out.slice(lineEnd)}`
        break
      }
      case 4:
        out = out.slice(0, at)
        break
      default:
        out = out.replace(
          "HTTP/1.1",
          pick(r, ["HTTP/1.0", "HTTP/2.0", "HTTP/1.9", "HTTP/0.9", "http/1.1", "HTTP/1.1 ", "HTTP/11"])
        )
    }
  }
  return out
}

interface Case {
  readonly input: Buffer
  /** At most this many responses: more means a body or a bad line was read as a request (smuggling). */
  readonly maxResponses: number
}

const fuzzCase = (index: number, dir: string, token: string): Case => {
  const r = rng((SEED ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0)
  const t = template(r, dir, token)
  const framed = frame(r, t, token)
  let payload = framed.payload
  // Byte-level mutations can make anything of the bytes (two requests of one); a bad field line cannot.
  let maxResponses = framed.requests
  if (t.mutable && r() < 0.6) {
    payload = mutate(r, payload)
    maxResponses = Number.POSITIVE_INFINITY
  } else if (r() < 0.35) payload = badFieldLine(r, payload)
  return { input: Buffer.from(payload, "latin1"), maxResponses }
}

// ---- the run ----

let S: Running

beforeAll(async () => {
  S = await startServer({ prefix: "sbx-fuzz-" })
})

afterAll(async () => {
  for (const r of started) {
    expect(await stopServer(r)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid])).toEqual([])
  }
})

const healthy = async () => {
  const x = await exchange(S.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", { until: (rs) => rs.length >= 1 })
  return x.responses[0]?.status === 200
}

describe(`server fuzz (seed ${SEED}, ${ONLY === undefined ? `${ITERATIONS} cases` : `case ${ONLY}`})`, () => {
  it(
    "never a 500, never a hang, never a traceback; healthy after",
    async () => {
      const indices = ONLY === undefined ? Array.from({ length: ITERATIONS }, (_, i) => i) : [ONLY]
      const failures: Array<string> = []
      const report = (index: number, input: Buffer, why: string) =>
        failures.push(
          `FUZZ_SEED=${SEED} FUZZ_ONLY=${index}: ${why}\n  input (latin1, JSON-escaped): ${JSON.stringify(input.toString("latin1")).slice(0, 2000)}`
        )
      let next = 0
      const logSeen = S.stderr().length
      const worker = async () => {
        while (next < indices.length && failures.length === 0) {
          const index = indices[next++]!
          const { input, maxResponses } = fuzzCase(index, S.dir, S.token)
          const x = await exchange(S.port, input, { boundMs: BOUND_MS, halfClose: true })
          const text = x.data.toString("latin1")
          // Responses as framed (a response may follow a body directly), else status lines (a stream cut short).
          const framed = x.responses.map((res) => res.status)
          const lines = [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
          const statuses = framed.length >= lines.length ? framed : lines
          if (!x.closed)
            report(index, input, `the connection was still open ${BOUND_MS} ms after the request was complete`)
          else if (statuses.some((s) => s >= 500 && s !== 505))
            report(index, input, `answered ${statuses.join(", ")}: ${text.slice(0, 500)}`)
          else if (statuses.length > maxResponses)
            report(index, input, `${statuses.length} responses to ${maxResponses} request(s): ${text.slice(0, 1000)}`)
          else if (text.length > 0 && !text.startsWith("HTTP/1.1 "))
            report(index, input, `answered something that is not HTTP: ${text.slice(0, 200)}`)
          else if (/Traceback|internal error/.test(S.stderr().slice(logSeen))) {
            // Cases run PARALLEL at a time: the culprit is this one or one beside it (FUZZ_ONLY tells).
            report(
              index,
              input,
              `the server logged (this case or one run beside it): ${S.stderr().slice(logSeen, logSeen + 2000)}`
            )
          } else if (S.proc.exitCode !== null || S.proc.signalCode !== null) report(index, input, "the server exited")
          else if (index % 100 === 99 && !(await healthy()))
            report(index, input, "/health did not answer 200 after this case")
        }
      }
      await Promise.all(Array.from({ length: PARALLEL }, worker))
      if (failures.length > 0) console.error(failures.join("\n"))
      expect(failures).toEqual([])
      expect(await healthy()).toBe(true)
    },
    Math.max(60_000, ITERATIONS * 200)
  )
})
