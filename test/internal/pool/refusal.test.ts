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
// rpc-server/sbx_server/host.py `setup`, as the local provider reports a server that exited with it.
const refused = new StartError({
  provider: "local",
  reason: "ServerExited",
  detail: "the sandbox server exited (exit code 2)",
  stderrTail:
    `server.py: error: host mode refused: ${WHY}. Run it as root on a kernel with Landlock (ABI >= 6), or accept ` +
    "weaker isolation with SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)"
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
