/**
 * The CLI laid out as the package installs it: `dist/cli/hf-sandbox.mjs` (the bin) and the bundle it runs,
 * built by scripts/build-cli.ts as `npm run build` does, beside a link to `rpc-server/`, under `work/pkg`.
 * The CLI tests and `bench/stdin.ts` run this binary end to end.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { buildCli } from "../../scripts/build-cli.js"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Bundles the CLI under `work` and returns the path of its entry point. */
export const bundleCli = async (work: string): Promise<string> => {
  const bin = await buildCli(path.join(work, "pkg", "dist", "cli"))
  fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  return bin
}

/**
 * The variable in which the run's main process hands its bundle of the CLI down to the workers and to a
 * vitest run inside the suite (test/support/runBundles.ts), as `HF_SANDBOX_TEST_LIB` hands down the tree.
 */
export const CLI_ENV = "HF_SANDBOX_TEST_CLI"

/**
 * Bundles the CLI into a new scratch directory of the run (test/support/library.ts), removed with the run.
 * library.ts is loaded only here: loading it makes a run's compiled tree, which a bench using `bundleCli`
 * (bench/stdin.ts) would leave behind at the package root.
 */
export const bundleRunCli = async (name: string): Promise<string> => {
  const { runScratchPrefix } = await import("./library.js")
  return bundleCli(fs.mkdtempSync(path.join(os.tmpdir(), `${runScratchPrefix}${name}-`)))
}

let shared: Promise<string> | undefined

/**
 * The CLI bundled once per run, for every test file that runs it without changing it: the bundle the
 * run's main process made when one of its files needs it (`CLI_ENV`), or else, when a worker's file finds
 * none, one made by this process for every later file of the worker (files share their worker,
 * `isolate: false`, and this module stays loaded across them). Either lies in one of the run's scratch
 * directories, removed with the run; a file that changes the bundle or what lies beside it bundles its own
 * copy with `bundleCli`.
 */
export const sharedCli = async (): Promise<string> => {
  const run = process.env[CLI_ENV]
  if (run !== undefined && fs.existsSync(run)) return run
  // In watch mode a worker outlives its run's scratch: a bundle gone with it is made again.
  if (shared !== undefined && !fs.existsSync(await shared.catch(() => ""))) shared = undefined
  if (shared === undefined) {
    shared = bundleRunCli(`cli-${process.pid}`)
    // A failed build is not kept: the next file tries again, and fails with its own error.
    shared.catch(() => {
      shared = undefined
    })
  }
  return shared
}
