/**
 * The server parses a request's query itself (`httpframe.parse_query`) rather than importing
 * urllib.parse at start (issue 13, start-up time): it must give exactly what
 * `urllib.parse.parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")`
 * gives for any query a request line can carry (ASCII 0x21-0x7e), checked here against the
 * interpreter's own on edge cases and on seeded random queries.
 */
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { PYTHON, SERVER } from "../support/server.js"

const CHECK = `
import json, random, sys, urllib.parse
sys.path.insert(0, sys.argv[1])
from sbx_server.httpframe import parse_query

cases = ["", "&", "&&", "a", "a=", "=b", "=", "a=1&a=2&b=3&a=", "a=b=c", "&&a=1&&", "a=1;b=2",
         "a+b=c+d", "%41%42=%43", "a=%4", "a=%", "a=%zz", "a=%%41", "a=%2B", "a=%+1", "a=%-1", "a=% 1",
         "p=%C3%A9", "p=%c3%a9t%C3%a9", "p=%FF%FE", "p=%ED%A0%80", "p=%00", "p=%e2%80", "%=%", "a=1&A=2"]
rng = random.Random(13)
alphabet = "%%%&&==++;aAfF09gG" + "".join(chr(c) for c in range(0x21, 0x7F))
for _ in range(20000):
    cases.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))))
for _ in range(2000):  # percent-encoded bytes, valid UTF-8 or not
    cases.append("p=" + "".join("%%%02X" % rng.randrange(256) for _ in range(rng.randrange(1, 6))))

def stdlib(query):
    return urllib.parse.parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")

wrong = [c for c in cases if parse_query(c) != stdlib(c)]
print(json.dumps({"checked": len(cases), "wrong": [[c, repr(parse_query(c)), repr(stdlib(c))] for c in wrong[:5]]}))
`

describe("the server's query parser", () => {
  it("gives what urllib.parse.parse_qs gives, on edge cases and 22,000 seeded random queries", () => {
    const run = spawnSync(PYTHON, ["-S", "-c", CHECK, path.dirname(SERVER)], { encoding: "utf8", timeout: 60_000 })
    expect(run.stderr).toBe("")
    expect(JSON.parse(run.stdout)).toEqual({ checked: 22029, wrong: [] })
  })
})
