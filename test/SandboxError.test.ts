/**
 * Every error of the library carries the module's `TypeId` (`isSandboxError`), and the `from…`
 * constructors convert a lower error as the call sites did by hand.
 */

import * as SandboxError from "hf-sandbox/SandboxError"
import { describe, expect, it } from "vitest"

describe("SandboxError", () => {
  it("isSandboxError holds for every member of the union, and for nothing else", () => {
    const errors = [
      new SandboxError.StartError({ provider: "local", reason: "NotReady", detail: "d" }),
      new SandboxError.HubError({ operation: "listJobs", detail: "d" }),
      new SandboxError.AuthError({ operation: "exec", status: 401 }),
      new SandboxError.FileNotFoundError({ path: "p", operation: "read" }),
      new SandboxError.IsDirectoryError({ path: "p", operation: "read", detail: "d" }),
      new SandboxError.FileExistsError({ path: "p", operation: "symlink", detail: "d" }),
      new SandboxError.BadRequestError({ operation: "exec", status: 400, detail: "d" }),
      new SandboxError.ServerError({ operation: "exec", status: 500, detail: "d" }),
      new SandboxError.ResourceLimitError({ operation: "exec", code: "too_many_processes", detail: "d" }),
      new SandboxError.LocalFileError({ path: "p", operation: "upload", detail: "d" }),
      new SandboxError.InvalidArgumentError({ operation: "exec", argument: "timeout", detail: "d" }),
      new SandboxError.ProcessNotFoundError({ id: "p-1", operation: "process" }),
      new SandboxError.CommandNotFoundError({ command: "c", detail: "d" }),
      new SandboxError.ConnectionLostError({ operation: "exec", detail: "d" }),
      new SandboxError.RequestTimeoutError({ operation: "exec", timeoutMs: 1 }),
      new SandboxError.TerminatedError({ sandboxId: "s", operation: "exec" }),
      new SandboxError.StdinError({ id: "p-1", reason: "Closed" }),
      new SandboxError.PortError({ port: 8000, reason: "NotListening", detail: "d" }),
      new SandboxError.OutputWaitError({ id: "p-1", pattern: "/x/", reason: "Timeout", detail: "d", tail: "" }),
      new SandboxError.SshError({ id: "s", provider: "local", reason: "NotSupported" }),
      new SandboxError.HubTransferError({
        operation: "files.fromHub",
        repo: "model a/b",
        reason: "NotFound",
        detail: "d"
      }),
      new SandboxError.PoolError({ pool: "default", reason: "AcquireTimeout", detail: "d" })
    ]
    expect(errors.map((e) => e._tag).sort()).toEqual(SandboxError.SandboxError.members.map((m) => m._tag).sort())
    for (const error of errors) expect(SandboxError.isSandboxError(error), error._tag).toBe(true)
    for (const other of [new Error("x"), { _tag: "StartError" }, "StartError", null, undefined]) {
      expect(SandboxError.isSandboxError(other)).toBe(false)
    }
  })

  it("StartError.fromHubError: HubUnreachable when the Hub was not reached, else HubRejected", () => {
    const rejected = new SandboxError.HubError({ operation: "createJob", status: 403, detail: "no" })
    const fromRejected = SandboxError.StartError.fromHubError(rejected)
    expect(fromRejected).toMatchObject({ provider: "hf-jobs", reason: "HubRejected", detail: rejected.message })
    expect(fromRejected.cause).toBe(rejected)
    const unreachable = new SandboxError.HubError({
      operation: "whoami",
      detail: "d",
      unreachable: { endpoint: "http://127.0.0.1:9", cause: "connect ECONNREFUSED 127.0.0.1:9" }
    })
    expect(SandboxError.StartError.fromHubError(unreachable).reason).toBe("HubUnreachable")
  })

  it("a Hub error's advice names the Effect API's options by their layer, unless told another surface", () => {
    const unknownToken = new SandboxError.HubError({ operation: "whoami", status: 401, detail: "Unauthorized" })
    expect(unknownToken.message).toContain(
      "Check your Hugging Face token (`hf auth login`, HF_TOKEN, or the `token` option of HfJobs.layer)."
    )
    const transfer = new SandboxError.HubTransferError({
      operation: "files.fromHub",
      repo: "model a/b",
      reason: "Unauthorized",
      status: 401,
      detail: "HTTP 401"
    })
    expect(transfer.message).toContain(
      "Pass a token that can read (or write) this repo: the call's `token` option, or the provider's (the `token` option of HfJobs.layer; locally HF_TOKEN or `hf auth login`)."
    )
    // The surfaces' words (the CLI's and the facade's tests check them as their users see them).
    expect(new SandboxError.HubError({ ...unknownToken, surface: "cli" }).message).toContain(
      "Check your Hugging Face token (`hf auth login`, or HF_TOKEN in the environment)."
    )
    expect(new SandboxError.HubTransferError({ ...transfer, surface: "promise" }).message).toContain(
      "the call's `token` option, or the sandbox's (Sandbox.create({ token }) on HF Jobs; locally HF_TOKEN or `hf auth login`)."
    )
  })

  it("StartError.fromHealthCheck: Unauthorized for a refused token, else NotReady", () => {
    const auth = new SandboxError.AuthError({ operation: "health", status: 200 })
    expect(SandboxError.StartError.fromHealthCheck(auth, "local")).toMatchObject({
      provider: "local",
      reason: "Unauthorized",
      detail: auth.message
    })
    const timeout = new SandboxError.RequestTimeoutError({ operation: "health", timeoutMs: 5000 })
    expect(SandboxError.StartError.fromHealthCheck(timeout, "local").reason).toBe("NotReady")
  })

  it("ConnectionLostError.fromTransport keeps the transport's message and error", () => {
    const cause = new Error("socket hang up")
    const lost = SandboxError.ConnectionLostError.fromTransport("exec", cause)
    expect(lost.message).toBe(
      "Lost the connection to the sandbox during exec: socket hang up. The sandbox may have been terminated or its server may have crashed."
    )
    expect(lost.cause).toBe(cause)
  })
})
