/**
 * Builds the `hf-sandbox` executable (the package's bin, run by `npm run build` after tsc): the whole CLI
 * as one CommonJS bundle, `hf-sandbox.cjs`, and its starter `hf-sandbox.mjs` (src/cli/start.ts), which
 * runs the bundle through a V8 code cache. One file instead of the ~400 modules of dist/ (and of effect,
 * @effect/cli, undici...) makes the start about three times cheaper; the code cache takes a third off the
 * rest. The starter is built after the bundle, with the bundle's digest defined into it: the key of the
 * code cache, which a start would otherwise compute over ~3 MB each time. The CLI tests and bench/stdin.ts
 * run this same build (test/support/bundleCli.ts).
 *
 *   npx tsx scripts/build-cli.ts [OUT_DIR]     (dist/cli by default)
 */
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

const root = fileURLToPath(new URL("..", import.meta.url))

// ASCII code (non-ASCII in strings escaped): the starter reads the bundle as latin1, the cheapest decoding.
const common = { bundle: true, platform: "node", target: "node20", charset: "ascii", logLevel: "warning" } as const

/**
 * Builds the starter `hf-sandbox.mjs` for the bundle `hf-sandbox.cjs` in `outDir` as it is now, its
 * digest (the first 32 hex digits of its sha256: the code cache's key) defined into the starter as
 * `HF_SANDBOX_BUNDLE_DIGEST`. A bundle built again must get its starter built again; `buildCli` does both.
 * Returns the starter's path.
 */
export const buildStarter = async (outDir: string): Promise<string> => {
  const bytes = await readFile(path.join(outDir, "hf-sandbox.cjs"))
  const digest = createHash("sha256").update(bytes).digest("hex").slice(0, 32)
  const bin = path.join(outDir, "hf-sandbox.mjs")
  await build({
    ...common,
    entryPoints: [path.join(root, "src/cli/start.ts")],
    format: "esm",
    outfile: bin,
    define: { HF_SANDBOX_BUNDLE_DIGEST: JSON.stringify(digest) }
  })
  return bin
}

/** Builds `hf-sandbox.cjs` and `hf-sandbox.mjs` into `outDir`; returns the path of the executable. */
export const buildCli = async (outDir: string): Promise<string> => {
  await build({
    ...common,
    entryPoints: [path.join(root, "src/cli/main.ts")],
    format: "cjs",
    outfile: path.join(outDir, "hf-sandbox.cjs"),
    // The bundle is CommonJS (a script V8 can cache): `import.meta.url` (the server script's location) is
    // this file's URL, one directory deep under the package like the modules of dist/.
    define: { "import.meta.url": "__hfSandboxModuleUrl" },
    banner: { js: 'var __hfSandboxModuleUrl = require("node:url").pathToFileURL(__filename).href;' }
  })
  return buildStarter(outDir)
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = path.resolve(process.argv[2] ?? path.join(root, "dist", "cli"))
  buildCli(outDir).then(
    (bin) => console.log(`built ${path.relative(process.cwd(), bin)}`),
    (error) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
