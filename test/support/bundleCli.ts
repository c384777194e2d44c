/**
 * The CLI laid out as the package installs it: one bundled `dist/cli/main.mjs` beside a link to
 * `rpc-server/`, under `work/pkg`. The CLI tests and `bench/stdin.ts` run this binary end to end.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Bundles the CLI under `work` and returns the path of its entry point. */
export const bundleCli = async (work: string): Promise<string> => {
  const bin = path.join(work, "pkg", "dist", "cli", "main.mjs")
  await build({
    entryPoints: [path.join(root, "src/cli/main.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: bin,
    logLevel: "warning",
    // Bundled CommonJS dependencies still call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  return bin
}
