/**
 * `hf-sandbox exec -i` and `run -i` stream this process's stdin into the command: the documented
 * `tar c DIR | hf-sandbox exec -i ID -- tar x` with a 34 MB tree, run as the real program (bundled as
 * the package lays it out, as in test/cli/local.test.ts) against a local sandbox.
 */
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { sharedCli } from "../support/bundleCli.js"

let work: string
let bin: string

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-cli-stdin-"))
  bin = await sharedCli()
})

afterAll(() => {
  if (work !== undefined) fs.rmSync(work, { recursive: true, force: true })
})

/** Runs a shell script in which `$HF_SANDBOX` is the CLI. */
const shell = (script: string) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", script], {
      cwd: work,
      env: {
        PATH: process.env.PATH,
        HOME: work,
        LANG: "C.UTF-8",
        HF_SANDBOX_STATE_DIR: path.join(work, "state"),
        HF_HUB_DISABLE_TELEMETRY: "1",
        HF_SANDBOX: `${process.execPath} ${bin}`
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (b: Buffer) => out.push(b))
    child.stderr.on("data", (b: Buffer) => err.push(b))
    child.once("error", reject)
    child.once("close", (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
    )
  })

describe("hf-sandbox exec -i / run -i", () => {
  it("tar c <34 MB tree> | hf-sandbox exec -i ID -- tar x: every file arrives intact", {
    timeout: 120_000
  }, async () => {
    const tree = path.join(work, "tree")
    const sums: Array<string> = []
    for (let d = 0; d < 4; d++) {
      fs.mkdirSync(path.join(tree, `d${d}`), { recursive: true })
      for (let f = 0; f < 10; f++) {
        const data = randomBytes(850_000) // random: a tar of it is as large as the files (34 MB)
        const name = `d${d}/f${f}.bin`
        fs.writeFileSync(path.join(tree, name), data)
        sums.push(`${createHash("sha256").update(data).digest("hex")}  ./${name}`)
      }
    }
    const created = await shell("$HF_SANDBOX --local create -q")
    expect(created.code, created.stderr).toBe(0)
    const id = created.stdout.trim()
    try {
      const untar = await shell(
        `tar c -C tree . | $HF_SANDBOX --local exec -i ${id} -- sh -c 'mkdir -p out && tar x -C out'`
      )
      expect(untar.code, untar.stderr).toBe(0)
      const listed = await shell(
        `$HF_SANDBOX --local exec ${id} -- sh -c 'cd out && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k 2'`
      )
      expect(listed.code, listed.stderr).toBe(0)
      expect(listed.stdout.trim().split("\n")).toEqual(
        [...sums].sort((a, b) => (a.split("  ")[1]! < b.split("  ")[1]! ? -1 : 1))
      )
    } finally {
      await shell(`$HF_SANDBOX --local kill ${id}`)
    }
  })

  it("run -i streams stdin into the command of the sandbox it creates", { timeout: 60_000 }, async () => {
    const result = await shell("head -c 3000000 /dev/zero | $HF_SANDBOX --local run -i -- wc -c")
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout.trim()).toBe("3000000")
  })
})
