/**
 * vitest's second global set-up: the bundles the run's test files would otherwise each make, made once by
 * the run's main process, before the workers start. The CLI (test/support/bundleCli.ts) when a file of
 * the run runs it; the child programs the files of the run name (test/support/bundleProgram.ts), in one
 * build. Before, each worker bundled the CLI for itself (~1.7 s of esbuild's CPU each, three a run) and
 * each file its programs (the six of the suite: ~7 s bundled file by file, ~2 s in one build that emits
 * what they share once, as chunks).
 *
 * They lie in the run's scratch directories (test/support/library.ts), removed with its compiled tree, and
 * are handed down in `HF_SANDBOX_TEST_CLI` and `HF_SANDBOX_TEST_PROGRAMS`: the workers, and a vitest run
 * inside the suite (docsRun.test.ts), use them. A file that finds no bundle for itself (it names its
 * programs otherwise than `wanted` reads them) bundles its own, as before.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { buildCli } from "../../scripts/build-cli.js"
import { bundleRunCli, CLI_ENV } from "./bundleCli.js"
import { bundleInto, bundleRunPrograms, PROGRAMS_ENV } from "./bundleProgram.js"
import { root } from "./library.js"

/** The part of vitest's `TestProject` the set-up uses (`vitest.state` is not a documented API). */
interface Project {
  readonly config: { readonly watch: boolean }
  readonly vitest?: { readonly state?: { readonly getPaths?: () => ReadonlyArray<string> } }
  onTestsRerun(handler: () => Promise<void> | void): void
}

/** What the test files want bundled: whether one runs the CLI, and the programs they name. */
const wanted = (files: ReadonlyArray<string>) => {
  let cli = false
  const programs = new Set<string>()
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8")
    if (/\bsupport\/(cli|bundleCli)\.js\b/.test(text)) cli = true
    if (!text.includes("support/bundleProgram.js")) continue
    // The programs are named by their path from the repository's root (`const CHILD = "test/support/x.ts"`).
    for (const [, entry] of text.matchAll(/["'](test\/support\/[\w.-]+\.ts)["']/g)) programs.add(entry!)
  }
  return { cli, programs: [...programs].sort() }
}

/**
 * Bundles what the run's files want (everything the suite may want when vitest does not say which files
 * run), unless a parent run handed its bundles down. In watch mode the bundles are made again, in place,
 * before each rerun.
 */
export const setup = async (project: Project): Promise<void> => {
  const files = project.vitest?.state?.getPaths?.()
  const want = wanted(files ?? allTestFiles())
  const [cli, programs] = await Promise.all([
    want.cli && process.env[CLI_ENV] === undefined ? bundleRunCli("cli") : undefined,
    want.programs.length > 0 && process.env[PROGRAMS_ENV] === undefined ? bundleRunPrograms(want.programs) : undefined
  ])
  if (cli !== undefined) process.env[CLI_ENV] = cli
  if (programs !== undefined) process.env[PROGRAMS_ENV] = programs
  if (project.config.watch && (cli !== undefined || programs !== undefined)) {
    // In place: a worker kept from the run before has the paths in its environment.
    project.onTestsRerun(async () => {
      await Promise.all([
        cli !== undefined ? buildCli(path.dirname(cli)) : undefined,
        programs !== undefined ? bundleInto(path.resolve(programs, "../../.."), want.programs) : undefined
      ])
    })
  }
}

/** The suite's test files (vitest.config.ts includes `test/**\/*.test.ts`). */
const allTestFiles = (): Array<string> =>
  fs
    .readdirSync(path.join(root, "test"), { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".test.ts"))
    .map((name) => path.join(root, "test", name))
