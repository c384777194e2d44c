/**
 * `hf-sandbox ssh` and the new `create`/`run` flags (`--ssh`, `--volume`, a `--flavor` list, `--max-cost`)
 * against the Hub emulator. `ssh` runs a stand-in `ssh` put first on PATH: a real process that records
 * its argv and whether an HF credential reached its environment.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { cli, createHf, emulator, expectCode, finish, hf, job, start, useCliHarness, work } from "../support/cli.js"
import { isAlive, until } from "../support/processes.js"

useCliHarness()

/** A directory holding a stand-in `ssh` that writes its argv (one per line) to `record`, its environment beside it. */
const standIn = (name: string) => {
  const dir = path.join(work, name)
  const record = path.join(dir, "record")
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(
    path.join(dir, "ssh"),
    `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "${record}"\nenv > "${record}.env"\nexit 7\n`,
    { mode: 0o755 }
  )
  return {
    dir,
    argv: () => fs.readFileSync(record, "utf8").split("\n").slice(0, -1),
    env: () => fs.readFileSync(`${record}.env`, "utf8")
  }
}

describe("hf-sandbox ssh (emulated Hub)", () => {
  const token = () => Redacted.value(emulator.token)

  it("create --ssh; ssh ID -- ARGS runs the system ssh on the job's target, exits with its code, no token given", async () => {
    const id = await createHf("--ssh", "--transport", "proxy")
    assert.deepStrictEqual(((await job(id)).spec as { ssh: unknown }).ssh, { enabled: true })
    const ssh = standIn("bin-ssh")
    const env = { PATH: `${ssh.dir}:${process.env.PATH}` }
    const result = await cli(["ssh", id, "--", "-L", "6006:localhost:6006"], { hf: true, env })
    expectCode(result, 7)
    assert.deepStrictEqual(ssh.argv(), [`${id}@ssh.hf.jobs`, "-L", "6006:localhost:6006"])
    // The CLI itself had HF_TOKEN: neither the variable nor its value reached ssh.
    assert.notMatch(ssh.env(), /^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN)=/m)
    assert.notInclude(ssh.env(), token())

    const dry = await cli(["ssh", "--dry-run", "-i", "/keys/id ed25519", id], { hf: true, env })
    expectCode(dry, 0)
    assert.strictEqual(dry.stdout, `ssh -i '/keys/id ed25519' ${id}@ssh.hf.jobs\n`)
    for (const r of [result, dry]) assert.notInclude(r.stdout + r.stderr, token())
    expectCode(await hf(["kill", id]), 0)
    await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
  })

  it("interrupted, it ends an ssh that ignores SIGTERM (SIGKILL after the grace) before it exits", async () => {
    const id = await createHf("--ssh", "--transport", "proxy")
    const dir = path.join(work, "bin-ssh-stubborn")
    const pidFile = path.join(dir, "pid")
    fs.mkdirSync(dir, { recursive: true })
    // SIGTERM stays ignored across exec: the pid written is the one that ignores it.
    fs.writeFileSync(path.join(dir, "ssh"), `#!/bin/sh\ntrap '' TERM\necho $$ > "${pidFile}"\nexec sleep 600\n`, {
      mode: 0o755
    })
    const child = start(["ssh", id], { hf: true, env: { PATH: `${dir}:${process.env.PATH}` } })
    const done = finish(child)
    // The CLI's exit, not the close of its pipes: an ssh left behind would hold them open.
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    await until(
      `a pid in ${pidFile}`,
      () => fs.existsSync(pidFile) && fs.readFileSync(pidFile, "utf8").endsWith("\n"),
      60_000
    )
    const pid = Number(fs.readFileSync(pidFile, "utf8"))
    try {
      child.kill("SIGINT")
      assert.strictEqual(await exited, 130)
      assert.isFalse(isAlive(pid), "ssh was ended before the CLI exited")
    } finally {
      if (isAlive(pid)) process.kill(pid, "SIGKILL")
    }
    await done
    expectCode(await hf(["kill", id]), 0)
    await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
  }, 120_000)

  it("a sandbox made without --ssh: the error says how to get SSH, and no ssh runs", async () => {
    const id = await createHf("--transport", "proxy")
    const ssh = standIn("bin-ssh-none")
    const result = await cli(["ssh", id], { hf: true, env: { PATH: `${ssh.dir}:${process.env.PATH}` } })
    assert.notStrictEqual(result.code, 0)
    assert.include(result.stderr, "create --ssh")
    assert.isFalse(fs.existsSync(path.join(ssh.dir, "record")))
    expectCode(await hf(["kill", id]), 0)
    await until(`job ${id} canceled`, async () => (await job(id)).stage === "CANCELED")
  })
})

describe("create and run: --volume, --flavor lists, --max-cost (emulated Hub)", () => {
  it("run sends -v volumes as the Jobs API takes them and a comma list of flavors in order", async () => {
    await Effect.runPromise(
      emulator.seedRepo({ repo: "org/ds", repoType: "dataset", files: { "train/x.csv": "x\n" }, tags: ["v1"] })
    )
    const result = await cli(
      [
        "run",
        "--json",
        "--transport",
        "proxy",
        "-v",
        "hf://datasets/org/ds@v1/train:/data",
        "--volume",
        "hf://buckets/org/out:/out",
        "--flavor",
        "t4-small,cpu-basic",
        "--max-cost",
        "$1",
        "--",
        "sh",
        "-c",
        'echo "$(cat "$HF_EMULATOR_VOLUMES/data/x.csv") mounted"'
      ],
      { hf: true }
    )
    expectCode(result, 0)
    assert.include(result.stdout, "x mounted")
    const id = (JSON.parse(result.stdout.split("\n")[0]!) as { id: string }).id
    const spec = (await job(id)).spec as { volumes: unknown; flavor: string; timeoutSeconds: number }
    assert.deepStrictEqual(spec.volumes, [
      { type: "dataset", source: "org/ds", mountPath: "/data", revision: "v1", path: "train" },
      { type: "bucket", source: "org/out", mountPath: "/out" }
    ])
    assert.strictEqual(spec.flavor, "t4-small")
  })

  it("a malformed --volume or --flavor is a usage error (exit 2) before anything starts", async () => {
    const badVolume = await hf(["create", "-v", "./data:/data"])
    expectCode(badVolume, 2)
    assert.include(badVolume.stderr, "a local directory is not mounted")
    const badFlavor = await hf(["create", "--flavor", "h200,,cpu-basic"])
    expectCode(badFlavor, 2)
    assert.include(badFlavor.stderr, "a flavor name is empty")
    const badCost = await hf(["create", "--max-cost", "lots"])
    expectCode(badCost, 1)
    assert.include(badCost.stderr, "--max-cost")
  })

  it("a refused option names its flag once: the --volume at fault, --flavor before --max-cost", async () => {
    const nested = await hf(["create", "-v", "hf://org/m:/data", "-v", "hf://buckets/org/b:/data/out"])
    expectCode(nested, 1)
    assert.include(
      nested.stderr,
      `invalid --volume #2: mount path "/data/out" is inside (or the same as) another volume's, "/data"`
    )
    // An unknown flavor beside one the cap cannot buy: the flavor's flag, never --max-cost.
    const flavor = await hf(["create", "--flavor", "a100-large,h9000", "--max-cost", "0.0001"])
    expectCode(flavor, 1)
    assert.include(flavor.stderr, `invalid --flavor: "h9000" is not in the Hub's hardware catalog`)
    assert.notInclude(flavor.stderr, "--max-cost")
    const cap = await hf(["create", "--flavor", "a100-large", "--max-cost", "0.0001", "--lifetime", "1h"])
    expectCode(cap, 1)
    assert.include(cap.stderr, "invalid --max-cost: $0.0001 does not cover lifetime 1h on a100-large")
    assert.notMatch(cap.stderr, /maxCost|--max-cost: maxCost/)
  })
})
