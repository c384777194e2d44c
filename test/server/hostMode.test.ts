/**
 * Conformance of host mode (`rpc-server/sbx_server/host.py`, `routes_host.py`; docs/protocol.md "Host
 * mode"), against the real process over loopback: the /v1/sandboxes routes, per-sandbox tokens, homes,
 * environment and rooted paths, capacity, delete and idle removal, the host's own idle exit, the
 * scoped port proxy, and the refusal to start without isolation. Runs with SBX_HOST_WEAK_ISOLATION=1,
 * so whatever the machine gives (root and Landlock or neither); hostIsolation.test.ts checks isolation.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  create,
  createOne,
  exec,
  type Host,
  json,
  request,
  sandboxToken,
  spawnIn,
  startHost,
  stopHost
} from "../support/hostServer.js"
import { until, waitGone, withTimeout } from "../support/processes.js"
import { run } from "../support/run.js"
import { PYTHON, serverArgs } from "../support/server.js"

const isLinux = process.platform === "linux"
const HOST_SECRET = "host-only-secret-value"

let host: Host

beforeAll(async () => {
  host = await startHost({ env: { SBX_CAPACITY: "4", HOST_ONLY_VARIABLE: HOST_SECRET } })
}, 60_000)

afterAll(async () => {
  if (host !== undefined) await stopHost(host)
})

const remove = (id: string) => json(host, `/v1/sandboxes/${id}`, host.token, { method: "DELETE" })

describe("/v1/sandboxes", () => {
  it("creates sandboxes up to the capacity and says how many did not fit; lists them without tokens", async () => {
    const health = await json(host, "/health", "")
    expect(health.body).toMatchObject({ status: "ok", mode: "host", capacity: 4, sandboxes: 0 })
    expect(["uid+landlock", "uid", "landlock", "none"]).toContain(health.body.isolation)

    const made = await create(host, { count: 6, env: { FROM_CREATE: "1" } })
    expect(made.sandboxes).toHaveLength(4)
    expect(made.rejected).toBe(2)
    for (const sb of made.sandboxes) {
      expect(sb.id).toMatch(/^[0-9a-f]{16}$/)
      expect(sb.token).toBe(sandboxToken(host.token, sb.id))
      expect(sb.home).toBe(path.join(host.homes, sb.id))
      expect(fs.statSync(sb.home).mode & 0o777).toBe(0o700)
    }
    const listed = await json(host, "/v1/sandboxes", host.token)
    expect(listed.body.map((s: { id: string }) => s.id).sort()).toEqual(made.sandboxes.map((s) => s.id).sort())
    expect(JSON.stringify(listed.body)).not.toContain("token")
    expect((await json(host, "/health", "")).body.sandboxes).toBe(4)

    const full = await create(host, {})
    expect(full).toEqual({ sandboxes: [], rejected: 1 })
    expect(await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })).toEqual({
      status: 200,
      body: { deleted: 4 }
    })
    for (const sb of made.sandboxes) expect(fs.existsSync(sb.home)).toBe(false)
    expect((await create(host, { count: 1 })).sandboxes).toHaveLength(1)
    await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })
  })

  it("answers bad creation requests with the option named, and unknown sandboxes with 404", async () => {
    for (const body of [{ count: 0 }, { count: "2" }, { env: { A: 1 } }, { idle_timeout_secs: -1 }, { max_procs: 0 }]) {
      const res = await json(host, "/v1/sandboxes", host.token, { method: "POST", body: JSON.stringify(body) })
      expect(res.status).toBe(400)
      expect(res.body.error).toContain(`\`${Object.keys(body)[0]}\``)
    }
    const unknown = await remove("0123456789abcdef")
    expect(unknown).toEqual({ status: 404, body: { error: "no such sandbox: 0123456789abcdef", code: "not_found" } })
  })
})

describe("tokens", () => {
  it("lets a sandbox's token act on that sandbox only; the host token manages but does not act", async () => {
    const [a, b] = (await create(host, { count: 2 })).sandboxes
    await fetch(`${host.base}/v1/sandboxes/${a!.id}/files/write?path=f.txt`, {
      method: "PUT",
      headers: { "X-Sandbox-Token": a!.token },
      body: "a's"
    })
    const read = (sb: string, token: string, headers: Record<string, string> = { "X-Sandbox-Token": token }) =>
      fetch(`${host.base}/v1/sandboxes/${sb}/files/read?path=f.txt`, { headers })
    expect(await (await read(a!.id, a!.token)).text()).toBe("a's")
    expect((await read(a!.id, "", { Authorization: `Bearer ${a!.token}` })).status).toBe(200)
    expect((await read(a!.id, b!.token)).status).toBe(401) // another sandbox's token
    expect((await read(a!.id, host.token)).status).toBe(401) // the host token (no SBX_HOST_TOKEN_ACTS)
    expect((await read(a!.id, "")).status).toBe(401)
    expect((await json(host, "/v1/sandboxes", a!.token)).status).toBe(403) // host routes: the host's
    expect((await json(host, `/v1/sandboxes/${b!.id}`, a!.token, { method: "DELETE" })).status).toBe(401)

    const dedicated = await json(host, "/v1/exec", host.token, { method: "POST", body: "{}" })
    expect(dedicated.status).toBe(404)
    expect(dedicated.body.error).toContain("/v1/sandboxes/{id}/exec")

    // A sandbox deletes itself with its own token; its token then learns it is gone.
    expect(await json(host, `/v1/sandboxes/${a!.id}`, a!.token, { method: "DELETE" })).toEqual({
      status: 200,
      body: { id: a!.id, deleted: true }
    })
    expect((await read(a!.id, a!.token)).status).toBe(404)
    expect((await remove(b!.id)).status).toBe(200)
  })

  it("accepts the host token inside sandboxes only with SBX_HOST_TOKEN_ACTS=1", async () => {
    const acting = await startHost({ env: { SBX_HOST_TOKEN_ACTS: "1" } })
    try {
      const sb = await createOne(acting)
      const res = await request(acting, `/v1/sandboxes/${sb.id}/files/stat?path=/`, acting.token)
      expect(res.status).toBe(200)
    } finally {
      await stopHost(acting)
    }
  }, 60_000)
})

describe("inside a sandbox", () => {
  it("runs commands in its home with a scrubbed environment: never the host's, never a token", async () => {
    const [a, b] = (await create(host, { count: 2, env: { FROM_CREATE: "created" } })).sandboxes
    const run = await exec(host, a!, "pwd; env", { env: { FROM_REQUEST: "requested" } })
    expect(run.code).toBe(0)
    const [pwd, ...lines] = run.stdout.trim().split("\n")
    expect(pwd).toBe(a!.home)
    const env = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]))
    expect(env).toMatchObject({
      HOME: a!.home,
      TMPDIR: `${a!.home}/.tmp`,
      SBX_SANDBOX_ID: a!.id,
      SBX_PROXY_DIR: `${a!.home}/.sbx/proxy`,
      FROM_CREATE: "created",
      FROM_REQUEST: "requested"
    })
    expect(env.PATH).toContain("/usr/bin")
    expect(env.HOST_ONLY_VARIABLE).toBeUndefined()
    for (const secret of [host.token, a!.token, b!.token, HOST_SECRET]) expect(run.stdout).not.toContain(secret)
    await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })
  })

  it("roots file paths at its home: a leading / and .. stay inside, a symlink out is refused", async () => {
    const sb = await createOne(host)
    const put = await json(host, `/v1/sandboxes/${sb.id}/files/write?path=/dir/../../../x.txt`, sb.token, {
      method: "PUT",
      body: "rooted"
    })
    expect(put.status).toBe(200)
    expect(put.body.path).toBe(`${sb.home}/x.txt`)
    expect(fs.readFileSync(`${sb.home}/x.txt`, "utf8")).toBe("rooted")
    expect((await exec(host, sb, "cat x.txt")).stdout).toBe("rooted")
    const stat = await json(host, `/v1/sandboxes/${sb.id}/files/stat?path=/etc/hostname`, sb.token)
    expect(stat.status).toBe(404)
    await exec(host, sb, `ln -s ${host.homes} out && mkdir dir`)
    const out = await json(host, `/v1/sandboxes/${sb.id}/files/list?path=/out`, sb.token)
    expect(out.status).toBe(403)
    expect(out.body.code).toBe("outside_home")
    const cwd = await exec(host, sb, "pwd", { cwd: "/dir" })
    expect(cwd.stdout.trim()).toBe(`${sb.home}/dir`)
    await remove(sb.id)
  })

  it("lists and reaches only its own processes", async () => {
    const [a, b] = (await create(host, { count: 2 })).sandboxes
    const id = await spawnIn(host, a!, "sleep 30")
    expect(
      (await json(host, `/v1/sandboxes/${a!.id}/processes`, a!.token)).body.map((p: { id: string }) => p.id)
    ).toEqual([id])
    expect((await json(host, `/v1/sandboxes/${b!.id}/processes`, b!.token)).body).toEqual([])
    expect((await json(host, `/v1/sandboxes/${b!.id}/processes/${id}`, b!.token)).status).toBe(404)
    expect((await json(host, `/v1/sandboxes/${b!.id}/processes/${id}`, b!.token, { method: "DELETE" })).status).toBe(
      404
    )
    await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })
  })

  it("keeps SBX_SANDBOX_ID its own id, whatever the create request's or the command's env says", async () => {
    const sb = await createOne(host, { env: { SBX_SANDBOX_ID: "from-create" } })
    expect((await exec(host, sb, "echo $SBX_SANDBOX_ID")).stdout.trim()).toBe(sb.id)
    expect((await exec(host, sb, "echo $SBX_SANDBOX_ID", { env: { SBX_SANDBOX_ID: "x" } })).stdout.trim()).toBe(sb.id)
    await remove(sb.id)
  })

  it("keeps idempotency keys per sandbox: the same key runs each one's own command, a cancel spends its own", async () => {
    const [a, b] = (await create(host, { count: 2 })).sandboxes
    const key = { idempotency_key: "same-key" }
    expect((await exec(host, a!, "echo $SBX_SANDBOX_ID", key)).stdout.trim()).toBe(a!.id)
    expect((await exec(host, b!, "echo $SBX_SANDBOX_ID", key)).stdout.trim()).toBe(b!.id)
    const cancel = await json(host, `/v1/sandboxes/${b!.id}/processes?idempotency_key=spent-key`, b!.token, {
      method: "DELETE"
    })
    expect(cancel.body).toEqual({ id: null, killed: false })
    expect((await exec(host, a!, "echo ran", { idempotency_key: "spent-key" })).stdout).toBe("ran\n")
    await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })
  })

  it("proxies /v1/sandboxes/{id}/proxy/{port}/ to the unix socket $SBX_PROXY_DIR/{port}.sock", async () => {
    const sb = await createOne(host)
    const server =
      "import http.server,socketserver,os\n" +
      "class H(http.server.BaseHTTPRequestHandler):\n" +
      "  def do_GET(s):\n" +
      "    b=('hi from '+os.environ['SBX_SANDBOX_ID']+' at '+s.path).encode()\n" +
      "    s.send_response(200);s.send_header('Content-Length',str(len(b)));s.end_headers();s.wfile.write(b)\n" +
      "class U(socketserver.ThreadingUnixStreamServer):\n" +
      "  def get_request(s):\n" +
      "    r,_=s.socket.accept();return r,('sbx',0)\n" +
      "U(os.environ['SBX_PROXY_DIR']+'/8080.sock',H).serve_forever()\n"
    await fetch(`${host.base}/v1/sandboxes/${sb.id}/files/write?path=/srv.py`, {
      method: "PUT",
      headers: { "X-Sandbox-Token": sb.token },
      body: server
    })
    const closed = await json(host, `/v1/sandboxes/${sb.id}/proxy/8080/x`, sb.token)
    expect(closed.status).toBe(502)
    expect(closed.body.code).toBe("port_closed")
    await spawnIn(host, sb, "exec python3 srv.py")
    await until(
      "the sandbox's server listens",
      async () => (await json(host, `/v1/sandboxes/${sb.id}/ports/8080`, sb.token)).body.listening === true
    )
    const res = await request(host, `/v1/sandboxes/${sb.id}/proxy/8080/a/b?q=1`, sb.token)
    expect(res.status).toBe(200)
    expect(await res.text()).toBe(`hi from ${sb.id} at /a/b?q=1`)
    await remove(sb.id)
  })
})

describe("delete and idle", () => {
  it.skipIf(!isLinux)(
    "delete kills every process of the sandbox, even one that left its group, and removes its home",
    async () => {
      const sb = await createOne(host)
      await spawnIn(host, sb, "sleep 1000 & echo $! > pids; setsid sh -c 'sleep 1001 & echo $! >> pids; wait' & wait")
      await until(
        "both sleeps started",
        () =>
          fs.existsSync(`${sb.home}/pids`) && fs.readFileSync(`${sb.home}/pids`, "utf8").trim().split("\n").length === 2
      )
      const pids = fs.readFileSync(`${sb.home}/pids`, "utf8").trim().split("\n").map(Number)
      expect(await remove(sb.id)).toEqual({ status: 200, body: { id: sb.id, deleted: true } })
      expect(await waitGone(pids)).toEqual([])
      expect(fs.existsSync(sb.home)).toBe(false)
      expect((await remove(sb.id)).status).toBe(404)
    }
  )

  it.skipIf(!isLinux)("deletes at once kill every process of each sandbox (their /proc scans shared)", async () => {
    const sandboxes = [await createOne(host), await createOne(host)]
    for (const sb of sandboxes) await spawnIn(host, sb, "sleep 1000 & echo $! > pid; wait")
    await until("the sleeps started", () => sandboxes.every((sb) => fs.existsSync(`${sb.home}/pid`)))
    const pids = sandboxes.map((sb) => Number(fs.readFileSync(`${sb.home}/pid`, "utf8").trim()))
    const answers = await Promise.all(sandboxes.map((sb) => remove(sb.id)))
    expect(answers.map((a) => a.status)).toEqual([200, 200])
    expect(await waitGone(pids)).toEqual([])
    expect(sandboxes.filter((sb) => fs.existsSync(sb.home))).toEqual([])
  })

  it("removes a sandbox idle past its idle_timeout_secs, but not one with a process running", async () => {
    const [idle, busy] = (await create(host, { count: 2, idle_timeout_secs: 0.5 })).sandboxes
    const forever = await createOne(host)
    await spawnIn(host, busy!, "sleep 30")
    const ids = async () => (await json(host, "/v1/sandboxes", host.token)).body.map((s: { id: string }) => s.id)
    await until(
      "the idle sandbox is removed, with its home",
      async () => !(await ids()).includes(idle!.id) && !fs.existsSync(idle!.home)
    )
    expect(await ids()).toEqual(expect.arrayContaining([busy!.id, forever.id]))
    await json(host, "/v1/sandboxes", host.token, { method: "DELETE" })
  })

  it("exits once it has had no sandbox for SBX_IDLE_TIMEOUT", async () => {
    const short = await startHost({ env: { SBX_IDLE_TIMEOUT: "1" } })
    try {
      const sb = await createOne(short)
      // A sandbox keeps the host up, idle or not. Each round of the host's idle loop removes the sandboxes
      // idle past their own timeout, then checks its own (and ends once it asked the host to exit). The
      // round that removes a sandbox made with a timeout of 1 s checks at least 1 s after the host's
      // start, when a host empty since then would exit; a sandbox made after that one is gone can only
      // be removed by a later round. (A shorter SBX_IDLE_TIMEOUT could end the host before its first
      // sandbox on a loaded machine.)
      const listed = async () => (await json(short, "/v1/sandboxes", short.token)).body.map((s: { id: string }) => s.id)
      for (const seconds of [1, 0.25]) {
        const brief = await createOne(short, { idle_timeout_secs: seconds })
        await until(
          `the idle loop to remove sandbox ${brief.id} (idle ${seconds}s)`,
          async () => !(await listed()).includes(brief.id)
        )
      }
      expect(short.proc.exitCode).toBeNull()
      await json(short, `/v1/sandboxes/${sb.id}`, short.token, { method: "DELETE" })
      expect(await withTimeout(short.exited, 15_000)).toEqual({ code: 0, signal: null })
      await withTimeout(short.drained, 5_000)
      expect(short.stderr()).toContain("no sandbox for 1s")
    } finally {
      await stopHost(short)
    }
  }, 60_000)
})

describe("start", () => {
  const refusal = async (env: Record<string, string>) => {
    // As root, the refusal is tested as nobody, with the system's Python (root's may be unreadable).
    const asRoot = process.getuid?.() === 0
    const python = asRoot ? "/usr/bin/python3" : PYTHON
    const childEnv = {
      PATH: process.env.PATH,
      SBX_TOKEN: "t".repeat(64),
      SBX_HOST_MODE: "1",
      SBX_HOMES_DIR: "/nonexistent/h",
      ...env
    }
    const { status, stderr } = await run(python, serverArgs(["--port", "0"], childEnv), {
      env: childEnv,
      ...(asRoot ? { uid: 65534, gid: 65534 } : {})
    })
    return { code: status, stderr }
  }

  it.skipIf(!isLinux || (process.getuid?.() === 0 && !fs.existsSync("/usr/bin/python3")))(
    "refuses to start without root, naming what is missing, unless told to accept weak isolation",
    async () => {
      const refused = await refusal({})
      expect(refused.code).toBe(2)
      expect(refused.stderr).toContain("host mode refused: not root: cannot give sandboxes their own uid")
      expect(refused.stderr).toContain("SBX_HOST_WEAK_ISOLATION=1")
      // The same refusal as data on the next line, for a client to know by its code, not its wording.
      const lines = refused.stderr.trimEnd().split("\n")
      const data = lines.at(-1) ?? ""
      expect(lines.at(-2)).toMatch(/^server\.py: error: host mode refused: /)
      expect(data.startsWith("SBX_REFUSAL ")).toBe(true)
      const said = JSON.parse(data.slice("SBX_REFUSAL ".length)) as { code: string; missing: Array<string> }
      expect(said.code).toBe("isolation_missing")
      expect(said.missing[0]).toMatch(/^not root: cannot give sandboxes their own uid/)
      // Accepted: it gets as far as making the homes' directory (which nobody may create here).
      const weak = await refusal({ SBX_HOST_WEAK_ISOLATION: "1" })
      expect(weak.code).toBe(2)
      expect(weak.stderr).toContain("cannot create the homes' directory /nonexistent/h")
    }
  )

  it("takes a homes' directory reached through a symlink (paths are compared as real paths)", async () => {
    const real = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-homes-real-"))
    const link = `${real}-link`
    fs.symlinkSync(real, link)
    const linked = await startHost({ env: { SBX_HOMES_DIR: `${link}/homes` } })
    try {
      const sb = await createOne(linked)
      expect(sb.home).toBe(path.join(fs.realpathSync(real), "homes", sb.id))
      const put = await request(linked, `/v1/sandboxes/${sb.id}/files/write?path=a.txt`, sb.token, {
        method: "PUT",
        body: "x"
      })
      expect(put.status).toBe(200)
    } finally {
      await stopHost(linked)
      fs.rmSync(link, { force: true })
      fs.rmSync(real, { recursive: true, force: true })
    }
  }, 60_000)

  it("refuses host mode without a token, and bad host options", async () => {
    const start = async (args: Array<string>, env: Record<string, string>) => {
      const childEnv = { PATH: process.env.PATH, SBX_HOST_MODE: "1", SBX_HOST_WEAK_ISOLATION: "1", ...env }
      const { status, stderr } = await run(PYTHON, serverArgs(["--port", "0", ...args], childEnv), { env: childEnv })
      return { code: status, stderr }
    }
    expect(await start(["--allow-no-auth"], {})).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("host mode needs SBX_TOKEN")
    })
    const token = { SBX_TOKEN: "t".repeat(64) }
    expect(await start(["--capacity", "0"], token)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--capacity")
    })
    expect(await start([], { ...token, SBX_HOMES_DIR: "rel" })).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("needs an absolute path")
    })
    expect(await start([], { ...token, SBX_HOST_WARM_WRAPPERS: "many" })).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("invalid SBX_HOST_WARM_WRAPPERS 'many'")
    })
  })
})
