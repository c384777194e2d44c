/**
 * A pool host's refusal for want of isolation, in the pool's terms (internal/pool/refusal): the library
 * names the pool's `weakIsolation` option, the CLI its `--weak-isolation` flag, neither the server's own
 * switch. test/SandboxPool/weakIsolation.test.ts checks it end to end (a pool run by nobody).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Errors from "../../../src/cli/errors.js"
import * as Refusal from "../../../src/internal/pool/refusal.js"
import { StartError } from "../../../src/SandboxError.js"

const WHY =
  "not root: cannot give sandboxes their own uid (all would run as this server's user: they could signal each other and this server)"
const WORDS =
  `server.py: error: host mode refused: ${WHY}. Run it as root on a kernel with Landlock (ABI >= 6), or accept ` +
  "weaker isolation with SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)"
// rpc-server/sbx_server/host.py `setup`, as the local provider reports a server that exited with it: the
// refusal in words, then as data; a line the server printed before it.
const refused = new StartError({
  provider: "local",
  reason: "ServerExited",
  detail: "the sandbox server exited (exit code 2)",
  stderrTail: `hf-sandbox rpc-server: an earlier line\n${WORDS}\nSBX_REFUSAL ${JSON.stringify({ missing: [WHY], code: "isolation_missing" })}`,
  during: "boot a host"
})

describe("a pool host's isolation refusal", () => {
  it("is an InvalidOptions error about weakIsolation, naming the option and what the host misses", () => {
    const error = Refusal.inPoolTerms(refused)
    assert.strictEqual(error.reason, "InvalidOptions")
    assert.strictEqual(error.invalid?.option, "weakIsolation")
    assert.strictEqual(error.cause, refused)
    assert.include(error.message, `weakIsolation is not set, and the pool's host refused to start: ${WHY}.`)
    assert.include(error.message, "Pass `weakIsolation: true` to SandboxPool.layer to accept weaker isolation")
    assert.notInclude(error.message, "SBX_HOST_WEAK_ISOLATION")
    // Every other field kept: the provider, what was being done, the server's other lines.
    assert.strictEqual(error.provider, "local")
    assert.strictEqual(error.during, "boot a host")
    assert.strictEqual(error.stderrTail, "hf-sandbox rpc-server: an earlier line")
    assert.notInclude(error.message, "SBX_REFUSAL")
  })

  it("is known by the server's code, not its wording; with nothing else printed, no tail", () => {
    const data = `SBX_REFUSAL {"code":"isolation_missing","missing":["Landlock unavailable","reworded"]}`
    const reworded = Refusal.inPoolTerms(
      new StartError({
        provider: "hf-jobs",
        reason: "JobFailed",
        detail: "x",
        stderrTail: `the server says it another way\n${data}`
      })
    )
    assert.strictEqual(reworded.invalid?.option, "weakIsolation")
    assert.include(reworded.detail, "the pool's host refused to start: Landlock unavailable; reworded.")
    assert.isUndefined(reworded.stderrTail)
    // The wording alone, or another code, is not the refusal.
    const wordsOnly = new StartError({ provider: "local", reason: "ServerExited", detail: "x", stderrTail: WORDS })
    assert.strictEqual(Refusal.inPoolTerms(wordsOnly), wordsOnly)
    const other = new StartError({
      provider: "local",
      reason: "ServerExited",
      detail: "x",
      stderrTail: `SBX_REFUSAL {"code":"something_else","missing":["y"]}`
    })
    assert.strictEqual(Refusal.inPoolTerms(other), other)
  })

  it("is said by the CLI with its flag", () => {
    const message = Errors.describe(Refusal.inPoolTerms(refused), true).message
    assert.include(message, `invalid --weak-isolation: not given, and the pool's host refused to start: ${WHY}.`)
    assert.include(message, "Give it to accept weaker isolation")
    assert.notInclude(message, "weakIsolation")
    assert.notInclude(message, "SBX_HOST_WEAK_ISOLATION")
  })

  it("leaves any other start error as it is", () => {
    const other = new StartError({ provider: "local", reason: "ServerExited", detail: "x", stderrTail: "Traceback" })
    assert.strictEqual(Refusal.inPoolTerms(other), other)
    const none = new StartError({ provider: "hf-jobs", reason: "Timeout", detail: "y" })
    assert.strictEqual(Refusal.inPoolTerms(none), none)
  })
})
