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
import { isAlive } from "./processes.js"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Bundles the CLI under `work` and returns the path of its entry point. */
export const bundleCli = async (work: string): Promise<string> => {
  const bin = await buildCli(path.join(work, "pkg", "dist", "cli"))
  fs.symlinkSync(path.join(root, "rpc-server"), path.join(work, "pkg", "rpc-server"))
  return bin
}

const PREFIX = "hf-sandbox-cli-bundle-"

/**
 * Removes the bundles of processes that are gone. vitest ends its workers with SIGTERM, which skips
 * `exit` handlers: each worker's bundle is left behind, and swept by the next process that builds one.
 */
const sweep = (tmp: string) => {
  for (const name of fs.readdirSync(tmp)) {
    const pid = name.startsWith(PREFIX) ? Number.parseInt(name.slice(PREFIX.length), 10) : Number.NaN
    // A live process's (another run's worker) is its own.
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue
    try {
      fs.rmSync(path.join(tmp, name), { recursive: true, force: true })
    } catch {
      // Another user's, or being swept by another process at once: not ours to insist on.
    }
  }
}

let shared: Promise<string> | undefined

/**
 * The CLI bundled once per process, for every test file that runs it without changing it: files share
 * their worker (`isolate: false`), and this module stays loaded across them. Its directory is its own,
 * removed when the process exits (or, where a signal ends it, by the next one that builds a bundle); a
 * file that changes the bundle or what lies beside it bundles its own copy with `bundleCli`.
 */
export const sharedCli = (): Promise<string> => {
  if (shared === undefined) {
    const tmp = os.tmpdir()
    sweep(tmp)
    const work = fs.mkdtempSync(path.join(tmp, `${PREFIX}${process.pid}-`))
    process.once("exit", () => fs.rmSync(work, { recursive: true, force: true }))
    shared = bundleCli(work)
    // A failed build is not kept: the next file tries again, and fails with its own error.
    shared.catch(() => {
      shared = undefined
    })
  }
  return shared
}
