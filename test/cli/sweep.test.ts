/**
 * `hf-sandbox kill` with filters (`--label`, `--older-than`, `--name`, `--dry-run`), on the local
 * provider and on HF Jobs through the Hub emulator: what it stops, what a dry run prints, and the usage
 * errors of a kill that names nothing or too much.
 */
import { randomBytes } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import * as Redacted from "effect/Redacted"
import { createHf, createLocal, emulator, expectCode, hf, job, local, stateOf, useCliHarness } from "../support/cli.js"
import { isAlive, until, waitGone } from "../support/processes.js"

useCliHarness()

describe("hf-sandbox create --name", () => {
  it("names a sandbox; a second create with the name fails naming the first; kill --name stops it", async () => {
    const name = `web-${randomBytes(4).toString("hex")}`
    const id = await createLocal("--name", name)
    const pid = stateOf(id).pid
    const again = await local(["create", "-q", "--name", name])
    assert.notStrictEqual(again.code, 0)
    assert.include(again.stderr, id)
    // Said the CLI's way: a command to run, not a library call.
    assert.include(again.stderr, `hf-sandbox kill ${id}`)
    assert.notInclude(again.stderr, "Sandbox.connect")
    const bad = await local(["create", "-q", "--name", "no/slash"])
    assert.notStrictEqual(bad.code, 0)
    assert.include(bad.stderr, "--name")
    const killed = await local(["kill", "--name", name])
    expectCode(killed, 0)
    assert.strictEqual(killed.stdout.trim(), id)
    assert.deepStrictEqual(await waitGone([pid]), [])
  })
})

describe("hf-sandbox kill with filters, local provider", () => {
  it("refuses a kill that names nothing, or ids with filters, with a usage error", async () => {
    const none = await local(["kill"])
    expectCode(none, 2)
    assert.include(none.stderr, "which sandboxes? give their ids, or --all, or filters")
    const both = await local(["kill", "local-0123456789ab", "--label", "a=b"])
    expectCode(both, 2)
    assert.include(both.stderr, "only one of them")
    const badAge = await local(["kill", "--older-than", "soon"])
    expectCode(badAge, 2)
    assert.include(badAge.stderr, 'invalid --older-than "soon"')
    const badName = await local(["kill", "--name", "no/slash"])
    expectCode(badName, 2)
    assert.include(badName.stderr, "is not a sandbox name")
  })

  it("--label selects, --dry-run prints without stopping, --older-than keeps young ones", async () => {
    const keep = await createLocal("--label", "sweep=keep")
    const drop = await createLocal("--label", "sweep=drop")
    const dry = await local(["kill", "--label", "sweep=drop", "--dry-run"])
    expectCode(dry, 0)
    assert.strictEqual(dry.stdout, `${drop}\n`)
    assert.include(dry.stderr, "Dry run: 1 local sandbox would be stopped.")
    assert.isTrue(isAlive(stateOf(drop).pid))
    const young = await local(["kill", "--label", "sweep=drop", "--older-than", "1h"])
    expectCode(young, 0)
    assert.strictEqual(young.stdout, "")
    assert.include(young.stderr, "No local sandboxes match.")
    const dropPid = stateOf(drop).pid
    const killed = await local(["kill", "--label", "sweep=drop"])
    expectCode(killed, 0)
    assert.strictEqual(killed.stdout, `${drop}\n`)
    assert.deepStrictEqual(await waitGone([dropPid]), [])
    assert.isTrue(isAlive(stateOf(keep).pid))
    const all = await local(["kill", "--older-than", "0s", "--json"])
    expectCode(all, 0)
    assert.deepStrictEqual(JSON.parse(all.stdout), { killed: [keep], failed: [] })
  })
})

describe("hf-sandbox kill with filters, HF Jobs", () => {
  it("--label and --name are asked of the Hub; --dry-run prints, then a kill cancels only those", async () => {
    const labelled = await createHf("--transport", "proxy", "--label", "team=ci")
    const other = await createHf("--transport", "proxy")
    const dry = await hf(["kill", "--label", "team=ci", "--dry-run", "--json"])
    expectCode(dry, 0)
    assert.deepStrictEqual(JSON.parse(dry.stdout), { wouldKill: [labelled] })
    assert.strictEqual((await job(labelled)).stage, "RUNNING")
    const killed = await hf(["kill", "-l", "team=ci", "-q"])
    expectCode(killed, 0)
    assert.strictEqual(killed.stdout, `${labelled}\n`)
    await until(`job ${labelled} canceled`, async () => (await job(labelled)).stage === "CANCELED")
    assert.strictEqual((await job(other)).stage, "RUNNING")

    // A named sandbox job (its label), made behind the CLI's back: found by --name alone.
    const named = await fetch(`${emulator.url}/api/jobs/${emulator.user}`, {
      method: "POST",
      headers: { authorization: `Bearer ${Redacted.value(emulator.token)}`, "content-type": "application/json" },
      body: JSON.stringify({
        dockerImage: "python:3.12",
        command: ["sleep", "60"],
        labels: {
          "hf-sandbox": "1",
          "hf-sandbox-mode": "dedicated",
          "hf-sandbox-nonce": randomBytes(16).toString("hex"),
          "hf-sandbox-name": "nightly"
        }
      })
    }).then((r) => r.json() as Promise<{ id: string }>)
    const byName = await hf(["kill", "--name", "nightly", "-q"])
    expectCode(byName, 0)
    assert.strictEqual(byName.stdout, `${named.id}\n`)
    expectCode(await hf(["kill", other]), 0)
    await until(`job ${named.id} canceled`, async () => (await job(named.id)).stage === "CANCELED")
  })
})
