/**
 * Seconds in query strings (`/v1/processes/{id}/wait?timeout=`, `/v1/ports/{port}/tunnel?wait=`,
 * `/v1/metrics?interval=`): one grammar everywhere, the protocol's "non-negative decimal number such as
 * 30 or 0.5" in ASCII digits, and one message naming the parameter and the value. What Python's `float()`
 * would also take (`1e2`, `inf`, `nan`, `+1`, `1_0`, other scripts' digits) is refused.
 */
import { afterAll, describe, expect, it } from "vitest"
import { type Running, startServer, stopServer } from "../support/server.js"

let server: Running | undefined

afterAll(async () => {
  if (server !== undefined) await stopServer(server)
})

const ask = (s: Running, path: string, method = "GET") =>
  fetch(`${s.base}${path}`, { method, headers: { "X-Sandbox-Token": s.token } })

const TOO_PRECISE = `0.${"5".repeat(21)}`
const NOT_SECONDS = [
  TOO_PRECISE,
  "1e2",
  "inf",
  "nan",
  "-1",
  "+1",
  " 1",
  "1 ",
  "0x10",
  "1.",
  ".5",
  "1_0",
  "١",
  "",
  "1.5.2"
]

const message = (name: string, raw: string, bounds = "") =>
  `query parameter \`${name}\` must be a non-negative decimal number of seconds such as 30 or 0.5${bounds}, got ${JSON.stringify(raw).replace(/^"|"$/g, "'")}`

describe("seconds in query strings", () => {
  it("are refused alike by wait's timeout, a port tunnel's wait and metrics' interval, naming the parameter", async () => {
    server = await startServer({ prefix: "sbx-seconds-" })
    const spawned = await fetch(`${server.base}/v1/processes`, {
      method: "POST",
      headers: { "X-Sandbox-Token": server.token, "content-type": "application/json" },
      body: JSON.stringify({ cmd: ["true"] })
    })
    expect(spawned.status).toBe(200)
    const id = ((await spawned.json()) as { id: string }).id
    const routes = [
      { name: "timeout", path: (v: string) => `/v1/processes/${id}/wait?timeout=${v}`, method: "POST", bounds: "" },
      { name: "wait", path: (v: string) => `/v1/ports/8080/tunnel?wait=${v}`, method: "POST", bounds: "" },
      { name: "interval", path: (v: string) => `/v1/metrics?interval=${v}`, method: "GET", bounds: " from 0.1 to 3600" }
    ]
    for (const route of routes) {
      for (const raw of NOT_SECONDS) {
        const res = await ask(server, route.path(encodeURIComponent(raw)), route.method)
        const body = (await res.json()) as { error: string }
        expect(res.status, `${route.name}=${raw}`).toBe(400)
        expect(body.error, `${route.name}=${raw}`).toBe(message(route.name, raw, route.bounds))
      }
    }
    // A number outside metrics' range is refused with the same words.
    for (const raw of ["0", "0.05", "3601"]) {
      const res = await ask(server, `/v1/metrics?interval=${raw}`)
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: string }).error).toBe(message("interval", raw, " from 0.1 to 3600"))
    }
    // What the grammar takes is taken.
    expect((await ask(server, `/v1/processes/${id}/wait?timeout=30`, "POST")).status).toBe(200)
    expect((await ask(server, `/v1/processes/${id}/wait?timeout=0.5`, "POST")).status).toBe(200)
    expect((await ask(server, "/v1/metrics?interval=0.1")).status).toBe(200)
    // What a JavaScript client's String() writes of a third of a second.
    expect((await ask(server, `/v1/metrics?interval=${String(1 / 3)}`)).status).toBe(200)
    expect((await ask(server, `/v1/processes/${id}/wait?timeout=${"1".repeat(13)}`, "POST")).status).toBe(400)
  })
})
