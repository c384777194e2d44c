/**
 * Child programs of the tests (test/support/*-child.ts and the like) bundled once per test file with
 * esbuild and run with plain `node`, as a user runs a built program. Loading the library through tsx
 * costs each child seconds of CPU (hundreds of modules transformed and resolved one by one); a bundle is
 * one file. The layout is the package's (`pkg/dist/programs/<name>.mjs`, two levels below a link to
 * `rpc-server/`, as `dist/internal/` is), so the library finds the server script exactly as installed.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface Bundle {
  /** The bundled file of each entry (a path relative to the repository's root, as given). */
  readonly paths: Record<string, string>
  /** Removes the bundles. */
  readonly remove: () => void
}

/** Bundles each entry (relative to the repository's root) into a temporary package directory. */
export const bundlePrograms = async (entries: ReadonlyArray<string>): Promise<Bundle> => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-programs-"))
  const dist = path.join(work, "pkg", "dist", "programs")
  const paths: Record<string, string> = {}
  for (const entry of entries) paths[entry] = path.join(dist, `${path.basename(entry, ".ts")}.mjs`)
  await build({
    entryPoints: entries.map((entry) => ({ in: path.join(root, entry), out: path.basename(entry, ".ts") })),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
    // Bundled CommonJS dependencies still call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  return { paths, remove: () => fs.rmSync(work, { recursive: true, force: true }) }
}
