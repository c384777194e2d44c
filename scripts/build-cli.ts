/**
 * Builds the `hf-sandbox` executable (the package's bin, run by `npm run build` after tsc): the whole CLI
 * as one CommonJS bundle, `hf-sandbox.cjs`, and its starter `hf-sandbox.mjs` (src/cli/start.ts), which
 * runs the bundle through a V8 code cache. One file instead of the ~400 modules of dist/ (and of effect,
 * @effect/cli, undici...) makes the start about three times cheaper; the code cache takes a third off the
 * rest. The CLI tests and bench/stdin.ts run this same build (test/support/bundleCli.ts).
 *
 *   npx tsx scripts/build-cli.ts [OUT_DIR]     (dist/cli by default)
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

const root = fileURLToPath(new URL("..", import.meta.url))

/** Builds `hf-sandbox.cjs` and `hf-sandbox.mjs` into `outDir`; returns the path of the executable. */
export const buildCli = async (outDir: string): Promise<string> => {
  // ASCII code (non-ASCII in strings escaped): the starter reads the bundle as latin1, the cheapest decoding.
  const common = { bundle: true, platform: "node", target: "node20", charset: "ascii", logLevel: "warning" } as const
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
  const bin = path.join(outDir, "hf-sandbox.mjs")
  await build({ ...common, entryPoints: [path.join(root, "src/cli/start.ts")], format: "esm", outfile: bin })
  return bin
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
