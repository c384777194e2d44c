/**
 * Child programs of the tests (test/support/*-child.ts and the like) bundled with esbuild and run with
 * plain `node`, as a user runs a built program. Loading the library through tsx costs each child seconds
 * of CPU (hundreds of modules transformed and resolved one by one); a bundle is one file. The layout is
 * the package's (`pkg/dist/programs/<name>.mjs`, two levels below a link to `rpc-server/`, as
 * `dist/internal/` is), so the library finds the server script exactly as installed.
 *
 * The run's main process bundles every program its files name, in one build (test/support/runBundles.ts);
 * a file whose programs are not all among them has its own bundled.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"
import { runScratchPrefix } from "./library.js"

const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * The variable in which the run's main process hands the directory of its bundled programs down to the
 * workers and to a vitest run inside the suite (test/support/runBundles.ts).
 */
export const PROGRAMS_ENV = "HF_SANDBOX_TEST_PROGRAMS"

export interface Bundle {
  /** The bundled file of each entry (a path relative to the repository's root, as given). */
  readonly paths: Record<string, string>
  /** Removes the bundles made for this call (the run's own are removed with the run). */
  readonly remove: () => void
}

const nameOf = (entry: string) => path.basename(entry, ".ts")

/**
 * Bundles the entries (relative to the repository's root) into `work/pkg/dist/programs`; returns that
 * directory. One build: the modules the programs share are parsed once and emitted once, as chunks.
 */
export const bundleInto = async (work: string, entries: ReadonlyArray<string>): Promise<string> => {
  const dist = path.join(work, "pkg", "dist", "programs")
  await build({
    entryPoints: entries.map((entry) => ({ in: path.join(root, entry), out: nameOf(entry) })),
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
    // Bundled CommonJS dependencies still call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  if (!fs.existsSync(path.join(work, "pkg", "rpc-server"))) {
    fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  }
  return dist
}

/** Bundles the entries into a new scratch directory of the run, removed with the run; returns their directory. */
export const bundleRunPrograms = (entries: ReadonlyArray<string>): Promise<string> =>
  bundleInto(fs.mkdtempSync(path.join(os.tmpdir(), `${runScratchPrefix}programs-`)), entries)

/** Each entry (relative to the repository's root) bundled: the run's bundle, or one made now. */
export const bundlePrograms = async (entries: ReadonlyArray<string>): Promise<Bundle> => {
  const run = process.env[PROGRAMS_ENV]
  const inRun = (dir: string) => Object.fromEntries(entries.map((e) => [e, path.join(dir, `${nameOf(e)}.mjs`)]))
  if (run !== undefined) {
    const paths = inRun(run)
    if (Object.values(paths).every((file) => fs.existsSync(file))) return { paths, remove: () => {} }
  }
  // Among the run's scratch directories too: a worker ended with SIGTERM never calls `remove`, and the
  // run's teardown removes what it left.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${runScratchPrefix}programs-${process.pid}-`))
  const paths = inRun(await bundleInto(work, entries))
  return { paths, remove: () => fs.rmSync(work, { recursive: true, force: true }) }
}
