/**
 * The server parses what a hostile peer sends strictly (issue 12, items 3 and 4): request heads,
 * `Content-Length`, chunked bodies, numeric parameters and JSON bodies. Every malformed input is a 4xx
 * (and a closed connection where the framing is in doubt), never a 500 with a traceback; attacker text
 * never reaches the server's log as terminal control characters; a weak token is refused at start.
 * Real server processes over raw loopback sockets (`test/support/rawHttp.ts`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { waitGone, withTimeout } from "../support/processes.js"
import { exchange, type RawResponse } from "../support/rawHttp.js"
import { type Running, spawnServer, started, startServer, stopServer } from "../support/server.js"

let S: Running

beforeAll(async () => {
  S = await startServer({ prefix: "sbx-strict-" })
})

afterAll(async () => {
  for (const r of started) {
    expect(await stopServer(r)).toEqual({ code: 0, signal: null })
    expect(await waitGone([r.pid])).toEqual([])
  }
})

const auth = () => `X-Sandbox-Token: ${S.token}\r\n`
const head = (requestLine: string, fields = "") => `${requestLine}\r\nHost: x\r\n${auth()}${fields}\r\n`
const HEALTH = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

const json = (r: RawResponse) => JSON.parse(r.body.toString("utf8")) as Record<string, unknown>

/** Exactly one 400 answer, then the server closed: nothing after the bad request was taken as a request. */
const expectRejectedAndClosed = async (payload: string | Buffer, status = 400) => {
  const x = await exchange(S.port, payload, { boundMs: 5_000 })
  expect(x.closed, `connection left open after: ${x.data.toString("latin1")}`).toBe(true)
  expect(x.responses.map((r) => r.status)).toEqual([status])
  expect(json(x.responses[0]!).code).toBeTypeOf("string")
  return x.responses[0]!
}

/** A 4xx JSON answer with no traceback, and no traceback in the server's log either. */
const expectClean4xx = (r: RawResponse | undefined, status = 400) => {
  expect(r?.status).toBe(status)
  const body = json(r!)
  expect(String(body.error)).not.toMatch(/Traceback|internal/)
  expect(body.code).not.toBe("internal")
  expect(S.stderr()).not.toMatch(/Traceback|internal error/)
  return body
}

const oneRequest = async (payload: string | Buffer) => {
  const x = await exchange(S.port, payload, { boundMs: 5_000, until: (rs) => rs.length >= 1 })
  return x.responses[0]
}

const healthy = async () => {
  const x = await exchange(S.port, HEALTH, { until: (rs) => rs.length >= 1 })
  expect(x.responses[0]?.status).toBe(200)
}

describe("request heads", () => {
  it("a malformed header line is a 400 that closes the connection; the headers after it are not dropped silently", async () => {
    // Before: the bad line ended the header block, Content-Length was dropped, and the body
    // (a whole request) was answered as the next request on the connection.
    const smuggled = HEALTH
    for (const bad of [
      "bad header line",
      "Content-Length : 5", // whitespace before the colon (RFC 9112 §5.1: 400)
      " folded: value", // obs-fold
      ": no name",
      "X-Nul: a\u0000b",
      "X-Cr: a\rb"
    ]) {
      const payload = `POST /v1/exec HTTP/1.1\r\nHost: x\r\n${auth()}${bad}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`
      await expectRejectedAndClosed(payload)
    }
    await healthy()
  })

  it("a line ended by a bare LF, a malformed request line or an unknown version is refused", async () => {
    await expectRejectedAndClosed(`GET /health HTTP/1.1\nHost: x\r\n\r\n${HEALTH}`)
    await expectRejectedAndClosed(`GET /health HTTP/1.1\r\nHost: x\n\r\n${HEALTH}`)
    await expectRejectedAndClosed(`GET  /health HTTP/1.1\r\nHost: x\r\n\r\n${HEALTH}`)
    await expectRejectedAndClosed(`GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n${HEALTH}`)
    await expectRejectedAndClosed(`GET /he\u0001alth HTTP/1.1\r\nHost: x\r\n\r\n${HEALTH}`)
    await expectRejectedAndClosed(Buffer.from(`GET /v1/processes/\u00b2/wait HTTP/1.1\r\nHost: x\r\n\r\n`, "latin1"))
    await expectRejectedAndClosed(`GET /health HTTP/2.0\r\nHost: x\r\n\r\n`, 505)
    await expectRejectedAndClosed(`GET /health HTTP/1.x\r\nHost: x\r\n\r\n`)
    await healthy()
  })

  it("an absolute-form target that is no URL is a 400, not a traceback in the log", async () => {
    await expectRejectedAndClosed(`GET http://[::1/health HTTP/1.1\r\nHost: x\r\n\r\n${HEALTH}`)
    expect(S.stderr()).not.toMatch(/Traceback/)
    await healthy()
  })

  it("more than 100 header fields is a 431", async () => {
    const many = Array.from({ length: 101 }, (_, i) => `X-F${i}: v\r\n`).join("")
    await expectRejectedAndClosed(head("GET /health HTTP/1.1", many), 431)
  })

  it("well-formed heads still work: OWS around values, tabs inside, keep-alive across requests", async () => {
    const payload =
      `GET /health HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token:\t ${S.token} \t\r\nX-Odd: a\tb  c\r\n\r\n` +
      head("GET /health HTTP/1.1")
    const x = await exchange(S.port, payload, { until: (rs) => rs.length >= 2 })
    expect(x.responses.map((r) => r.status)).toEqual([200, 200])
    expect(json(x.responses[0]!).version).toBeTypeOf("string")
  })
})

describe("Content-Length", () => {
  it("only ASCII digits, of bounded length: `²`, 5000 digits, signs and lists are a 400", async () => {
    for (const value of [Buffer.from([0xb2]), "9".repeat(5000), "+2", "-0", "2, 2", "0x2", "2 2"]) {
      const payload = Buffer.concat([
        Buffer.from(`POST /v1/exec HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: `),
        Buffer.isBuffer(value) ? value : Buffer.from(value),
        Buffer.from('\r\n\r\n{"cmd":"true"}')
      ])
      const r = await expectRejectedAndClosed(payload)
      expectClean4xx(r)
    }
    await healthy()
  })
})

describe("chunked bodies", () => {
  const chunked = (sizeLine: string, rest = '{"cmd":"true"}\r\n0\r\n\r\n') =>
    `POST /v1/exec HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n${sizeLine}\r\n${rest}`

  it("chunk-size is 1*HEXDIG: `0x`, `+`, `-`, `_` and spaces inside are a 400 that closes", async () => {
    for (const size of ["0xe", "+e", "-0", "0_e", " e", "e e", "", "fffffffffffffffff"]) {
      await expectRejectedAndClosed(chunked(size))
    }
  })

  it("chunk data must end in CRLF", async () => {
    await expectRejectedAndClosed(chunked("e", '{"cmd":"true"}  \n0\r\n\r\n'))
  })

  it("chunk extensions (RFC 9112 §7.1.1) and a few trailer fields are accepted", async () => {
    const x = await exchange(
      S.port,
      chunked(
        'e ; name="quoted \\" value";other=token',
        '{"cmd":"true"}\r\n0;last\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n'
      ),
      { until: (rs) => rs.length >= 1 }
    )
    expect(x.responses[0]?.status).toBe(200)
  })

  it("trailers are bounded: more than 100 trailer lines, or a malformed one, is a 400 that closes", async () => {
    const trailers = Array.from({ length: 101 }, (_, i) => `X-T${i}: v\r\n`).join("")
    // Before: after 100 trailer lines the next line was read as a new request.
    await expectRejectedAndClosed(chunked("e", `{"cmd":"true"}\r\n0\r\n${trailers}\r\n`) + HEALTH)
    await expectRejectedAndClosed(chunked("e", `{"cmd":"true"}\r\n0\r\nnot a field\r\n\r\n`) + HEALTH)
  })
})

describe("numeric parameters", () => {
  const get = (target: string) => oneRequest(head(`GET ${target} HTTP/1.1`))
  const put = (target: string) => oneRequest(head(`PUT ${target} HTTP/1.1`, "Content-Length: 1\r\n") + "x")

  it("offsets and lengths of 2^63 or more, superscript digits and signs are a 400 naming the parameter", async () => {
    const file = encodeURIComponent(path.join(S.dir, "n.txt"))
    fs.writeFileSync(path.join(S.dir, "n.txt"), "abc")
    for (const [target, name] of [
      [`/v1/files/read?path=${file}&offset=9223372036854775808`, "offset"],
      [`/v1/files/read?path=${file}&length=99999999999999999999999`, "length"],
      [`/v1/files/read?path=${file}&offset=%C2%B2`, "offset"],
      [`/v1/files/read?path=${file}&offset=%D9%A3`, "offset"], // ARABIC-INDIC DIGIT THREE
      [`/v1/files/read?path=${file}&offset=+1`, "offset"],
      [`/v1/files/read?path=${file}&offset=${"1".repeat(5000)}`, "offset"]
    ] as const) {
      const body = expectClean4xx(await get(target))
      expect(String(body.error)).toContain(`\`${name}\``)
    }
    for (const [target, name] of [
      [`/v1/files/write?path=${file}&truncate_to=9223372036854775808`, "truncate_to"],
      [`/v1/files/write?path=${file}&truncate_to=%C2%B2`, "truncate_to"],
      [`/v1/files/write?path=${file}&offset=9223372036854775808`, "offset"]
    ] as const) {
      const body = expectClean4xx(await put(target))
      expect(String(body.error)).toContain(`\`${name}\``)
    }
    expect(fs.readFileSync(path.join(S.dir, "n.txt"), "utf8")).toBe("abc")
  })

  it("a signal or a wait timeout in other digits is a 400", async () => {
    const started = await oneRequest(
      head("POST /v1/processes HTTP/1.1", "Content-Length: 18\r\n") + '{"cmd":"sleep 30"}'
    )
    const id = json(started!).id as string
    expectClean4xx(await oneRequest(head(`DELETE /v1/processes/${id}?signal=%C2%B2 HTTP/1.1`)))
    expectClean4xx(await oneRequest(head(`GET /v1/processes/${id}/wait?timeout=%D9%A3 HTTP/1.1`)))
    expectClean4xx(await oneRequest(head(`GET /v1/processes/${id}/wait?timeout=1e3 HTTP/1.1`)))
    expect((await oneRequest(head(`DELETE /v1/processes/${id}?signal=9 HTTP/1.1`)))?.status).toBe(200)
  })
})

describe("pattern parameters", () => {
  it("a transfer id or a mode with a trailing newline is a 400 (a `$` took it), and no file is made", async () => {
    const file = path.join(S.dir, "t.txt")
    const q = encodeURIComponent(file)
    const put = (query: string) =>
      oneRequest(head(`PUT /v1/files/write?path=${q}&${query} HTTP/1.1`, "Content-Length: 1\r\n") + "x")
    expectClean4xx(await put("transfer=abcdefgh%0A"))
    expectClean4xx(await put("mode=644%0A"))
    expect(fs.readdirSync(S.dir).filter((n) => n.includes("t.txt"))).toEqual([])
  })
})

describe("JSON bodies", () => {
  const post = (route: string, body: string | Buffer) => {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body)
    return oneRequest(
      Buffer.concat([Buffer.from(head(`POST ${route} HTTP/1.1`, `Content-Length: ${bytes.length}\r\n`)), bytes])
    )
  }

  it("deeply nested JSON is a 400, not a RecursionError", async () => {
    for (const depth of [100, 100_000]) {
      const body = expectClean4xx(await post("/v1/exec", `{"cmd":${"[".repeat(depth)}${"]".repeat(depth)}}`))
      expect(String(body.error)).toMatch(/nest/)
    }
    // Brackets inside strings are text, not nesting.
    const text = "[".repeat(1000)
    const r = await post("/v1/exec", JSON.stringify({ cmd: ["printf", "%s", text] }))
    expect(r?.status).toBe(200)
    expect(r?.body.toString("utf8")).toContain(text)
  })

  it("a number too large for a float is a 400", async () => {
    expectClean4xx(await post("/v1/exec", `{"cmd":"true","timeout":1${"0".repeat(400)}}`))
  })

  it("a NUL or a lone surrogate in a legacy path is a 400", async () => {
    expectClean4xx(await post("/read", JSON.stringify({ path: "/tmp/a\u0000b" })))
    expectClean4xx(await post("/write", JSON.stringify({ path: "/tmp/a\u0000b", content: "x" })))
    // A lone surrogate is no file name either (JSON can carry one; the file system cannot).
    expectClean4xx(await post("/read", '{"path":"/tmp/a\\ud800b"}'))
    expectClean4xx(await post("/write", `{"path":"${S.dir}/s\\ud800","content":"x"}`))
  })

  it("a huge timeout is honoured as a timeout that never comes: the process is not killed at once", async () => {
    // Before: the pump's wait overflowed poll() and the process was killed as soon as it started.
    const r = await post("/v1/processes", JSON.stringify({ cmd: "sleep 30", timeout: 1e300 }))
    expect(r?.status).toBe(200)
    const id = json(r!).id as string
    const waited = await oneRequest(head(`GET /v1/processes/${id}/wait?timeout=1 HTTP/1.1`))
    expect(waited?.status).toBe(408) // still running after a second
    expect((await oneRequest(head(`DELETE /v1/processes/${id}?signal=9 HTTP/1.1`)))?.status).toBe(200)
    // A streamed exec with the same timeout runs to its exit.
    const e = await post("/v1/exec", JSON.stringify({ cmd: "echo done", timeout: 1e300 }))
    expect(e?.body.toString("utf8")).toMatch(/"event":"exit","exit_code":0/)
    expect(S.stderr()).not.toMatch(/Traceback|failed/)
  })
})

describe("the server's log", () => {
  it("escapes control characters of attacker text: commands, working directories, paths", async () => {
    const evil = "\u001b[2J\u001b]0;pwned\u0007\r\nhf-sandbox rpc-server: forged line\u009b31m\u202e"
    const dir = path.join(S.dir, `d${evil}`)
    fs.mkdirSync(dir)
    const body = JSON.stringify({ cmd: `true # ${evil}`, cwd: dir })
    const r = await oneRequest(head("POST /v1/exec HTTP/1.1", `Content-Length: ${Buffer.byteLength(body)}\r\n`) + body)
    expect(r?.status).toBe(200)
    const log = S.stderr()
    expect(log).toContain("\\x1b[2J")
    const unsafe = [...log].filter((c) => {
      const code = c.codePointAt(0)!
      return (code < 0x20 && c !== "\n") || (code >= 0x7f && code <= 0x9f) || (code >= 0x202a && code <= 0x202e)
    })
    expect(unsafe).toEqual([])
    expect(log).not.toMatch(/^hf-sandbox rpc-server: forged line/m)
  })
})

describe("the token", () => {
  it("a configured token shorter than 128 bits (32 characters) is refused at start, naming its length, never its value", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-strict-token-"))
    try {
      for (const [name, token] of [
        ["SBX_TOKEN", "0123456789abcdef0123456789abcde"],
        ["HF_SANDBOX_TOKEN", "hunter2"]
      ] as const) {
        const s = spawnServer(["--port", "0", "--exit-on-stdin-eof"], { [name]: token }, dir)
        try {
          expect(await withTimeout(s.exited, 15_000)).toEqual({ code: 2, signal: null })
        } finally {
          s.proc.kill("SIGKILL")
        }
        expect(s.stdout()).toBe("")
        expect(s.stderr()).toContain(`${name} is ${token.length} characters`)
        expect(s.stderr()).not.toContain(token)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
    // 32 characters (16 random bytes in hex) is enough.
    const r = await startServer({ token: "0123456789abcdef0123456789abcdef", prefix: "sbx-strict-" })
    const x = await exchange(r.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${r.token}\r\n\r\n`, {
      until: (rs) => rs.length >= 1
    })
    expect(json(x.responses[0]!).version).toBeTypeOf("string")
  })
})
