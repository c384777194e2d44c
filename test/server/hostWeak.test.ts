/**
 * Host mode with weak isolation (`rpc-server/sbx_server/host.py`, `isolation.py`; docs/security.md
 * "Pooled sandboxes"), against the real server over loopback, started as it is where it cannot isolate
 * fully: as nobody (setpriv: not root, so one uid for every sandbox), and without Landlock (a seccomp
 * filter makes the kernel answer as one with Landlock disabled at boot: test/support/withoutLandlock.py).
 * Each suite checks the refusal without SBX_HOST_WEAK_ISOLATION, what that isolation still guarantees as
 * the document states it, and what it says does not hold. Runs as root only (to drop to nobody).
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  connectAbstract,
  create,
  createOne,
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
import { isAlive, until, waitGone, withTimeout } from "../support/processes.js"
import { pythonJson } from "../support/python.js"
import { SERVER, spawnServer } from "../support/server.js"

const NOBODY = 65534
// Root's own interpreter (pyenv under /root) is unreadable by nobody: the system's runs every server here.
const SYSTEM_PYTHON = "/usr/bin/python3"
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => fs.existsSync(p))
const LAUNCHER = fileURLToPath(new URL("../support/withoutLandlock.py", import.meta.url))
const HOST_SECRET = "host-only-secret-value"

const landlockAbi = async () => {
  if (process.platform !== "linux" || !fs.existsSync(SYSTEM_PYTHON)) return 0
  const source = "import sys; sys.path.insert(0, sys.argv[1]); from sbx_server.landlock import abi; print(abi())"
  return Number(await pythonJson(source, { python: SYSTEM_PYTHON, args: [path.dirname(SERVER)] }))
}

const cannotRun =
  process.platform !== "linux"
    ? "not Linux"
    : process.getuid?.() !== 0
      ? "not root: the server cannot be started as another user"
      : SETPRIV === undefined
        ? "setpriv is missing"
        : !fs.existsSync(SYSTEM_PYTHON)
          ? `${SYSTEM_PYTHON} is missing`
          : undefined
const withLandlock = cannotRun ?? ((await landlockAbi()) < 6 ? "the kernel has no Landlock ABI >= 6" : undefined)
const withoutLandlock = cannotRun ?? (["x64", "arm64"].includes(process.arch) ? undefined : "not x86_64 or aarch64")
const skipped = (reason: string | undefined) => (reason === undefined ? "" : ` (skipped: ${reason})`)

/** The server's interpreter, run as nobody with no supplementary group. */
const asNobody = [SETPRIV ?? "setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", SYSTEM_PYTHON]
/** `command` on a kernel that answers as one without Landlock. */
const noLandlock = (command: ReadonlyArray<string>) => [...command, "-S", LAUNCHER, SYSTEM_PYTHON]

/** A host-mode server started by `command` without SBX_HOST_WEAK_ISOLATION: its exit and stderr. */
const refusal = async (command: ReadonlyArray<string>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-refused-"))
  fs.chownSync(dir, NOBODY, NOBODY)
  const env = { SBX_TOKEN: "t".repeat(64), SBX_HOST_MODE: "1", SBX_HOMES_DIR: `${dir}/homes` }
  const server = spawnServer(["--port", "0"], env, dir, command)
  const exit = await withTimeout(server.exited, 30_000)
  if (exit === "timeout") server.proc.kill("SIGKILL")
  fs.rmSync(dir, { recursive: true, force: true })
  return { exit, stderr: server.stderr() }
}

const ptrace = (pid: number) =>
  `import ctypes,os; libc=ctypes.CDLL(None,use_errno=True); print(libc.ptrace(16,${pid},0,0), os.strerror(ctypes.get_errno()))`
const bindTcp = `import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print("bound")`

/** A host started before the suite's tests (`start`) with two sandboxes made in it, stopped after them. */
const useHost = (start: () => Promise<Host>, limits: Record<string, number> = {}) => {
  const the = {} as { host: Host; a: Leased; b: Leased }
  beforeAll(async () => {
    the.host = await start()
    ;[the.a, the.b] = (await create(the.host, { count: 2, ...limits })).sandboxes as [Leased, Leased]
  }, 60_000)
  afterAll(async () => {
    if (the.host !== undefined) await stopHost(the.host)
  })
  return the
}

/** The command's environment, as NAME -> value. */
const environment = (stdout: string) =>
  Object.fromEntries(
    stdout
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])
  )

/** What holds whatever the isolation: per-sandbox tokens, own homes, a scrubbed environment. */
const checkTokensHomesEnvironment = async (host: Host, a: Leased, b: Leased) => {
  expect(a.home).not.toBe(b.home)
  for (const sb of [a, b]) {
    expect(fs.statSync(sb.home).mode & 0o777).toBe(0o700)
    const run = await exec(host, sb, "pwd; env")
    const [pwd, ...lines] = run.stdout.trim().split("\n")
    expect(pwd).toBe(sb.home)
    const env = environment(lines.join("\n"))
    expect(env).toMatchObject({ HOME: sb.home, TMPDIR: `${sb.home}/.tmp`, SBX_SANDBOX_ID: sb.id })
    expect(env.HOST_ONLY_VARIABLE).toBeUndefined()
    for (const secret of [host.token, a.token, b.token, HOST_SECRET]) expect(run.stdout).not.toContain(secret)
  }
  const read = (sb: Leased, token: string) => request(host, `/v1/sandboxes/${sb.id}/files/stat?path=/`, token)
  expect((await read(a, a.token)).status).toBe(200)
  expect((await read(a, b.token)).status).toBe(401)
  expect((await read(a, host.token)).status).toBe(401)
}

/** Delete kills every process of the sandbox, one that left its group too, and removes its home, even
 * with directories its commands made read-only. */
const checkDelete = async (host: Host) => {
  const sb = await createOne(host)
  await exec(host, sb, "mkdir -p ro/sub && touch ro/sub/f && chmod 500 ro/sub ro && chmod 0 .tmp")
  await spawnIn(host, sb, "sleep 1000 & echo $! > pids; setsid sh -c 'sleep 1001 & echo $! >> pids; wait' & wait")
  await until(
    "both sleeps to start (their pids in pids)",
    () => fs.existsSync(`${sb.home}/pids`) && fs.readFileSync(`${sb.home}/pids`, "utf8").trim().split("\n").length >= 2
  )
  const pids = fs.readFileSync(`${sb.home}/pids`, "utf8").trim().split("\n").map(Number)
  const deleted = await json(host, `/v1/sandboxes/${sb.id}`, host.token, { method: "DELETE" })
  expect(deleted).toEqual({ status: 200, body: { id: sb.id, deleted: true } })
  expect(await waitGone(pids)).toEqual([])
  expect(fs.existsSync(sb.home)).toBe(false)
}

describe.skipIf(withLandlock !== undefined)(
  `host mode as nobody, with Landlock (isolation "landlock")${skipped(withLandlock)}`,
  () => {
    const the = useHost(
      () => startHost({ command: asNobody, owner: NOBODY, env: { HOST_ONLY_VARIABLE: HOST_SECRET } }),
      { max_procs: 100 }
    )

    it("refuses to start without the opt-in, naming root as missing and the options that accept weaker isolation", async () => {
      const refused = await refusal(asNobody)
      expect(refused.exit).toEqual({ code: 2, signal: null })
      expect(refused.stderr).toContain("host mode refused: not root: cannot give sandboxes their own uid")
      expect(refused.stderr).toContain("they could signal each other and this server)")
      expect(refused.stderr).not.toContain("Landlock unavailable")
      expect(refused.stderr).toContain("SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)")
      const flagged = await startHost({ command: asNobody, owner: NOBODY, weak: false, args: ["--weak-isolation"] })
      try {
        expect((await json(flagged, "/health", "")).body.isolation).toBe("landlock")
        expect(flagged.stderr()).toContain("WARNING: weak isolation: not root")
      } finally {
        await stopHost(flagged)
      }
    }, 60_000)

    it("serves each sandbox in its own home with its own token, as the server's user, confined by NO_NEW_PRIVS and RLIMIT_AS", async () => {
      const { host, a, b } = the
      expect((await json(host, "/health", "")).body.isolation).toBe("landlock")
      expect([a.uid, b.uid]).toEqual([NOBODY, NOBODY])
      await checkTokensHomesEnvironment(host, a, b)
      const run = await exec(
        host,
        a,
        "id -u; grep NoNewPrivs /proc/self/status; grep -E '^Max address space' /proc/self/limits"
      )
      expect(run.stdout.split("\n").map((l) => l.replace(/\s+/g, " ").trim())).toEqual([
        String(NOBODY),
        "NoNewPrivs: 1",
        `Max address space ${2048 * 1024 * 1024} ${2048 * 1024 * 1024} bytes`,
        ""
      ])
    })

    it("keeps a sandbox out of another's files and /tmp, and out of another's and the server's process environment and memory", async () => {
      const { host, a, b } = the
      fs.writeFileSync(`${b.home}/secret`, "b's secret")
      fs.chownSync(`${b.home}/secret`, NOBODY, NOBODY)
      const pid = await pidIn(host, b, "sleep 60", "sleep.pid")
      const tries = [
        `cat ${b.home}/secret`,
        `ls ${b.home}`,
        `echo x > ${b.home}/from-a`,
        `cat /proc/${pid}/environ`,
        `cat /proc/${host.pid}/environ`,
        `head -c 1 /proc/${host.pid}/mem`, // allowed, it would fail with EIO at offset 0
        "ls /tmp",
        `echo x > /tmp/sbx-weak-${a.id}`,
        `echo x > /dev/shm/sbx-weak-${a.id}`
      ]
      const run = await exec(host, a, tries.join("; "))
      expect(run.stdout).toBe("")
      expect(run.stderr.match(/Permission denied/g)?.length).toBe(tries.length)
      for (const made of [`${b.home}/from-a`, `/tmp/sbx-weak-${a.id}`, `/dev/shm/sbx-weak-${a.id}`]) {
        expect(fs.existsSync(made)).toBe(false)
      }
      expect(await pythonIn(host, a, ptrace(pid))).toBe("-1 Operation not permitted")
      expect(await pythonIn(host, a, ptrace(host.pid))).toBe("-1 Operation not permitted")
      // Nor through the server: a link out of its home is refused.
      await exec(host, a, `ln -s ${b.home}/secret link`)
      expect((await json(host, `/v1/sandboxes/${a.id}/files/read?path=link`, a.token)).status).toBe(403)
    })

    it("denies binding TCP ports and reaching another sandbox's abstract unix sockets", async () => {
      const { host, a, b } = the
      expect(await pythonIn(host, a, bindTcp)).toContain("PermissionError")
      await listenAbstract(host, b, `sbx-weak-${b.id}`)
      expect(await pythonIn(host, a, connectAbstract(`sbx-weak-${b.id}`))).toContain("PermissionError")
    })

    it("does not keep a sandbox from signalling another's processes or the server, nor apply max_procs", async () => {
      const { host, a, b } = the
      const pid = await pidIn(host, b, "sleep 60", "signalled.pid")
      const probe = await exec(host, a, `kill -0 ${pid} && kill -0 ${host.pid} && echo both`)
      expect(probe.stdout).toBe("both\n")
      const limit = await exec(host, a, "grep -E '^Max processes' /proc/self/limits")
      expect(limit.stdout.replace(/\s+/g, " ")).not.toContain("Max processes 100 100")
    })

    it("does not keep a sandbox from the server's user's unix sockets under /run", async () => {
      const { host, a } = the
      const dir = fs.mkdtempSync("/run/sbx-weak-")
      const socket = `${dir}/agent.sock`
      const server = net.createServer((c) => c.end("agent"))
      await new Promise<void>((resolve) => server.listen(socket, resolve))
      try {
        fs.chownSync(dir, NOBODY, NOBODY)
        fs.chownSync(socket, NOBODY, NOBODY)
        fs.chmodSync(socket, 0o600)
        const connect = `import socket; s=socket.socket(socket.AF_UNIX); s.connect("${socket}"); print(s.recv(5).decode())`
        expect(await pythonIn(host, a, connect)).toBe("agent")
      } finally {
        server.close()
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })

    it("delete kills every process of the sandbox and removes its home, read-only directories in it too", async () => {
      const { host } = the
      await checkDelete(host)
    })

    it("does not find at delete a process that cleared its environment and left the command's tree", async () => {
      const { host } = the
      const sb = await createOne(host)
      const run = await exec(host, sb, "setsid env -i sleep 1002 </dev/null >/dev/null 2>&1 & echo $!")
      const pid = Number(run.stdout.trim())
      try {
        // Until env has exec'd sleep, the process still carries the sandbox's id in its environment.
        await until("env -i to run sleep", () => !fs.readFileSync(`/proc/${pid}/environ`, "utf8").includes(sb.id))
        expect((await json(host, `/v1/sandboxes/${sb.id}`, host.token, { method: "DELETE" })).status).toBe(200)
        expect(isAlive(pid)).toBe(true)
      } finally {
        if (isAlive(pid)) process.kill(pid, "SIGKILL")
      }
    })
  }
)

describe.skipIf(withoutLandlock !== undefined)(
  `host mode as nobody, without Landlock (isolation "none")${skipped(withoutLandlock)}`,
  () => {
    const the = useHost(() =>
      startHost({ command: noLandlock(asNobody), owner: NOBODY, env: { HOST_ONLY_VARIABLE: HOST_SECRET } })
    )

    it("refuses to start without the opt-in, naming root and Landlock as missing", async () => {
      const refused = await refusal(noLandlock(asNobody))
      expect(refused.exit).toEqual({ code: 2, signal: null })
      expect(refused.stderr).toContain("host mode refused: not root: cannot give sandboxes their own uid")
      expect(refused.stderr).toContain("signal each other and this server, trace them and read their environment")
      expect(refused.stderr).toContain("; Landlock unavailable (kernel without it, or disabled at boot)")
      expect(refused.stderr).toContain("SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)")
    })

    it("still gives each sandbox its own home, token and scrubbed environment, and roots its file routes at its home", async () => {
      const { host, a, b } = the
      expect((await json(host, "/health", "")).body.isolation).toBe("none")
      await checkTokensHomesEnvironment(host, a, b)
      const put = await json(host, `/v1/sandboxes/${a.id}/files/write?path=/../../x.txt`, a.token, {
        method: "PUT",
        body: "rooted"
      })
      expect(put.body.path).toBe(`${a.home}/x.txt`)
      await exec(host, a, `ln -s ${b.home} other`)
      expect((await json(host, `/v1/sandboxes/${a.id}/files/list?path=other`, a.token)).status).toBe(403)
      await checkDelete(host)
    })

    it("does not keep sandboxes apart: one reads another's files and the server's environment, the host token in it", async () => {
      const { host, a, b } = the
      fs.writeFileSync(`${b.home}/secret`, "b's secret")
      fs.chownSync(`${b.home}/secret`, NOBODY, NOBODY)
      expect((await exec(host, a, `cat ${b.home}/secret; echo from-a > ${b.home}/from-a`)).stdout).toBe("b's secret")
      expect(fs.readFileSync(`${b.home}/from-a`, "utf8")).toBe("from-a\n")
      const environ = await exec(host, a, `tr '\\0' '\\n' < /proc/${host.pid}/environ`)
      expect(environment(environ.stdout)).toMatchObject({ SBX_TOKEN: host.token, HOST_ONLY_VARIABLE: HOST_SECRET })
      const pid = await pidIn(host, b, "sleep 60", "traced.pid")
      expect(await pythonIn(host, a, ptrace(pid))).toBe("0 Success")
      expect(await pythonIn(host, a, bindTcp)).toBe("bound")
      const limit = await exec(host, a, "grep -E '^Max address space' /proc/self/limits")
      expect(limit.stdout).toContain("unlimited")
    })
  }
)

describe.skipIf(withoutLandlock !== undefined)(
  `host mode as root, without Landlock (isolation "uid")${skipped(withoutLandlock)}`,
  () => {
    const the = useHost(() => startHost({ command: noLandlock([SYSTEM_PYTHON]) }))

    it("refuses to start without the opt-in, naming Landlock as missing", async () => {
      const refused = await refusal(noLandlock([SYSTEM_PYTHON]))
      expect(refused.exit).toEqual({ code: 2, signal: null })
      expect(refused.stderr).toContain("host mode refused: Landlock unavailable")
      expect(refused.stderr).not.toContain("not root")
      expect(refused.stderr).toContain("SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)")
    })

    it("keeps sandboxes apart by uid: files, environment, signals and ptrace; applies the rlimits", async () => {
      const { host, a, b } = the
      expect((await json(host, "/health", "")).body.isolation).toBe("uid")
      expect(a.uid).not.toBe(b.uid)
      await checkTokensHomesEnvironment(host, a, b)
      const limits = await exec(host, a, "id -u; grep -E '^Max (processes|address space)' /proc/self/limits")
      expect(limits.stdout.split("\n").map((l) => l.replace(/\s+/g, " ").trim())).toEqual([
        String(a.uid),
        "Max processes 256 256 processes",
        `Max address space ${2048 * 1024 * 1024} ${2048 * 1024 * 1024} bytes`,
        ""
      ])
      const pid = await pidIn(host, b, "sleep 60", "victim.pid")
      const run = await exec(host, a, `ls ${b.home}; cat /proc/${pid}/environ; kill -0 ${pid}`)
      expect(run.stdout).toBe("")
      expect(run.stderr.match(/Permission denied/g)?.length).toBe(2)
      expect(run.stderr).toContain("Operation not permitted")
      expect(await pythonIn(host, a, ptrace(pid))).toBe("-1 Operation not permitted")
      await checkDelete(host)
    })

    it("does not keep /tmp, /dev/shm, localhost ports or abstract unix sockets to each sandbox", async () => {
      const { host, a, b } = the
      const shared = [`/tmp/sbx-weak-${a.id}`, `/dev/shm/sbx-weak-${a.id}`]
      try {
        for (const file of shared) {
          await exec(host, a, `echo from-a > ${file} && chmod 644 ${file}`)
          expect((await exec(host, b, `cat ${file}`)).stdout).toBe("from-a\n")
        }
        expect(await pythonIn(host, a, bindTcp)).toBe("bound")
        await listenAbstract(host, b, `sbx-weak-${b.id}`)
        expect(await pythonIn(host, a, connectAbstract(`sbx-weak-${b.id}`))).toBe("connected")
      } finally {
        for (const file of shared) fs.rmSync(file, { force: true })
      }
    })
  }
)
