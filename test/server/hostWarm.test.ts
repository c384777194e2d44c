/**
 * Host mode's warm wrappers (`rpc-server/sbx_server/warm.py`; docs/protocol.md "Host mode"), against
 * the real server: a command takes a started wrapper (the pid it runs as is one the server started
 * before the request), keeps no descriptor of the wrapper's, runs confined as a cold one does, with
 * every stdin mode; a failure after confinement answers as a cold wrapper's; idle wrappers are nobody's
 * processes and die with the server; SBX_HOST_WARM_WRAPPERS=0 starts every command cold. Wrappers exist
 * only where the host confines (root or Landlock): elsewhere the suite is skipped.
 */
import * as fs from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createOne, exec, type Host, json, type Leased, request, startHost, stopHost } from "../support/hostServer.js"
import { until } from "../support/processes.js"

const TAG = "sbx-warm" // warm.py's TAG: a waiting warm wrapper's name (its /proc comm)
const ZYGOTE = "sbx-warm-zygote" // zygote.py's ZTAG: the name of the process that forks the wrappers

/** The pids of `server`'s children that are warm wrappers (Linux /proc). */
const wrappersOf = (server: number): Array<number> => childrenNamed(server, TAG)

const cmdline = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")

/** The pids of `server`'s live children called `name` (their /proc comm). */
const childrenNamed = (server: number, name: string): Array<number> =>
  fs
    .readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
        if (Number(fields[1]) !== server || fields[0] === "Z") return []
        return fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim() === name ? [Number(entry)] : []
      } catch {
        return [] // gone meanwhile
      }
    })

/** Waits until `server` has `n` warm wrappers; their pids. */
const stocked = (server: number, n: number) =>
  until(
    () => `${n} warm wrappers of server ${server}; it has ${wrappersOf(server).length}`,
    () => {
      const pids = wrappersOf(server)
      return pids.length >= n ? pids : undefined
    },
    20_000,
    20
  )

const confines = async (host: Host) => (await json(host, "/health", "")).body.isolation !== "none"

let warm: Host
let cold: Host
let canRun = process.platform === "linux"

beforeAll(async () => {
  if (!canRun) return
  warm = await startHost({ env: { SBX_HOST_WARM_WRAPPERS: "2" } })
  cold = await startHost({ env: { SBX_HOST_WARM_WRAPPERS: "0" } })
  canRun = await confines(warm)
}, 60_000)

afterAll(async () => {
  for (const host of [warm, cold]) if (host !== undefined) await stopHost(host)
})

/** Runs `cmd` (sh -c) in `sb` on `host` once its stock is full: (exit code, stdout, stderr, whether a
 * warm wrapper ran it: the pid of its start event is one of the stock's). */
const execWarm = async (host: Host, sb: Leased, cmd: string, extra: Record<string, unknown> = {}) => {
  const before = await stocked(host.pid, 2)
  const run = await exec(host, sb, cmd, extra)
  return { ...run, warm: before.includes(run.pid ?? -1) }
}

describe.skipIf(process.platform !== "linux")("host mode warm wrappers", () => {
  it("runs a command in a warm wrapper: confined, in its home, with nothing of the wrapper's open", async () => {
    if (!canRun) return
    const sb = await createOne(warm, { env: { FROM_CREATE: "yes" } })
    const run = await execWarm(warm, sb, "pwd; id -u; echo $FROM_CREATE $HOME $FROM_EXEC", { env: { FROM_EXEC: "1" } })
    expect(run).toMatchObject({ warm: true, code: 0, stdout: `${sb.home}\n${sb.uid}\nyes ${sb.home} 1\n` })
    // The program the wrapper execs has its stdio and nothing else (3 is ls's own: the directory it lists).
    const fds = await execWarm(warm, sb, "", { cmd: ["ls", "-l", "/proc/self/fd"] })
    expect(fds.warm).toBe(true)
    const open = [...fds.stdout.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [Number(m[1]), m[2]] as const)
    expect(open.map(([fd]) => fd).sort()).toEqual([0, 1, 2, 3])
    expect(open.find(([fd]) => fd === 0)?.[1]).toBe("/dev/null")
    expect(open.find(([fd]) => fd === 3)?.[1]).toMatch(/^\/proc\/\d+\/fd$/)
    // A job larger than one socket buffer: 300 KB of environment.
    const big = { A: "a".repeat(100_000), B: "b".repeat(100_000), C: "c".repeat(100_000) }
    const large = await execWarm(warm, sb, "printenv A B C | wc -c", { env: big })
    expect(large).toMatchObject({ warm: true, code: 0, stdout: "300003\n" })
    const status = await execWarm(warm, sb, "grep NoNewPrivs /proc/$$/status; env | grep -c HOST_ONLY || true")
    expect(status.warm).toBe(true)
    expect(status.stdout).toMatch(/^NoNewPrivs:\s+1\n0\n$/)
  })

  it("keeps the stock in the serving process of a supervised host, as the providers start it", async () => {
    if (!canRun) return
    // --supervise forks the server after host mode is set up: the stock (a thread and its children)
    // must be the serving process's, or every command starts cold.
    const supervised = await startHost({ args: ["--supervise"], env: { SBX_HOST_WARM_WRAPPERS: "2" } })
    try {
      expect(supervised.pid).not.toBe(supervised.proc.pid)
      const sb = await createOne(supervised)
      expect(await execWarm(supervised, sb, "echo hi")).toMatchObject({ warm: true, code: 0, stdout: "hi\n" })
    } finally {
      await stopHost(supervised)
    }
  })

  it("gives a warm command its stdin: bytes, /dev/null, and the stdin pipe", async () => {
    if (!canRun) return
    const sb = await createOne(warm)
    const bytes = await execWarm(warm, sb, "cat", { stdin: "hello warm" })
    expect(bytes).toMatchObject({ warm: true, code: 0, stdout: "hello warm" })
    const none = await execWarm(warm, sb, "cat; readlink /proc/$$/fd/0")
    expect(none).toMatchObject({ warm: true, code: 0, stdout: "/dev/null\n" })

    await stocked(warm.pid, 2)
    const started = await json(warm, `/v1/sandboxes/${sb.id}/processes`, sb.token, {
      method: "POST",
      body: JSON.stringify({ cmd: "cat", stdin_pipe: true })
    })
    expect(started.status).toBe(200)
    const id = started.body.id as string
    const write = await request(warm, `/v1/sandboxes/${sb.id}/processes/${id}/stdin?offset=0&eof=1`, sb.token, {
      method: "POST",
      body: "piped"
    })
    expect(write.status).toBe(200)
    const waited = await json(warm, `/v1/sandboxes/${sb.id}/processes/${id}/wait?timeout=20`, sb.token)
    expect(waited.body).toMatchObject({ exit_code: 0 })
    const out = await request(warm, `/v1/sandboxes/${sb.id}/processes/${id}/output`, sb.token)
    expect(await out.text()).toContain("piped")
  })

  it("fails a command that cannot start after confinement as a cold wrapper does", async () => {
    if (!canRun) return
    // A program that is not executable: found (a path), so the wrapper's own exec fails, after confining.
    const notExecutable = async (host: Host) => {
      const sb = await createOne(host)
      expect((await exec(host, sb, "echo echo no > not-executable")).code).toBe(0)
      const cmd = { cmd: ["./not-executable"] }
      const run =
        host === warm ? await execWarm(host, sb, "", cmd) : { ...(await exec(host, sb, "", cmd)), warm: false }
      return { ...run, stderr: run.stderr.replace(sb.home, "HOME") }
    }
    const inWarm = await notExecutable(warm)
    const inCold = await notExecutable(cold)
    expect(inWarm).toMatchObject({ warm: true, code: 126 })
    expect(inCold).toMatchObject({ code: 126, stderr: inWarm.stderr })
    expect(inWarm.stderr).toBe("sandbox: cannot run HOME/./not-executable: Permission denied\n")

    // 1 MiB of address space: the program dies loading, the same way from either wrapper.
    const small = { max_mem_mb: 1 }
    const memWarm = await execWarm(warm, await createOne(warm, small), "true")
    const memCold = await exec(cold, await createOne(cold, small), "true")
    expect(memWarm.warm).toBe(true)
    expect(memWarm.code).not.toBe(0)
    expect([memWarm.code, memWarm.stderr]).toEqual([memCold.code, memCold.stderr])
  })

  it("answers a missing program or cwd as the cold path does", async () => {
    if (!canRun) return
    for (const host of [warm, cold]) {
      const sb = await createOne(host)
      if (host === warm) await stocked(warm.pid, 2)
      const missing = await json(host, `/v1/sandboxes/${sb.id}/exec`, sb.token, {
        method: "POST",
        body: JSON.stringify({ cmd: ["no-such-program"] })
      })
      expect(missing).toMatchObject({ status: 400, body: { code: "command_not_found" } })
      const cwd = await json(host, `/v1/sandboxes/${sb.id}/exec`, sb.token, {
        method: "POST",
        body: JSON.stringify({ cmd: "true", cwd: "/nowhere" })
      })
      expect(cwd).toMatchObject({ status: 400, body: { code: "cwd_not_found" } })
    }
  })

  it("lists no idle wrapper as anyone's process, keeps none with 0, and leaves none after shutdown", async () => {
    if (!canRun) return
    const sb = await createOne(warm)
    const pids = await stocked(warm.pid, 2)
    const listed = await json(warm, `/v1/sandboxes/${sb.id}/processes`, sb.token)
    expect(listed.status).toBe(200)
    expect(JSON.stringify(listed.body)).not.toMatch(new RegExp(`"pid":(${pids.join("|")})\\b`))

    const coldRun = await exec(cold, await createOne(cold), "true")
    expect(coldRun.code).toBe(0)
    expect(wrappersOf(cold.pid)).toEqual([])

    const other = await startHost({ env: { SBX_HOST_WARM_WRAPPERS: "3" } })
    const theirs = [...(await stocked(other.pid, 2)), ...childrenNamed(other.pid, ZYGOTE)]
    expect(theirs).toHaveLength(3)
    await stopHost(other)
    expect(theirs.filter((pid) => fs.existsSync(`/proc/${pid}`))).toEqual([])
  })

  it("forks its wrappers from a zygote, as the server's own children; without it, starts them as new Pythons", async () => {
    if (!canRun) return
    const host = await startHost({ env: { SBX_HOST_WARM_WRAPPERS: "2" } })
    try {
      const sb = await createOne(host)
      const forked = await stocked(host.pid, 2) // children of the server's, though the zygote forked them
      const [zygote, ...others] = childrenNamed(host.pid, ZYGOTE)
      expect(others).toEqual([])
      for (const pid of forked) expect(cmdline(pid)).toBe(cmdline(zygote!))
      process.kill(zygote!, "SIGKILL")
      // The commands take the forked wrappers; their replacements cannot be forked and start as new Pythons.
      for (const pid of forked) {
        const run = await exec(host, sb, "echo warm")
        expect(run).toMatchObject({ code: 0, stdout: "warm\n", pid })
      }
      const started = await stocked(host.pid, 2)
      expect(started.filter((pid) => forked.includes(pid))).toEqual([])
      for (const pid of started) expect(cmdline(pid).split("\0")).toContain("-c")
      const run = await exec(host, sb, "echo again")
      expect(run).toMatchObject({ code: 0, stdout: "again\n" })
      expect(started).toContain(run.pid)
    } finally {
      await stopHost(host)
    }
  })

  it("starts with two wrappers and keeps one more after each command that found none, up to its most", async () => {
    if (!canRun) return
    const host = await startHost({ env: { SBX_HOST_WARM_WRAPPERS: "3" } })
    try {
      const sb = await createOne(host)
      const first = await stocked(host.pid, 2)
      expect(first).toHaveLength(2)
      // Both die waiting: the next command finds the stock empty (the dead are discarded) and the zygote forks
      // one for it.
      for (const pid of first) process.kill(pid, "SIGKILL")
      // Dead (a zombie, or reaped) before the command comes: a wrapper still dying would be taken.
      await until(
        `warm wrappers ${first.join(", ")} to die`,
        () => !wrappersOf(host.pid).some((pid) => first.includes(pid)),
        20_000,
        20
      )
      const run = await exec(host, sb, "echo cold")
      expect(run).toMatchObject({ code: 0, stdout: "cold\n" })
      expect(first).not.toContain(run.pid)
      // From then on the host keeps three ready, its most.
      expect(await stocked(host.pid, 3)).toHaveLength(3)
    } finally {
      await stopHost(host)
    }
  })
})
