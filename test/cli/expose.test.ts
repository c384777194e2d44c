/**
 * `hf-sandbox expose ID PORT`: the URL of a server started in a sandbox, after waiting for it to listen
 * (`--wait`); `--json` names the headers without their values; a port nothing serves is a clear failure.
 */
import { assert, describe, it } from "@effect/vitest"
import { createLocal, expectCode, local, useCliHarness } from "../support/cli.js"
import { PORT_SERVER } from "../support/ports.js"
import { until } from "../support/processes.js"
import { PYTHON } from "../support/server.js"

useCliHarness()

describe("hf-sandbox expose", () => {
  it("prints the URL of a server once it listens; --json names the headers, never their values", async () => {
    const id = await createLocal()
    const spawned = await local(["spawn", id, "--", PYTHON, "-u", PORT_SERVER])
    expectCode(spawned, 0)
    const processId = spawned.stdout.trim()
    // The port the server bound is in its first line of output.
    let port = 0
    await until("the port server's first line (its port)", async () => {
      const out = await local(["process", "logs", id, processId])
      port = Number(/"port": (\d+)/.exec(out.stdout)?.[1] ?? 0)
      return port > 0
    })
    const direct = await local(["expose", id, String(port), "--wait", "30s"])
    expectCode(direct, 0)
    assert.strictEqual(direct.stdout, `http://127.0.0.1:${port}\n`)
    assert.strictEqual(await (await fetch(`${direct.stdout.trim()}/hello`)).text(), `hello from ${port}\n`)

    const viaServer = await local(["expose", id, String(port), "--via", "server", "--json"])
    expectCode(viaServer, 0)
    const body = JSON.parse(viaServer.stdout) as Record<string, unknown>
    assert.deepInclude(body, { sandbox: id, port, via: "server", headers: ["x-sandbox-token"] })
    assert.match(String(body.url), new RegExp(`/v1/proxy/${port}$`))
    expectCode(await local(["kill", id]), 0)
  })

  it("a port nothing listens on fails after --wait, naming the port; a bad port is a usage error", async () => {
    const id = await createLocal()
    const waited = await local(["expose", id, "1", "--wait", "300ms"])
    assert.notStrictEqual(waited.code, 0)
    assert.include(waited.stderr, "Nothing listened on port 1 in the sandbox")
    const bad = await local(["expose", id, "70000"])
    assert.notStrictEqual(bad.code, 0)
    assert.include(bad.stderr, "port")
    expectCode(await local(["kill", id]), 0)
  })
})
