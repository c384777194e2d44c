/**
 * The server's start does without the modules only some requests need (issue 13, start-up time). What
 * replaced a standard module on the way must read its input exactly as that module did: the request's
 * query (`httpframe.parse_query` for `urllib.parse.parse_qs`) and the command line (`options.scan`
 * for argparse), each checked here against the interpreter's own on edge cases and seeded random input,
 * and the reason phrases the server knows without `http.HTTPStatus` (`common.reason_phrase`) are its.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { PYTHON, SERVER, serverPython, startServer, stopServer } from "../support/server.js"

const QUERY_CHECK = `
import json, random, sys, urllib.parse
sys.path.insert(0, sys.argv[1])
from sbx_server.httpframe import parse_query

cases = ["", "&", "&&", "a", "a=", "=b", "=", "a=1&a=2&b=3&a=", "a=b=c", "&&a=1&&", "a=1;b=2",
         "a+b=c+d", "%41%42=%43", "a=%4", "a=%", "a=%zz", "a=%%41", "a=%2B", "a=%+1", "a=%-1", "a=% 1",
         "p=%C3%A9", "p=%c3%a9t%C3%a9", "p=%FF%FE", "p=%ED%A0%80", "p=%00", "p=%e2%80", "%=%", "a=1&A=2"]
rng = random.Random(13)
alphabet = "%%%&&==++;aAfF09gG" + "".join(chr(c) for c in range(0x21, 0x7F))
for _ in range(8000):
    cases.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))))
for _ in range(1000):  # percent-encoded bytes, valid UTF-8 or not
    cases.append("p=" + "".join("%%%02X" % rng.randrange(256) for _ in range(rng.randrange(1, 6))))

def stdlib(query):
    return urllib.parse.parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")

wrong = [c for c in cases if parse_query(c) != stdlib(c)]
print(json.dumps({"checked": len(cases), "wrong": [[c, repr(parse_query(c)), repr(stdlib(c))] for c in wrong[:5]]}))
`

const OPTIONS_CHECK = `
import io, json, random, sys
sys.path.insert(0, sys.argv[1])
from sbx_server import options

parser = options.parser()
names = [name for name, _metavar, _help in options.OPTIONS]
words = names + ["0", "127.0.0.1", "", "x", "5.5", "-1", "-x", "--", "-h", "--help", "--hos", "--port=1", "a b", "-a b"]
cases = [
    ["--host", "127.0.0.1", "--port", "0"],
    ["--host", "127.0.0.1", "--port", "0", "--idle-timeout", "0.5", "--start-grace", "30", "--lifetime", "60"],
    ["--host", "0.0.0.0", "--port", "7860", "--idle-timeout", "600"],
    ["--host", "127.0.0.1", "--port", "0", "--tunnel", "--exit-on-stdin-eof", "--supervise"],
]
rng = random.Random(13)
for _ in range(3000):
    cases.append([rng.choice(words) for _ in range(rng.randrange(0, 7))])

def argparse_reading(argv):
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        return vars(parser.parse_args(argv))
    except SystemExit:
        return "exits"
    finally:
        sys.stderr = stderr

scanned, wrong = 0, []
for argv in cases:
    mine = options.scan(argv)
    if mine is not None:
        scanned += 1
        if vars(mine) != argparse_reading(argv):
            wrong.append([argv, vars(mine), argparse_reading(argv)])
print(json.dumps({"scanned": scanned, "scannedEnough": scanned > 300, "wrong": wrong[:5]}))
`

const REASONS_CHECK = `
import json, sys
from http import HTTPStatus
sys.path.insert(0, sys.argv[1])
from sbx_server import common

statuses = sorted(common._REASONS) + [s.value for s in HTTPStatus] + [299, 499, 600]
wrong = [s for s in statuses if common.reason_phrase(s) != (HTTPStatus(s).phrase if s in HTTPStatus._value2member_map_ else "Unknown")]
print(json.dumps({"known": len(common._REASONS), "wrong": wrong}))
`

/**
 * The modules a server imports before it listens (python's -X importtime): the lines on stderr before
 * its log line "started" (written just before the listening line; one pipe, so in order). Then stopped.
 */
const importedAtStart = (): Promise<Set<string>> =>
  new Promise((resolve, reject) => {
    const proc = spawn(
      PYTHON,
      ["-X", "importtime", "-u", "-S", SERVER, "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"],
      { env: { ...process.env, SBX_TOKEN: randomBytes(32).toString("hex") }, stdio: ["pipe", "ignore", "pipe"] }
    )
    let stderr = ""
    let modules: Set<string> | undefined
    proc.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
      const started = stderr.indexOf("rpc-server: started:")
      if (modules !== undefined || started < 0) return
      const lines = stderr.slice(0, started).split("\n")
      modules = new Set(lines.flatMap((l) => (l.startsWith("import time:") ? [l.split("|")[2]!.trim()] : [])))
      proc.stdin.end()
    })
    proc.once("exit", (code) =>
      modules === undefined ? reject(new Error(`exited (${code}): ${stderr}`)) : resolve(modules)
    )
  })

/** A guard against a hang inside the test's own timeout, not a measure of speed. */
const IDLE_MS = 30_000

/**
 * Requests in turn on one keep-alive connection: each answer's status line, read to the end of its
 * Content-Length before the next request is sent; fewer where the server closes the connection. A
 * connection silent for `IDLE_MS` fails, naming the request it waited on and what it had read.
 */
const onOneConnection = (port: number, requests: ReadonlyArray<string>): Promise<Array<string>> =>
  new Promise((resolve, reject) => {
    const statuses: Array<string> = []
    let buffer = Buffer.alloc(0)
    const socket = net.connect({ host: "127.0.0.1", port }, () => socket.write(requests[0]!))
    socket.on("error", reject)
    socket.setTimeout(IDLE_MS, () => {
      reject(
        new Error(
          `no answer to request ${statuses.length + 1} of ${requests.length} within ${IDLE_MS} ms of silence; ` +
            `answers so far: ${JSON.stringify(statuses)}, unread: ${JSON.stringify(buffer.toString("latin1"))}`
        )
      )
      socket.destroy()
    })
    socket.on("close", () => resolve(statuses)) // closed early by the server: the answers so far
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      const end = buffer.indexOf("\r\n\r\n")
      if (end < 0) return
      const head = buffer.subarray(0, end).toString("latin1")
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? Number.NaN)
      if (buffer.length < end + 4 + length) return
      buffer = buffer.subarray(end + 4 + length)
      statuses.push(head.split("\r\n")[0]!)
      if (statuses.length === requests.length) {
        socket.end()
        resolve(statuses)
      } else socket.write(requests[statuses.length]!)
    })
  })

describe("the server's start", () => {
  it("imports none of the modules that only routes other than /health, --help, --supervise or --tunnel need", async () => {
    const modules = await importedAtStart()
    expect(modules.has("sbx_server.handler")).toBe(true) // what it imports is seen
    const needless = (
      "argparse http http.server http.client email ssl hashlib hmac shutil subprocess urllib.parse base64 " +
      "sbx_server.supervisor sbx_server.tunnel sbx_server.tunnel_config sbx_server.routes sbx_server.background " +
      "sbx_server.execution sbx_server.launch sbx_server.transfers sbx_server.files sbx_server.ports sbx_server.proxy " +
      "sbx_server.proctree"
    ).split(" ")
    expect(needless.filter((name) => modules.has(name))).toEqual([])
  })

  it("serves the routes, loaded at the first request of one, on a connection opened before and on later ones", async () => {
    const server = await startServer()
    try {
      const get = (target: string) => `GET ${target} HTTP/1.1\r\nHost: x\r\nX-Sandbox-Token: ${server.token}\r\n\r\n`
      // list_from is RoutedHandler's (ListRoutes'), which route_list calls through self.
      const list = `/v1/files/list?path=${encodeURIComponent(server.dir)}`
      // Opened while the server holds only Handler: /health, then a route (the handler becomes a RoutedHandler).
      expect(await onOneConnection(server.port, [get("/health"), get(list), get("/health")])).toEqual([
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK"
      ])
      const later = await fetch(`${server.base}${list}`, {
        headers: { "X-Sandbox-Token": server.token }
      })
      expect(later.status).toBe(200)
    } finally {
      await stopServer(server)
    }
  })

  it("parses the query as urllib.parse.parse_qs does, on edge cases and 9,000 seeded random queries", async () => {
    expect(await serverPython(QUERY_CHECK)).toEqual({ checked: 9029, wrong: [] })
  })

  it("answers every status with http.HTTPStatus's reason phrase, without importing it for the usual ones", async () => {
    expect(await serverPython(REASONS_CHECK)).toMatchObject({ wrong: [] })
  })

  it("scans the command line as argparse reads it, and leaves to argparse what it cannot be sure of", async () => {
    expect(await serverPython(OPTIONS_CHECK)).toMatchObject({ scannedEnough: true, wrong: [] })
  })
})
