/**
 * The harness of the host-mode suites (`test/server/hostMode.test.ts`, `hostIsolation.test.ts`) and of
 * `bench/host-memory.ts`: a real server started with `SBX_HOST_MODE=1` and its homes in its temp dir,
 * and the calls of the wire contract (docs/protocol.md "Host mode") with Node built-ins and `fetch`.
 */
import { createHmac } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { until } from "./processes.js"
import { type Event, parseNdjson, type Running, type StartOptions, startServer, stopServer } from "./server.js"

export interface Host extends Running {
  readonly homes: string
}

export interface Leased {
  readonly id: string
  readonly uid: number
  readonly home: string
  readonly created_at_ms: number
  readonly token: string
}

/** A host-mode server. `weak` (default true) lets it start without root or Landlock. */
export const startHost = async (options: StartOptions & { readonly weak?: boolean } = {}): Promise<Host> => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-homes-"))
  if (options.owner !== undefined) fs.chownSync(parent, options.owner, options.owner)
  const homes = path.join(parent, "homes")
  const server = await startServer({
    ...options,
    prefix: options.prefix ?? "sbx-host-",
    env: {
      SBX_HOST_MODE: "1",
      SBX_HOMES_DIR: homes,
      ...(options.weak === false ? {} : { SBX_HOST_WEAK_ISOLATION: "1" }),
      ...options.env
    }
  })
  return { ...server, homes }
}

export const stopHost = async (host: Host) => {
  const exit = await stopServer(host)
  fs.rmSync(path.dirname(host.homes), { recursive: true, force: true })
  return exit
}

/** A sandbox's token as any client that knows the host token derives it (the contract's HMAC). */
export const sandboxToken = (hostToken: string, id: string) => createHmac("sha256", hostToken).update(id).digest("hex")

export const request = (host: Running, route: string, token: string, init: RequestInit = {}) =>
  fetch(host.base + route, {
    ...init,
    headers: { "X-Sandbox-Token": token, ...(init.headers as Record<string, string> | undefined) }
  })

export const json = async (host: Running, route: string, token: string, init: RequestInit = {}) => {
  const res = await request(host, route, token, init)
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field
  return { status: res.status, body: (await res.json()) as any }
}

export const create = async (host: Running, body: Record<string, unknown> = {}) => {
  const res = await json(host, "/v1/sandboxes", host.token, { method: "POST", body: JSON.stringify(body) })
  if (res.status !== 200) throw new Error(`POST /v1/sandboxes: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as { sandboxes: Array<Leased>; rejected: number }
}

export const createOne = async (host: Running, body: Record<string, unknown> = {}) =>
  (await create(host, body)).sandboxes[0]!

/** Runs `cmd` (sh -c) in the sandbox with its own token: (exit code, stdout, stderr, pid it started as). */
export const exec = async (host: Running, sb: Leased, cmd: string, extra: Record<string, unknown> = {}) => {
  const res = await request(host, `/v1/sandboxes/${sb.id}/exec`, sb.token, {
    method: "POST",
    body: JSON.stringify({ cmd, ...extra })
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`exec in ${sb.id}: ${res.status} ${text}`)
  const events: Array<Event> = parseNdjson(text)
  const out = (name: string) =>
    events
      .filter((e) => e.event === name)
      .map((e) => String(e.data))
      .join("")
  const exit = events.find((e) => e.event === "exit")
  const pid = events.find((e) => e.event === "start")?.pid as number | undefined
  return { code: exit?.exit_code as number | null, stdout: out("stdout"), stderr: out("stderr"), pid }
}

/** Starts `cmd` as a background process of the sandbox; its id. */
export const spawnIn = async (host: Running, sb: Leased, cmd: string) => {
  const res = await json(host, `/v1/sandboxes/${sb.id}/processes`, sb.token, {
    method: "POST",
    body: JSON.stringify({ cmd })
  })
  if (res.status !== 200) throw new Error(`spawn in ${sb.id}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.id as string
}

/** Starts `cmd` in `sb` and waits for the pid it writes to `file` in its home. */
export const pidIn = async (host: Running, sb: Leased, cmd: string, file: string) => {
  await spawnIn(host, sb, `echo $$ > ${file}; exec ${cmd}`)
  const written = await until(`${cmd} to start in ${sb.id} (its pid in ${file})`, () =>
    fs.existsSync(`${sb.home}/${file}`) ? fs.readFileSync(`${sb.home}/${file}`, "utf8").trim() || undefined : undefined
  )
  return Number(written)
}

/** Runs a Python one-liner in the sandbox: its stdout and stderr, trimmed. */
export const pythonIn = async (host: Running, sb: Leased, source: string) => {
  const run = await exec(host, sb, `python3 -c '${source}'`)
  return run.stdout.trim() + run.stderr.trim()
}

/** Starts in `sb` a listener on the abstract unix socket `name`, and waits until it listens. */
export const listenAbstract = async (host: Running, sb: Leased, name: string) => {
  const listener = `import socket,time; s=socket.socket(socket.AF_UNIX); s.bind("\\0${name}"); s.listen(); open("abstract.ready","w").close(); time.sleep(60)`
  await spawnIn(host, sb, `python3 -c '${listener}'`)
  await until("the abstract socket listener to start", () => fs.existsSync(`${sb.home}/abstract.ready`))
}

/** Python that connects to the abstract unix socket `name` and prints "connected". */
export const connectAbstract = (name: string) =>
  `import socket; s=socket.socket(socket.AF_UNIX); s.connect("\\0${name}"); print("connected")`
