/**
 * What the HF Jobs suites (test/hf-jobs*.test.ts) share: reading the emulator's record of a job, waiting
 * for a release to end it, the tunnel URLs a job announced, and jobs made behind the client's back.
 */
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type * as net from "node:net"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Testing from "hf-sandbox/testing"
import { assertGone, eventually } from "./local.js"

export const emulator = Testing.HubEmulatorService

/** Back to no faults: the suites share one emulator per file, and each test sets the faults it needs. */
export const resetFaults = Effect.map(emulator, (emu) => {
  Object.assign(emu.faults, Testing.noFaults())
})

/** The job of a sandbox, as the emulator records it. */
export const jobOf = (id: string) =>
  Effect.flatMap(emulator, (emu) => emu.job(id)).pipe(
    Effect.flatMap((job) => (job ? Effect.succeed(job) : Effect.die(new Error(`no job ${id}`))))
  )

/**
 * The job ended because the client released it: its server was asked to shut down (so the job may have
 * COMPLETED before the cancel arrived) and the job was cancelled.
 */
export const assertCancelled = (id: string) =>
  eventually(
    Effect.flatMap(jobOf(id), (job) =>
      (job.stage === "CANCELED" || job.stage === "COMPLETED") && job.cancelRequests >= 1
        ? Effect.succeed(job)
        : Effect.fail(new Error(`job ${id} is ${job.stage} after ${job.cancelRequests} cancel requests`))
    )
  ).pipe(Effect.tap((job) => (job.pid === undefined ? Effect.void : assertGone([job.pid]))))

/** The tunnel URLs a job's log announced, oldest first. */
export const markersOf = (job: Testing.JobRecord) =>
  job.logs.flatMap((line) => {
    const match = /^HF_SANDBOX_TUNNEL (\{.*\})$/.exec(line)
    return match === null ? [] : [(JSON.parse(match[1]!) as { url: string }).url]
  })

export const hostOf = (url: string) => new URL(url).hostname

/** The test's HttpClient, recording the host of every tunnel request it sends. */
export const recordingClient = Effect.map(HttpClient.HttpClient, (http) => {
  const hosts: Array<string> = []
  const client = HttpClient.tapRequest(http, (request) =>
    Effect.sync(() => {
      const host = hostOf(request.url)
      if (host.endsWith(".trycloudflare.com")) hosts.push(host)
    })
  )
  return { client, hosts }
})

/** A job that carries the sandbox labels (and so is listed as one) without running a server: cheap in bulk. */
export const labelledJob = (extra: Record<string, string> = {}) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.promise(() =>
      fetch(`${emu.url}/api/jobs/${emu.user}`, {
        method: "POST",
        headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
        body: JSON.stringify({
          dockerImage: "python:3.12",
          command: ["sleep", "60"],
          flavor: "cpu-basic",
          labels: {
            "hf-sandbox": "1",
            "hf-sandbox-mode": "dedicated",
            "hf-sandbox-nonce": randomBytes(16).toString("hex"),
            ...extra
          }
        })
      }).then((r) => r.json() as Promise<{ id: string }>)
    )
  ).pipe(Effect.map((job) => job.id))

export const cancelRaw = (id: string) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.promise(() =>
      fetch(`${emu.url}/api/jobs/${emu.user}/${id}/cancel`, {
        method: "POST",
        headers: { authorization: `Bearer ${Redacted.value(emu.token)}` }
      }).then((r) => r.arrayBuffer())
    )
  )

/** A loopback HTTP server that records the requests it gets (a host the Hub must not send the token to). */
export const recordingServer = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ url: string; seen: Array<string | undefined>; server: http.Server }>((resolve) => {
        const seen: Array<string | undefined> = []
        const server = http.createServer((req, res) => {
          seen.push(req.headers.authorization)
          res.writeHead(200, { "content-type": "application/json" })
          res.end("[]")
        })
        server.listen(0, "127.0.0.1", () =>
          resolve({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen, server })
        )
      })
  ),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)
