/**
 * The CLI laid out as the package installs it: `dist/cli/hf-sandbox.mjs` (the bin) and the bundle it runs,
 * built by scripts/build-cli.ts as `npm run build` does, beside a link to `rpc-server/`, under `work/pkg`.
 * The CLI tests and `bench/stdin.ts` run this binary end to end.
 */
import * as fs from "node:fs"
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
