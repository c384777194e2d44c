/**
 * The library as the suites load it: `src/` compiled once per run, file by file (no bundle), into a
 * fresh `.vitest-lib-XXXXXX/` at the package root, which Node imports natively.
 *
 * Why: every test file runs in a fresh worker and loads the library again. Through vitest's module
 * runner each of its ~300 modules is fetched from the main process and evaluated in a wrapper; natively
 * a file that imports `hf-sandbox` and `hf-sandbox/testing` costs 0.5–0.9 s less CPU on this 2-core
 * machine. The compiled tree mirrors `src/` exactly one level below the package root, as `dist/` does,
 * so paths the library finds from `import.meta.url` (the server's script) are those of the installed
 * package.
 *
 * One tree per run, named once by the run's main process (this module is evaluated twice there: in the
 * config and in the global set-up) and handed down in `HF_SANDBOX_TEST_LIB`: a vitest started inside the
 * suite (`docsRun.test.ts`) inherits it and reuses the tree instead of compiling its own. The run that
 * made it removes it at its end, also when vitest exits on Ctrl-C or SIGTERM (it then skips the
 * teardown); a tree left by a run killed outright is swept by a later run once its owner is gone.
 *
 * `vitest.config.ts` maps `hf-sandbox`, `hf-sandbox/*` and any import of a file under `src/` to it, so
 * a test file and the library share one copy of every module (tagged errors stay `instanceof`-equal).
 * In watch mode the tree is compiled again before each rerun, and a change under `src/` triggers one.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The package root. */
export const root: string = fileURLToPath(new URL("../..", import.meta.url))
/** The library's sources. */
export const srcDir: string = path.join(root, "src")

const PREFIX = ".vitest-lib-"
const ENV = "HF_SANDBOX_TEST_LIB"
const OWNER = "owner.json"
/** A tree whose owner cannot be checked (another machine's) is swept after this long. */
const STALE_MS = 24 * 60 * 60 * 1000

interface Owner {
  readonly host: string
  readonly pid: number
}

const inherited = process.env[ENV]
/** This run's compiled copy of `src/` (git-ignored): the parent run's, or a new one of this process. */
export const libDir: string = inherited ?? fs.mkdtempSync(path.join(root, PREFIX))
if (inherited === undefined) {
  process.env[ENV] = libDir
  const owner: Owner = { host: os.hostname(), pid: process.pid }
  fs.writeFileSync(path.join(libDir, OWNER), JSON.stringify(owner))
}

/**
 * The start of the names of this run's scratch directories outside the package (in the system's temp
 * directory, where nothing of the package's `node_modules` can be found by walking up), which the run's
 * teardown removes with its tree: vitest ends its workers with SIGTERM, which skips their `exit` handlers.
 */
const SCRATCH = "hf-sandbox-testrun-"
export const runScratchPrefix: string = `${SCRATCH}${path.basename(libDir)}-`

/**
 * Removes this run's scratch directories; with `run` undefined, those of runs killed outright: a day old
 * (a run of another checkout of the package keeps its tree elsewhere, so a missing tree proves nothing).
 */
const removeScratch = (run: string | undefined) => {
  for (const name of fs.readdirSync(os.tmpdir())) {
    const end = name.startsWith(SCRATCH + PREFIX) ? name.indexOf("-", SCRATCH.length + PREFIX.length) : -1
    const tree = end > 0 ? name.slice(SCRATCH.length, end) : undefined
    const dir = path.join(os.tmpdir(), name)
    if (tree === undefined || (run !== undefined ? tree !== run : !stale(dir))) continue
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const stale = (dir: string): boolean => {
  try {
    return Date.now() - fs.statSync(dir).mtimeMs > STALE_MS
  } catch {
    return false
  }
}

const ownedHere = (): boolean => {
  try {
    const owner = JSON.parse(fs.readFileSync(path.join(libDir, OWNER), "utf8")) as Owner
    return owner.host === os.hostname() && owner.pid === process.pid
  } catch {
    return false
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Whether the tree at `dir` belongs to no live run: its owner (on this host) is gone, or it is stale. */
const abandoned = (dir: string): boolean => {
  try {
    const owner = JSON.parse(fs.readFileSync(path.join(dir, OWNER), "utf8")) as Owner
    if (owner.host === os.hostname()) return !alive(owner.pid)
  } catch {
    // No owner file yet: a run that is creating it now, unless it is old.
  }
  return Date.now() - fs.statSync(dir).mtimeMs > STALE_MS
}

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) return sources(file)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [file] : []
  })

/** Compiles `src/` into the tree, emptied first so that a file deleted from `src/` cannot linger. */
const compile = async (): Promise<void> => {
  const { build } = await import("esbuild")
  for (const name of fs.readdirSync(libDir)) {
    if (name !== OWNER) fs.rmSync(path.join(libDir, name), { recursive: true, force: true })
  }
  await build({
    entryPoints: sources(srcDir),
    outbase: srcDir,
    outdir: libDir,
    bundle: false,
    platform: "node",
    format: "esm",
    target: "node20",
    // Inline, so stack traces name the lines of `src/` (the workers run with --enable-source-maps).
    sourcemap: "inline",
    logLevel: "warning"
  })
}

/** The part of vitest's `TestProject` the set-up uses. */
interface Project {
  readonly config: { readonly watch: boolean }
  onTestsRerun(handler: () => Promise<void> | void): void
}

/**
 * vitest's global set-up. The run that made the tree compiles it (and again before each rerun in watch
 * mode), sweeps the trees of runs killed outright, and removes its own at the end; a run inside the
 * suite only uses its parent's.
 */
export const setup = async (project: Project): Promise<() => void> => {
  if (!ownedHere()) return () => {}
  for (const name of fs.readdirSync(root)) {
    const dir = path.join(root, name)
    if (name.startsWith(PREFIX) && dir !== libDir && abandoned(dir)) fs.rmSync(dir, { recursive: true, force: true })
  }
  removeScratch(undefined)
  await compile()
  if (project.config.watch) project.onTestsRerun(compile)
  const remove = () => {
    removeScratch(path.basename(libDir))
    fs.rmSync(libDir, { recursive: true, force: true })
  }
  process.once("exit", remove)
  return remove
}

/**
 * Where an import that resolves to `file` under `src/` is found in the compiled tree, or undefined for
 * any other file.
 */
const compiledPath = (file: string): string | undefined => {
  const relative = path.relative(srcDir, file)
  if (relative.startsWith("..") || path.isAbsolute(relative)) return undefined
  return path.join(libDir, relative.replace(/\.ts$/, ".js"))
}

/**
 * The compiled file an import stands for: `hf-sandbox` and `hf-sandbox/*` as package.json's exports map
 * them (`testing` is `Testing`), or a relative import of a file under `src/`; undefined for any other.
 */
export const resolveImport = (source: string, importer: string | undefined): string | undefined => {
  if (source === "hf-sandbox") return path.join(libDir, "index.js")
  if (source.startsWith("hf-sandbox/")) {
    const name = source.slice("hf-sandbox/".length)
    return path.join(libDir, `${name === "testing" ? "Testing" : name}.js`)
  }
  if (importer === undefined || !source.startsWith(".")) return undefined
  return compiledPath(path.resolve(path.dirname(importer), source).replace(/\.js$/, ".ts"))
}

/** The compiled tree's files, which Node loads natively (vitest's `server.deps.external`). */
export const compiledFiles: RegExp = new RegExp(`^${libDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/`)
