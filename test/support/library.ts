/**
 * The library as the suites load it: `src/` compiled once per run, file by file (no bundle), into
 * `.vitest-lib-<pid>/` (the pid of vitest's main process), which Node imports natively.
 *
 * Why: every test file runs in a fresh worker and loads the library again. Through vitest's module
 * runner each of its ~300 modules is fetched from the main process and evaluated in a wrapper, about
 * 2 s of CPU per file on this 2-core machine, as much as a whole small file's tests. Node's own loader
 * does it in a fraction of that. The compiled tree mirrors `src/` exactly one level below the package
 * root, as `dist/` does, so paths the library finds from `import.meta.url` (the server's script) are
 * those of the installed package. One tree per run, because runs overlap: `docsRun.test.ts` starts a
 * vitest of its own inside the suite, and engineers run files side by side.
 *
 * `vitest.config.ts` maps `hf-sandbox`, `hf-sandbox/*` and any import of a file under `src/` to it, so
 * a test file and the library share one copy of every module (tagged errors stay `instanceof`-equal).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The package root. */
export const root: string = fileURLToPath(new URL("../..", import.meta.url))
/** The library's sources. */
export const srcDir: string = path.join(root, "src")
const PREFIX = ".vitest-lib-"
/** Where this run's compiled copy of `src/` lives (git-ignored). */
export const libDir: string = path.join(root, `${PREFIX}${process.pid}`)

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) return sources(file)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [file] : []
  })

/**
 * vitest's global set-up: compiles `src/` into this run's tree (esbuild, one output per source, source
 * maps inline so stack traces name the `.ts` lines), after removing the trees of runs that were killed
 * before their teardown. Returns the teardown, which removes this run's tree.
 */
export const setup = async (): Promise<() => void> => {
  const { build } = await import("esbuild")
  for (const name of fs.readdirSync(root)) {
    const pid = name.startsWith(PREFIX) ? Number(name.slice(PREFIX.length)) : Number.NaN
    if (Number.isInteger(pid) && !alive(pid)) fs.rmSync(path.join(root, name), { recursive: true, force: true })
  }
  await build({
    entryPoints: sources(srcDir),
    outbase: srcDir,
    outdir: libDir,
    bundle: false,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    logLevel: "warning"
  })
  return () => fs.rmSync(libDir, { recursive: true, force: true })
}

/**
 * Where an import that resolves to `file` under `src/` is found in the compiled tree, or undefined for
 * any other file.
 */
export const compiledPath = (file: string): string | undefined => {
  const relative = path.relative(srcDir, file)
  if (relative.startsWith("..") || path.isAbsolute(relative)) return undefined
  return path.join(libDir, relative.replace(/\.ts$/, ".js"))
}
