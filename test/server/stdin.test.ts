/**
 * Conformance of the server's streamed stdin (`stdin_pipe`, `POST /v1/processes/{id}/stdin`, see
 * docs/protocol.md), against the real `rpc-server/sbx_server` over loopback HTTP with `fetch` only.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { waitGone } from "../support/processes.js"
import { parseNdjson, type Running, started, startServer, stopServer } from "../support/server.js"

const seenPids = new Set<number>()

const call = (r: Running, route: string, init: RequestInit = {}) =>
  fetch(r.base + route, {
    ...init,
    headers: { "X-Sandbox-Token": r.token, ...(init.headers as Record<string, string> | undefined) }
  })

const json = async (r: Running, route: string, init: RequestInit = {}) => {
  const res = await call(r, route, init)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

const startProcess = async (r: Running, body: Record<string, unknown>) => {
  const { status, body: out } = await json(r, "/v1/processes", { method: "POST", body: JSON.stringify(body) })
  expect(status, JSON.stringify(out)).toBe(200)
  seenPids.add(out.pid as number)
  return out as { id: string; pid: number }
}

const writeStdin = (r: Running, id: string, offset: number, body: string | Uint8Array, eof = false) =>
  json(r, `/v1/processes/${id}/stdin?offset=${offset}${eof ? "&eof=1" : ""}`, {
    method: "POST",
    body: body as BodyInit,
    headers: { "Content-Type": "application/octet-stream" }
  })

const waitExit = (r: Running, id: string) => json(r, `/v1/processes/${id}/wait?timeout=20`, { method: "POST" })

const stdout = async (r: Running, id: string) => {
  const res = await call(r, `/v1/processes/${id}/output`, { method: "POST" })
  return parseNdjson(await res.text())
    .filter((e) => e.event === "stdout")
    .map((e) => e.data as string)
    .join("")
}

let S: Running
/** A server whose writers give up after half a second of a command not reading. */
let Quick: Running

beforeAll(async () => {
  S = await startServer({ prefix: "sbx-stdin-" })
  Quick = await startServer({ prefix: "sbx-stdin-", env: { SBX_STDIN_STALL: "0.5" } })
})

afterAll(async () => {
  for (const r of started) await stopServer(r)
  expect(await waitGone([...started.map((r) => r.pid), ...seenPids])).toEqual([])
})

describe("streamed stdin", () => {
  it("places each body at its offset: a retried prefix is skipped, a gap is refused (after the stall bound), eof closes", async () => {
    const p = await startProcess(Quick, { cmd: ["cat"], stdin: "head:", stdin_pipe: true })
    expect(await writeStdin(Quick, p.id, 5, "hello")).toEqual({
      status: 200,
      body: { id: p.id, offset: 10, closed: false }
    })
    // A retry whose answer was lost: the written prefix is skipped, the rest written.
    expect((await writeStdin(Quick, p.id, 5, "hello")).body).toEqual({ id: p.id, offset: 10, closed: false })
    expect((await writeStdin(Quick, p.id, 5, "helloworld")).body).toEqual({ id: p.id, offset: 15, closed: false })
    const gap = await writeStdin(Quick, p.id, 20, "xx")
    expect(gap.status).toBe(409)
    expect(gap.body.code).toBe("stdin_gap")
    expect(gap.body.error).toContain("send from offset 15")
    // (after waiting SBX_STDIN_STALL for the bytes before it, which may be on another connection)
    expect((await writeStdin(Quick, p.id, 15, "!", true)).body).toEqual({ id: p.id, offset: 16, closed: true })
    expect((await waitExit(Quick, p.id)).body.exit_code).toBe(0)
    expect(await stdout(Quick, p.id)).toBe("head:helloworld!")
    // Closed: later bodies are answered, not written.
    expect((await writeStdin(Quick, p.id, 16, "late")).body).toEqual({ id: p.id, offset: 16, closed: true })
  })

  it("parts sent in parallel are written in offset order, whichever arrives first", async () => {
    const p = await startProcess(S, { cmd: ["cat"], stdin_pipe: true })
    const parts = ["first-", "second-", "third"]
    let at = 0
    const offsets = parts.map((part) => {
      const offset = at
      at += part.length
      return offset
    })
    // The later parts are sent first: each waits for the bytes before it.
    const answers = await Promise.all([2, 1, 0].map((i) => writeStdin(S, p.id, offsets[i]!, parts[i]!, i === 2)))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200])
    expect((await waitExit(S, p.id)).body.exit_code).toBe(0)
    expect(await stdout(S, p.id)).toBe("first-second-third")
  })

  it("refuses what it cannot take: no pipe, an unknown process, no offset, no length, over 16 MiB", async () => {
    const plain = await startProcess(S, { cmd: ["cat"] })
    const notPiped = await writeStdin(S, plain.id, 0, "x")
    expect(notPiped.status).toBe(409)
    expect(notPiped.body.code).toBe("stdin_not_piped")
    expect(notPiped.body.error).toContain('"stdin_pipe": true')
    expect((await writeStdin(S, "p-999999", 0, "x")).status).toBe(404)

    const p = await startProcess(S, { cmd: ["cat"], stdin_pipe: true })
    const noOffset = await json(S, `/v1/processes/${p.id}/stdin`, { method: "POST", body: "x" })
    expect(noOffset.status).toBe(400)
    expect(noOffset.body.error).toContain("offset")
    const chunked = await call(S, `/v1/processes/${p.id}/stdin?offset=0`, {
      method: "POST",
      body: new Blob(["x"]).stream(),
      duplex: "half"
    } as RequestInit)
    expect(chunked.status).toBe(411)
    const tooLarge = await writeStdin(S, p.id, 0, new Uint8Array(16 * 1024 * 1024 + 1))
    expect(tooLarge.status).toBe(413)
    expect(tooLarge.body.code).toBe("too_large")
    expect((await writeStdin(S, p.id, 0, "", true)).body).toEqual({ id: p.id, offset: 0, closed: true })
    expect((await waitExit(S, p.id)).body.exit_code).toBe(0)
    expect((await json(S, `/v1/processes/${plain.id}?signal=KILL`, { method: "DELETE" })).status).toBe(200)
  })

  it("answers with the partial offset when the command does not read; closed once it is killed", async () => {
    const p = await startProcess(Quick, { cmd: ["sleep", "60"], stdin_pipe: true })
    const big = new Uint8Array(8 * 1024 * 1024)
    const partial = await writeStdin(Quick, p.id, 0, big)
    expect(partial.status).toBe(200)
    expect(partial.body.closed).toBe(false)
    const offset = partial.body.offset as number
    expect(offset).toBeGreaterThan(0)
    expect(offset).toBeLessThan(big.length)
    // The client sends the rest from the answered offset; the command still does not read.
    const again = await writeStdin(Quick, p.id, offset, big.subarray(offset))
    expect(again.body).toEqual({ id: p.id, offset, closed: false })
    expect((await json(Quick, `/v1/processes/${p.id}?signal=KILL`, { method: "DELETE" })).status).toBe(200)
    expect((await waitExit(Quick, p.id)).body.signal).toBe(9)
    expect((await writeStdin(Quick, p.id, offset, big.subarray(offset))).body).toEqual({
      id: p.id,
      offset,
      closed: true
    })
  })

  it("a writer blocked on a command that never reads ends when the command is killed", async () => {
    // The default bound is 20 s: the answer must come from the kill, not from the bound.
    const p = await startProcess(S, { cmd: ["sleep", "60"], stdin_pipe: true })
    const writing = writeStdin(S, p.id, 0, new Uint8Array(8 * 1024 * 1024))
    await json(S, `/v1/processes/${p.id}/wait?timeout=0.3`, { method: "POST" })
    expect((await json(S, `/v1/processes/${p.id}?signal=KILL`, { method: "DELETE" })).status).toBe(200)
    const answer = await writing
    expect(answer.status).toBe(200)
    expect(answer.body.closed).toBe(true)
  })

  it("a reader that goes away closes the pipe (EPIPE): the writer is told closed, not an error", async () => {
    const p = await startProcess(S, { cmd: ["head", "-c", "10"], stdin_pipe: true })
    const answer = await writeStdin(S, p.id, 0, new Uint8Array(8 * 1024 * 1024).fill(97))
    expect(answer.status).toBe(200)
    expect(answer.body.closed).toBe(true)
    expect((await waitExit(S, p.id)).body.exit_code).toBe(0)
    expect(await stdout(S, p.id)).toBe("a".repeat(10))
  })

  it("a command that ended while something it started still holds its stdin: writes answer closed", async () => {
    const p = await startProcess(S, { cmd: "sleep 60 </dev/stdin >/dev/null 2>&1 & echo $!", stdin_pipe: true })
    expect((await waitExit(S, p.id)).body.exit_code).toBe(0)
    const child = Number((await stdout(S, p.id)).trim())
    seenPids.add(child)
    expect((await writeStdin(S, p.id, 0, new Uint8Array(8 * 1024 * 1024))).body).toMatchObject({ closed: true })
    process.kill(child, "SIGKILL")
  })
})
