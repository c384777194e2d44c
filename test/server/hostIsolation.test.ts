/**
 * Isolation of host-mode sandboxes from one another (`rpc-server/sbx_server/isolation.py`,
 * `landlock.py`), against the real server started without SBX_HOST_WEAK_ISOLATION: it must then have
 * root (a uid per sandbox) and Landlock, so the suite runs as root only (a server started otherwise
 * refuses; hostMode.test.ts checks that refusal).
 */
import * as fs from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  connectAbstract,
  create,
  exec,
  type Host,
  json,
  type Leased,
  listenAbstract,
  pidIn,
  pythonIn,
  request,
  spawnIn,
  startHost,
  stopHost
} from "../support/hostServer.js"
import { isAlive, until } from "../support/processes.js"

const asRoot = process.platform === "linux" && process.getuid?.() === 0

let host: Host
let a: Leased
let b: Leased

beforeAll(async () => {
  if (!asRoot) return
  host = await startHost({ weak: false })
  ;[a, b] = (await create(host, { count: 2, max_procs: 100 })).sandboxes as [Leased, Leased]
}, 60_000)

afterAll(async () => {
  if (host !== undefined) await stopHost(host)
})

describe.skipIf(!asRoot)("host mode isolation (root: a uid per sandbox, Landlock)", () => {
  it("gives each sandbox its own uid, its files owned by it, NO_NEW_PRIVS and its rlimits", async () => {
    expect((await json(host, "/health", "")).body.isolation).toBe("uid+landlock")
    expect(a.uid).not.toBe(b.uid)
    expect(a.uid).toBeGreaterThanOrEqual(20000)
    expect(a.uid).toBeLessThan(65000)
    const limits = "grep -E '^Max (processes|address space)' /proc/self/limits"
    const run = await exec(host, a, `id -u; grep NoNewPrivs /proc/self/status; ${limits}`)
    expect(run.stdout.split("\n").map((l) => l.replace(/\s+/g, " ").trim())).toEqual([
      String(a.uid),
      "NoNewPrivs: 1",
      "Max processes 100 100 processes",
      `Max address space ${2048 * 1024 * 1024} ${2048 * 1024 * 1024} bytes`,
      ""
    ])
    await request(host, `/v1/sandboxes/${a.id}/files/write?path=/made/by/api.txt`, a.token, {
      method: "PUT",
      body: "x"
    })
    for (const p of ["made", "made/by", "made/by/api.txt"]) expect(fs.statSync(`${a.home}/${p}`).uid).toBe(a.uid)
  })

  it("never gives a uid in use by another host on the machine", async () => {
    const other = await startHost({ weak: false })
    try {
      const theirs = (await create(other, { count: 3 })).sandboxes.map((s) => s.uid)
      expect(theirs).not.toContain(a.uid)
      expect(theirs).not.toContain(b.uid)
    } finally {
      await stopHost(other)
    }
  }, 60_000)

  it("never gives a uid that still runs a process, such as one a host that died left behind", async () => {
    // A killed host's uid locks go with it; what its sandboxes ran does not. A new host checks each uid
    // it takes, whether prepared ahead of a create (the spare) or claimed during one, by a /proc scan
    // begun after it holds the uid's lock.
    const died = await startHost({ weak: false })
    let pid: number | undefined
    let next: Host | undefined
    try {
      const left = (await create(died, { count: 1 })).sandboxes[0]!
      pid = await pidIn(died, left, "sleep 120", "pid")
      died.proc.kill("SIGKILL")
      await died.exited
      expect(isAlive(pid)).toBe(true)
      next = await startHost({ weak: false })
      const first = (await create(next, { count: 1 })).sandboxes.map((s) => s.uid)
      const more = (await create(next, { count: 3 })).sandboxes.map((s) => s.uid)
      expect([...first, ...more]).not.toContain(left.uid)
    } finally {
      // Gone already when the test failed after its end: that must not hide the failure.
      if (pid !== undefined && isAlive(pid)) process.kill(pid, "SIGKILL")
      if (next !== undefined) await stopHost(next)
      await stopHost(died)
    }
  }, 60_000)

  it("keeps a sandbox out of another's files and environment", async () => {
    fs.writeFileSync(`${b.home}/secret`, "b's secret")
    fs.chownSync(`${b.home}/secret`, b.uid, b.uid)
    const pid = await pidIn(host, b, "sleep 60", "sleep.pid")
    const run = await exec(host, a, `cat ${b.home}/secret; ls ${b.home}; cat /proc/${pid}/environ; ls /tmp`)
    expect(run.stdout).toBe("")
    expect(run.stderr.match(/Permission denied/g)?.length).toBe(4)
    // Nor through the server: a link to B's home is followed as A, never as root.
    await exec(host, a, `ln -s ${b.home}/secret link`)
    expect((await json(host, `/v1/sandboxes/${a.id}/files/read?path=link`, a.token)).status).toBe(403)
  })

  it("keeps a sandbox from signalling or tracing another's processes", async () => {
    const pid = await pidIn(host, b, "sleep 60", "victim.pid")
    const kill = await exec(host, a, `kill -0 ${pid} 2>&1 || echo refused`)
    expect(kill.stdout).toContain("refused")
    const trace = await pythonIn(
      host,
      a,
      `import ctypes,os; libc=ctypes.CDLL(None,use_errno=True); print(libc.ptrace(16,${pid},0,0), os.strerror(ctypes.get_errno()))`
    )
    expect(trace).toBe("-1 Operation not permitted")
    // Its own, started by another command, it can signal.
    const own = await pidIn(host, a, "sleep 60", "own.pid")
    expect((await exec(host, a, `kill ${own} && echo killed`)).stdout).toBe("killed\n")
  })

  it("denies binding TCP ports and reaching another sandbox's abstract unix sockets", async () => {
    expect(
      await pythonIn(host, a, `import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print("bound")`)
    ).toContain("PermissionError")
    await listenAbstract(host, b, `sbx-test-${b.id}`)
    expect(await pythonIn(host, a, connectAbstract(`sbx-test-${b.id}`))).toContain("PermissionError")
    // Within one command (one Landlock domain) the same connect works: the denial is the scope's.
    const both = `import socket; l=socket.socket(socket.AF_UNIX); l.bind("\\0sbx-own-${a.id}"); l.listen(); s=socket.socket(socket.AF_UNIX); s.connect("\\0sbx-own-${a.id}"); print("connected")`
    expect(await pythonIn(host, a, both)).toBe("connected")
  })

  it("reaches a sandbox's unix socket through its proxy route, never another's through a link", async () => {
    const server = `import http.server,socketserver,os
class H(http.server.BaseHTTPRequestHandler):
  def do_GET(s):
    b=os.environ["SBX_SANDBOX_ID"].encode()
    s.send_response(200);s.send_header("Content-Length",str(len(b)));s.end_headers();s.wfile.write(b)
class U(socketserver.ThreadingUnixStreamServer):
  def get_request(s):
    r,_=s.socket.accept();return r,("sbx",0)
U(os.environ["SBX_PROXY_DIR"]+"/8080.sock",H).serve_forever()
`
    await request(host, `/v1/sandboxes/${b.id}/files/write?path=/srv.py`, b.token, { method: "PUT", body: server })
    await spawnIn(host, b, "exec python3 srv.py")
    await until(
      "the sandbox's server to listen",
      async () => (await json(host, `/v1/sandboxes/${b.id}/ports/8080`, b.token)).body.listening === true
    )
    const res = await request(host, `/v1/sandboxes/${b.id}/proxy/8080/`, b.token)
    expect(await res.text()).toBe(b.id)
    await exec(host, a, `ln -s ${b.home}/.sbx/proxy/8080.sock "$SBX_PROXY_DIR/8080.sock"`)
    const through = await json(host, `/v1/sandboxes/${a.id}/proxy/8080/`, a.token)
    expect(through.status).toBe(403)
    expect(through.body.code).toBe("outside_home")
  })
})
