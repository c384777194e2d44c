/**
 * One version, stated in three places that must agree: the library's constant (User-Agent, telemetry,
 * `hf-sandbox --version`), `package.json`, and what the sandbox server reports on an authenticated
 * `GET /health`.
 */
import * as fs from "node:fs"
import { afterAll, describe, expect, it } from "vitest"
import { VERSION } from "../../src/internal/version.js"
import { type Running, startServer, stopServer } from "../support/server.js"

const servers: Array<Running> = []
afterAll(async () => {
  await Promise.all(servers.map(stopServer))
})

describe("the version", () => {
  it("the library's constant is package.json's version", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version: string
    }
    expect(VERSION).toBe(pkg.version)
  })

  it("the server reports the library's version on an authenticated /health", async () => {
    const server = await startServer()
    servers.push(server)
    const response = await fetch(`${server.base}/health`, { headers: { "X-Sandbox-Token": server.token } })
    expect(response.status).toBe(200)
    const health = (await response.json()) as { version?: unknown }
    expect(health.version).toBe(VERSION)
  })
})
