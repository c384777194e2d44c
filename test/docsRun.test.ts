/**
 * The complete programs (```ts run) and test files (```ts test) of README.md and docs/, run as a reader
 * runs them against the installed package: the programs as tsx runs them (their types stripped by
 * esbuild, then Node) with `hf-sandbox` the run's compiled tree (test/support/library.ts, laid out as
 * dist/ is), the test files with vitest. Beside test/docs.test.ts (the static
 * checks: one TypeScript program of every block, links, commands), so that the two run side by side.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "esbuild"
import { afterAll, assert, describe, it } from "vitest"
import { type Block, rel, root, tsBlocks, where } from "./support/docBlocks.js"
import { resolveImport } from "./support/library.js"
import { run } from "./support/run.js"

/**
 * A program made runnable with plain Node: its types stripped by esbuild, as tsx does, and its imports
 * left to Node, those of `hf-sandbox` and `hf-sandbox/*` pointed at the run's compiled tree. Under tsx
 * itself the library's modules went through tsx's loader one by one: ~2 s more CPU a program than Node
 * loading the same compiled files.
 */
const compileProgram = (source: string, outfile: string) =>
  build({
    entryPoints: [source],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
    plugins: [
      {
        name: "installed-package",
        setup: (b) => {
          // Nothing is bundled: every import but a relative one is the program's dependency, found by Node.
          b.onResolve({ filter: /^[^./]/ }, (args) => ({
            path: resolveImport(args.path, undefined) ?? args.path,
            external: true
          }))
        }
      }
    ]
  })

describe("docs", () => {
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
      const program = path.join(scratch, `${nameOf(block)}.mjs`)
      await compileProgram(file, program)
      // Bounds for a loaded machine, not for the programs: each needs seconds of CPU, and under a load of
      // 15–20 two of them once took over 50 s (under tsx).
      const result = await run(process.execPath, [program], {
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
      // The project's config (aliases, timeouts), limited to these files, in one fork: they run one after
      // another in it, sharing it as the suite's files share theirs. A fork each cost ~6 s more CPU (each
      // loads vitest, Effect and the library) for no shorter a run on a machine busy with the suite.
      const config = path.join(scratch, "vitest.config.ts")
      fs.writeFileSync(
        config,
        'import base from "../../vitest.config.ts"\n' +
          `export default { ...base, test: { ...base.test, include: [${JSON.stringify(`${rel(scratch)}/*.test.ts`)}], ` +
          'reporters: ["default"], ' +
          "poolOptions: { forks: { ...base.test.poolOptions.forks, minForks: 1, maxForks: 1 } } } }\n"
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
