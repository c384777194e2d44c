/**
 * The job's bootstrap script, run by a real /bin/sh: it starts the server package it carries inline, and in an
 * image without Python (and no package manager to install it) it says so clearly and exits 127.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { command, type Options } from "../../src/internal/bootstrap.js"
import { serverScriptPath } from "../../src/internal/serverScript.js"
import { run } from "../support/run.js"

const serverFiles = fs
  .readdirSync(serverScriptPath)
  .filter((name) => name.endsWith(".py"))
  .sort()
  .map((name) => [name, fs.readFileSync(path.join(serverScriptPath, name), "utf8")] as const)

/**
 * The job's command, run as the job runtime runs it: `/bin/sh` with the script and the package's pieces.
 * Asynchronous: the worker stays free for vitest's own RPC, and the tests run side by side.
 */
const runCommand = (options: Options, spawnOptions: { readonly env: NodeJS.ProcessEnv; readonly timeout: number }) => {
  const [sh, ...args] = command(options)
  return run(sh!, args, spawnOptions)
}

/** Where `tool` is found on PATH, as `command -v` says for a program, or undefined. */
const which = (tool: string): string | undefined =>
  (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((dir) => dir !== "")
    .map((dir) => path.join(dir, tool))
    .find((file) => {
      try {
        fs.accessSync(file, fs.constants.X_OK)
        return fs.statSync(file).isFile()
      } catch {
        return false
      }
    })

describe("bootstrap script", () => {
  it.concurrent("fails with a clear message when the image has no Python and nothing can install it", async () => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-nopython-"))
    // Only what a minimal image has: a shell and the few tools the script uses, and no python.
    for (const tool of ["mkdir", "dirname"]) {
      const found = which(tool)
      if (found) fs.symlinkSync(found, path.join(bin, tool))
    }
    const run = await runCommand(
      { transport: "proxy", serverFiles, idleTimeoutSeconds: 5 },
      { env: { PATH: bin, TMPDIR: bin, SBX_PORT: "0", SBX_TOKEN: "x" }, timeout: 10_000 }
    )
    fs.rmSync(bin, { recursive: true, force: true })
    assert.strictEqual(run.status, 127)
    assert.include(run.stderr, "hf-sandbox: the image has no Python 3.8+; installing it")
    assert.include(run.stderr, "cannot start: the image has no Python 3.8+ and it could not be installed")
  })

  // The package grows past what one argument may carry (Linux's MAX_ARG_STRLEN, 128 KiB: the exec fails
  // with E2BIG): a module of incompressible text makes sure this one does.
  const large = [...serverFiles, ["zz_ballast.py", `# ${randomBytes(150 * 1024).toString("base64")}\n`] as const]
  it.concurrent("writes the server package it carries, however large, and execs it (the server's listening line comes out)", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-boot-"))
    const run = await runCommand(
      { transport: "proxy", serverFiles: large, idleTimeoutSeconds: 0.5 },
      { env: { PATH: process.env.PATH ?? "", TMPDIR: tmp, SBX_PORT: "0", SBX_TOKEN: "x".repeat(64) }, timeout: 20_000 }
    )
    const files = fs.readdirSync(path.join(tmp, "hf-sandbox"))
    const written = files.length === 1 ? fs.readdirSync(path.join(tmp, "hf-sandbox", files[0]!, "sbx_server")) : []
    fs.rmSync(tmp, { recursive: true, force: true })
    // The idle timeout ends the server by itself: exit 0, as a job that went idle.
    assert.strictEqual(run.status, 0, run.stderr)
    assert.match(run.stdout, /^\{"event":"listening","host":"0\.0\.0\.0","port":\d+,/)
    assert.strictEqual(files.length, 1)
    assert.match(files[0]!, /^server\.\d+$/)
    // Every module of the package, byte for byte (the payload is a deflated JSON map of them).
    assert.deepStrictEqual(
      written.filter((name) => name.endsWith(".py")).sort(),
      large.map(([name]) => name)
    )
  })
})
