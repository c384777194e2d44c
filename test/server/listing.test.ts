/**
 * The server's recursive listing against a tree that changes under it: a directory swapped for a
 * symlink between the `lstat` that saw it and the listing of its contents must never be followed. One
 * test makes the swap happen at exactly that moment (a `sitecustomize` hook in the server's own
 * interpreter runs it when the parent's `scandir` ends), the other races a real swapping process.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { withTimeout } from "../support/processes.js"
import { PYTHON, type Running, startServer, stopServer } from "../support/server.js"

const servers: Array<Running> = []
const children: Array<ChildProcess> = []
const dirs: Array<string> = []

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
  await Promise.all(servers.map(stopServer))
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
})

const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-listing-"))
  dirs.push(dir)
  return dir
}

interface Listing {
  readonly entries: ReadonlyArray<{ readonly name: string; readonly type: string }>
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly code: string }>
}

const listTree = async (server: Running, tree: string): Promise<Listing> => {
  const res = await fetch(`${server.base}/v1/files/list?path=${encodeURIComponent(tree)}&recursive=1`, {
    headers: { "X-Sandbox-Token": server.token }
  })
  expect(res.status).toBe(200)
  return (await res.json()) as Listing
}

/**
 * `tree/<name>` (a directory with one file) and `outside/secret`, which no listing of `tree` may show.
 * `filler` files in `tree/a` widen the window between the lstat of `tree/<name>` and its listing, which
 * comes after all of `a`'s.
 */
const makeTree = (name = "d", filler = 0) => {
  const dir = tempDir()
  const tree = path.join(dir, "tree")
  fs.mkdirSync(path.join(tree, name), { recursive: true })
  fs.writeFileSync(path.join(tree, name, "inner"), "in")
  fs.mkdirSync(path.join(tree, "a"))
  for (let i = 0; i < filler; i++) fs.writeFileSync(path.join(tree, "a", `f${i}`), "")
  fs.mkdirSync(path.join(dir, "outside"))
  fs.writeFileSync(path.join(dir, "outside", "secret"), "never listed")
  return { dir, tree, outside: path.join(dir, "outside") }
}

// Runs in the server's interpreter before the server: when a scandir of the tree's root ends (of its
// path or of a descriptor of it), `tree/d` becomes a symlink to `outside`, once.
const HOOK = `
import os
_real = os.scandir
_done = []
_root = os.environ["SWAP_ROOT"]

def _is_root(arg):
    try:
        st = os.fstat(arg) if isinstance(arg, int) else os.stat(arg)
        root = os.stat(_root)
    except (OSError, TypeError):
        return False
    return (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino)

class _Scan(object):
    def __init__(self, arg):
        self._arg = arg
        self._it = _real(arg)
    def __enter__(self):
        return self._it.__enter__()
    def __exit__(self, *exc):
        result = self._it.__exit__(*exc)
        if not _done and _is_root(self._arg):
            _done.append(True)
            d = os.path.join(_root, "d")
            os.rename(d, d + "-aside")
            os.symlink(os.environ["SWAP_TO"], d)
        return result
    def __iter__(self):
        return iter(self._it)

os.scandir = _Scan
`

describe("recursive listing of a tree that changes under it", () => {
  it("never follows a directory swapped for a symlink between its lstat and its listing", async () => {
    const { dir, tree, outside } = makeTree()
    const hook = path.join(dir, "hook")
    fs.mkdirSync(hook)
    fs.writeFileSync(path.join(hook, "sitecustomize.py"), HOOK)
    const server = await startServer({ env: { PYTHONPATH: hook, SWAP_ROOT: tree, SWAP_TO: outside } })
    servers.push(server)
    const listing = await listTree(server, tree)
    // The swap happened: `d` is a symlink now.
    expect(fs.lstatSync(path.join(tree, "d")).isSymbolicLink()).toBe(true)
    expect(listing.entries.map((e) => e.name)).not.toContain("d/secret")
    expect(listing.entries.find((e) => e.name === "d")).toMatchObject({ type: "dir" })
    // The listing says it is incomplete, so that a copy of it fails rather than passing for whole.
    expect(listing.skipped).toMatchObject([{ name: "d", code: "changed" }])
  })

  it("never follows one in 150 listings raced by a process that keeps swapping it", async () => {
    const { tree, outside } = makeTree("z", 100)
    const server = await startServer()
    servers.push(server)
    // Swaps `tree/d` between the directory and a symlink to `outside` until killed (bounded by a count).
    const swapper = spawn(
      PYTHON,
      [
        "-c",
        [
          "import os, sys",
          "d, aside, to = sys.argv[1], sys.argv[1] + '-aside', sys.argv[2]",
          "for _ in range(2000000):",
          "    os.rename(d, aside); os.symlink(to, d)",
          "    os.unlink(d); os.rename(aside, d)"
        ].join("\n"),
        path.join(tree, "z"),
        outside
      ],
      { stdio: "ignore" }
    )
    children.push(swapper)
    // How often the race is met depends on the machine's load; what must hold is that it never follows.
    for (let i = 0; i < 150; i++) {
      const listing = await listTree(server, tree)
      expect(listing.entries.map((e) => e.name)).not.toContain("z/secret")
    }
    swapper.kill("SIGKILL")
    await withTimeout(new Promise((resolve) => swapper.once("exit", resolve)), 5000)
  }, 60_000)
})
