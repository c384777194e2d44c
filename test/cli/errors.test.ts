/**
 * The CLI's words for the library's errors, built from the errors' fields: flags for options, commands
 * for library calls. The library's own prose may change without changing them.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Errors from "../../src/cli/errors.js"
import { HubError, InvalidArgumentError, PoolError, PortError, SshError, StartError } from "../../src/SandboxError.js"

const ID = "687fb701029421ae5549d998"

describe("the CLI's words for library errors", () => {
  it("a taken name: the holder's id and the commands that use or stop it, whatever the library's detail says", () => {
    const taken = new StartError({
      provider: "hf-jobs",
      reason: "NameTaken",
      detail: "a wording the CLI does not read",
      holder: { id: ID, name: "web" }
    })
    const started = Errors.describe(taken, true)
    assert.strictEqual(started.tag, "StartError")
    assert.strictEqual(
      started.message,
      `Sandbox did not start on the hf-jobs provider (NameTaken): sandbox ${ID} is already named "web": ` +
        `use it by its id ${ID}, stop it with \`hf-sandbox kill ${ID}\`, or choose another name`
    )
    assert.notInclude(Errors.describe(taken, false).message, "did not start")
  })

  it("an invalid option by its flag and its problem; one without a flag as the library says it", () => {
    const invalid = (option: string) =>
      new StartError({
        provider: "local",
        reason: "InvalidOptions",
        detail: "a wording the CLI does not read",
        invalid: { option, problem: '"x" is not right' }
      })
    assert.strictEqual(
      Errors.describe(invalid("maxCost"), true).message,
      'Sandbox did not start on the local provider (InvalidOptions): invalid --max-cost: "x" is not right'
    )
    assert.strictEqual(
      Errors.describe(invalid("idleTimeout"), false).message,
      'invalid --idle-timeout: "x" is not right'
    )
    assert.strictEqual(Errors.describe(invalid("schedules.logStall"), false).message, "a wording the CLI does not read")
    // An element of an option by its flag and which one: the second --volume, a variable of --env.
    assert.strictEqual(Errors.describe(invalid("volumes[1]"), false).message, 'invalid --volume #2: "x" is not right')
    assert.strictEqual(Errors.describe(invalid("env.A_B"), false).message, 'invalid --env A_B: "x" is not right')
    // Said for the command typed, never as the library's call.
    const argument = new InvalidArgumentError({
      operation: "execStream",
      argument: "env",
      detail: '"A B" is not a name'
    })
    assert.strictEqual(Errors.describe(argument, false, ["run"]).message, 'run: invalid --env: "A B" is not a name')
    const links = new InvalidArgumentError({
      operation: "files.uploadDir",
      argument: "links",
      detail: '"x" is not one'
    })
    assert.strictEqual(Errors.describe(links, false, ["cp"]).message, 'cp: invalid --links: "x" is not one')
    // One no flag sets (the CLI gives it itself) is said as the library says it.
    const other = new InvalidArgumentError({ operation: "execStream", argument: "bufferBytes", detail: "0 is too few" })
    assert.strictEqual(Errors.describe(other, false, ["spawn"]).message, other.message)
    assert.strictEqual(other.message, "execStream: invalid bufferBytes: 0 is too few")
  })

  it("a pool's refused option by its flag; one without a flag as the library says it", () => {
    const refused = (option: string) =>
      new PoolError({ pool: "cli", reason: "InvalidOptions", option, detail: "0 must be a whole number, at least 1" })
    assert.strictEqual(
      Errors.describe(refused("maxHosts"), true, ["pool", "up"]).message,
      "Sandbox pool cli (InvalidOptions): invalid --max-hosts: 0 must be a whole number, at least 1"
    )
    assert.include(Errors.describe(refused("sandboxesPerHost"), true).message, "invalid --per-host: 0 must")
    const other = refused("acquireTimeout")
    assert.strictEqual(Errors.describe(other, true).message, other.message)
  })

  it("ports and SSH: the flags and commands that give them, never a library call", () => {
    const notDeclared = Errors.describe(
      new PortError({ port: 8000, reason: "NotDeclared", detail: "not declared" }),
      false
    )
    assert.strictEqual(notDeclared.tag, "PortError")
    assert.include(notDeclared.message, "Create the sandbox with --port 8000, or expose it with --via server")
    const tunnel = Errors.describe(new PortError({ port: 8000, reason: "TunnelFailed", detail: "no URL" }), false)
    assert.include(tunnel.message, "or expose it with --via server.")
    const ssh = Errors.describe(new SshError({ id: ID, provider: "hf-jobs", reason: "NotEnabled" }), false)
    assert.include(ssh.message, "`hf-sandbox create --ssh`")
    for (const { message } of [notDeclared, tunnel, ssh]) {
      assert.notMatch(message, /ports: \[|\{ via|Sandbox\.make/)
    }
  })

  it("a missing token: HF_TOKEN, not a layer", () => {
    const none = new StartError({
      provider: "hf-jobs",
      reason: "NoToken",
      detail: 'no Hugging Face token found: pass HfJobs.layer({ token: Redacted.make("hf_...") })'
    })
    const { message } = Errors.describe(none, false)
    assert.include(message, "HF_TOKEN=hf_...")
    assert.notInclude(message, "HfJobs.layer")
  })

  it("the Hub's advice: HF_ENDPOINT, HF_TOKEN and `hf auth login`, no option of a layer", () => {
    const unreachable = new HubError({
      operation: "whoami",
      detail: "fetch failed",
      unreachable: { endpoint: "http://127.0.0.1:9", cause: "connect ECONNREFUSED 127.0.0.1:9" }
    })
    const network = "Check the network, and HF_ENDPOINT if you set one."
    const said = Errors.describe(unreachable, false)
    assert.strictEqual(said.tag, "HubError")
    assert.include(said.message, network)
    // Quoted in a start's failure, as `create` and `ls` meet it.
    const started = Errors.describe(StartError.fromHubError(unreachable), true)
    assert.include(started.message, network)
    const listed = Errors.describe(StartError.fromHubError(unreachable), false)
    assert.include(listed.message, network)
    const refused = Errors.describe(new HubError({ operation: "whoami", status: 401, detail: "Unauthorized" }), false)
    assert.include(refused.message, "Check your Hugging Face token (`hf auth login`, or HF_TOKEN in the environment).")
    for (const { message } of [said, started, listed, refused]) assert.notMatch(message, /option|HfJobs\.layer/)
  })
})
