/**
 * `hf-sandbox pool up|ls|down` and `create --pool` on the local provider: a pool's hosts outlive the
 * command, are found again by the pool's name, take sandboxes (`HOST.LOCAL` ids that every by-id command
 * reaches) and stop with `pool down`. The harness (test/support/cli.ts) checks that nothing is left.
 */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { expectCode, local, localPids, stateOf, useCliHarness } from "../support/cli.js"
import { isAlive, waitGone } from "../support/processes.js"

useCliHarness()

const asRoot = process.getuid?.() === 0

describe("hf-sandbox pool, local provider", () => {
  it("pool up starts hosts that outlive the command; create --pool, exec, kill HOST.LOCAL; pool down stops them", async () => {
    const weak = asRoot ? [] : ["--weak-isolation"]
    const up = await local(["pool", "up", "--name", "cli", "--hosts", "2", "--per-host", "3", ...weak])
    expectCode(up, 0)
    const hosts = up.stdout.trim().split("\n")
    assert.strictEqual(hosts.length, 2, up.stdout)
    for (const id of hosts) localPids.add(stateOf(id).pid)
    assert.include(up.stderr, "hf-sandbox create --pool cli")
    for (const id of hosts) assert.isTrue(isAlive(stateOf(id).pid), "a host outlives the command")

    const listed = await local(["pool", "ls", "cli", "-q"])
    expectCode(listed, 0)
    assert.sameMembers(listed.stdout.trim().split("\n"), hosts)
    const none = await local(["pool", "ls", "other", "-q"])
    expectCode(none, 0)
    assert.strictEqual(none.stdout, "")

    const made = await local(["create", "--pool", "cli", "-q", "--env", "GREETING=hi"])
    expectCode(made, 0)
    const id = made.stdout.trim()
    const [host, localId] = id.split(".")
    assert.include(hosts, host)
    assert.match(localId!, /^[0-9a-f]{16}$/)
    const ran = await local(["exec", id, "--", "sh", "-c", "echo $GREETING; pwd; id -u"])
    expectCode(ran, 0)
    const [greeting, home, uid] = ran.stdout.trim().split("\n")
    assert.strictEqual(greeting, "hi")
    assert.isTrue(home!.endsWith(`/homes/${localId}`), home)
    if (asRoot) assert.isAtLeast(Number(uid), 20000, "its own uid")
    assert.isTrue(fs.existsSync(home!))

    // top and logs by pooled id go through its host (the seam), as kill does.
    const top = await local(["top", "--count", "1", "--interval", "200ms", "--json", id])
    expectCode(top, 0)
    assert.isAbove((JSON.parse(top.stdout) as { memoryTotalBytes: number }).memoryTotalBytes, 0)
    const log = await local(["logs", id])
    expectCode(log, 0)
    assert.include(log.stdout, `created 1 sandbox(es): ${localId}`)
    for (const line of log.stdout.trim().split("\n")) assert.include(line, localId!, "only the lines about it")

    expectCode(await local(["kill", id]), 0)
    assert.isFalse(fs.existsSync(home!), "kill deletes the pooled sandbox's home")
    assert.include((await local(["logs", "--tail", "1", id])).stdout, `sandbox ${localId} deleted`)
    const gone = await local(["exec", id, "--", "true"])
    assert.notStrictEqual(gone.code, 0)
    assert.include(gone.stderr, "no longer exists on host")
    for (const h of hosts) assert.isTrue(isAlive(stateOf(h).pid), "its host keeps running")

    const pids = hosts.map((h) => stateOf(h).pid)
    const dry = await local(["pool", "down", "cli", "--dry-run"])
    expectCode(dry, 0)
    assert.sameMembers(dry.stdout.trim().split("\n"), hosts)
    const down = await local(["pool", "down", "cli"])
    expectCode(down, 0)
    assert.sameMembers(down.stdout.trim().split("\n"), hosts)
    assert.deepStrictEqual(await waitGone(pids), [])
  })

  it("create --pool refuses the flags its host decides, and a pool with no host, naming them", async () => {
    const flags = await local(["create", "--pool", "cli", "--flavor", "a10g-small", "--port", "8000"])
    expectCode(flags, 2)
    assert.include(flags.stderr, "--flavor, --port cannot be given with --pool")
    // Each refused flag is named as given (--timeout, not the --lifetime it aliases), from the one list.
    const more = await local(["create", "--pool", "cli", "--timeout", "5m", "--forward-hf-token", "--ssh", "-s", "X=1"])
    expectCode(more, 2)
    assert.include(more.stderr, "--timeout, --secret, --forward-hf-token, --ssh cannot be given with --pool")
    const none = await local(["create", "--pool", "nobody-here"])
    expectCode(none, 1)
    assert.include(none.stderr, 'pool "nobody-here" has no running host')
    // --port is read by the CLI itself (a repeated integer option of @effect/cli refuses every value).
    const port = await local(["create", "--port", "8000", "--port", "70000"])
    expectCode(port, 2)
    assert.include(port.stderr, '--port must be a port number from 1 to 65535, got "70000"')
  })

  it("a count the pool refuses is named by its flag (--per-host, --max-hosts, --hosts), not the pool's option", async () => {
    const bad = await local(["pool", "up", "--per-host", "0"])
    expectCode(bad, 1)
    assert.include(bad.stderr, "(InvalidOptions): invalid --per-host: 0 must be a whole number, at least 1")
    const none = await local(["pool", "up", "--max-hosts", "0"])
    expectCode(none, 1)
    assert.include(none.stderr, "(InvalidOptions): invalid --max-hosts: 0 must be a whole number, at least 1")
    const over = await local(["pool", "up", "--hosts", "3", "--max-hosts", "2"])
    expectCode(over, 1)
    assert.include(
      over.stderr,
      "(InvalidOptions): invalid --hosts: 3 is more than the pool's maximum of 2 hosts: lower it or raise the maximum"
    )
    for (const r of [bad, none, over]) assert.notMatch(r.stderr, /warmUp|maxHosts|sandboxesPerHost/)
  })

  it("an option the pool refuses is named by its flag, not by the pool's option name", async () => {
    const up = await local(["pool", "up", "--name", "no good"])
    expectCode(up, 1)
    assert.match(
      up.stderr,
      /^hf-sandbox: Sandbox pool no good \(InvalidOptions\): invalid --name: "no good" is not a sandbox name/
    )
  })
})
