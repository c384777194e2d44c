/**
 * The complete programs (```ts run) and test files (```ts test) of README.md and docs/, run as a reader
 * runs them: the programs with tsx, the test files with vitest. Beside test/docs.test.ts (the static
 * checks: one TypeScript program of every block, links, commands), so that the two run side by side.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "vitest"
import { type Block, rel, root, tsBlocks, where } from "./support/docBlocks.js"

describe("docs", () => {
  /**
   * A child's exit status and output. Asynchronous on purpose: a worker blocked in `spawnSync` for a minute
   * cannot answer vitest's own RPC, which a loaded machine turned into a "Timeout calling onTaskUpdate".
   */
  const run = (
    command: string,
    args: ReadonlyArray<string>,
    options: { cwd: string; timeout: number; env?: NodeJS.ProcessEnv }
  ) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        command,
        args,
        { ...options, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          const status = error === null ? 0 : typeof error.code === "number" ? error.code : null
          resolve({ status, stdout, stderr })
        }
      )
    })

  // Complete programs on the local provider, run as a reader would run them; test files, with vitest.
  const scratch = path.join(root, ".vitest", `docs-run-${process.pid}`)
  const nameOf = (b: Block) => `${b.file.replace(/[^\w]+/g, "_")}_L${b.line}`
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))

  // The programs and the test files run as child processes, side by side: each waits mostly on its own
  // start-up and on sandboxes, and they share nothing (each has its own file in the scratch directory).
  for (const block of tsBlocks.filter((b) => b.flags.includes("run"))) {
    it.concurrent(`${where(block)} runs`, async () => {
      fs.mkdirSync(scratch, { recursive: true })
      const file = path.join(scratch, `${nameOf(block)}.ts`)
      fs.writeFileSync(file, block.code)
      // Bounds for a loaded machine, not for the programs: each needs seconds of CPU (tsx loads the
      // library module by module), and under a load of 15–20 two of them once took over 50 s.
      const result = await run(path.join(root, "node_modules", ".bin", "tsx"), [file], {
        cwd: root,
        timeout: 110_000
      })
      assert.strictEqual(result.status, 0, `${where(block)} exited ${result.status}:\n${result.stdout}${result.stderr}`)
    }, 120_000)
  }

  const testBlocks = tsBlocks.filter((b) => b.flags.includes("test"))
  if (testBlocks.length > 0) {
    it.concurrent(`the test files of ${[...new Set(testBlocks.map((b) => b.file))].join(", ")} pass`, async () => {
      fs.mkdirSync(scratch, { recursive: true })
      for (const block of testBlocks) fs.writeFileSync(path.join(scratch, `${nameOf(block)}.test.ts`), block.code)
      // The project's config (aliases, timeouts), limited to these files.
      const config = path.join(scratch, "vitest.config.ts")
      fs.writeFileSync(
        config,
        'import base from "../../vitest.config.ts"\n' +
          `export default { ...base, test: { ...base.test, include: [${JSON.stringify(`${rel(scratch)}/*.test.ts`)}], reporters: ["default"] } }\n`
      )
      const result = await run(path.join(root, "node_modules", ".bin", "vitest"), ["run", "--config", config], {
        cwd: root,
        timeout: 110_000,
        env: { ...process.env, NO_COLOR: "1" }
      })
      assert.strictEqual(result.status, 0, `vitest exited ${result.status}:\n${result.stdout}${result.stderr}`)
      assert.include(result.stdout, `Test Files  ${testBlocks.length} passed`)
    }, 120_000)
  }
})
