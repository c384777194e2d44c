/**
 * The installed executable (src/cli/start.ts, built by scripts/build-cli.ts): it runs the CLI's bundle
 * through a V8 code cache under the user's cache directory. A run without a cache writes one, the next
 * takes it as it is; a cache that is garbage, or a cache directory that cannot be written, costs only
 * the start-up, never the command; `HF_SANDBOX_COMPILE_CACHE=0` writes none.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { buildStarter } from "../../scripts/build-cli.js"
import { VERSION } from "../../src/internal/version.js"
import { sharedCli } from "../support/bundleCli.js"

let work: string
let bin: string

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-cli-start-"))
  bin = await sharedCli()
})

afterAll(() => {
  if (work !== undefined) fs.rmSync(work, { recursive: true, force: true })
})

const version = (env: Record<string, string>, starter = bin) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [starter, "--version"], {
      env: { PATH: process.env.PATH, HOME: work, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout: stdout.trim(), stderr }))
  })

/** The cache files under `cacheHome`, with their inode (a rewrite renames a new file over the old). */
const cacheFiles = (cacheHome: string) => {
  const directory = path.join(cacheHome, "hf-sandbox", "compile-cache")
  if (!fs.existsSync(directory)) return []
  return fs.readdirSync(directory).map((name) => {
    const file = path.join(directory, name)
    return { file, name, ino: fs.statSync(file).ino }
  })
}

describe("hf-sandbox (the installed executable)", () => {
  it("writes a code cache on its first run and takes it as it is on the next", async () => {
    const cacheHome = path.join(work, "cache-a")
    const first = await version({ XDG_CACHE_HOME: cacheHome })
    expect(first).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    const written = cacheFiles(cacheHome)
    expect(written.map((f) => f.name)).toEqual([
      expect.stringMatching(/^v\d+\.\d+\.\d+-[a-z0-9]+-[0-9a-f]{8}-[0-9a-f]{32}-[0-9a-z]+-[0-9a-z]+-[0-9a-z]+\.bin$/)
    ])
    const second = await version({ XDG_CACHE_HOME: cacheHome })
    expect(second).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    // Accepted by V8: not written again.
    expect(cacheFiles(cacheHome)).toEqual(written)
  })

  it("replaces a cache that is garbage, and still runs the command", async () => {
    const cacheHome = path.join(work, "cache-b")
    await version({ XDG_CACHE_HOME: cacheHome })
    const [cache] = cacheFiles(cacheHome)
    fs.writeFileSync(cache!.file, "not a code cache")
    const run = await version({ XDG_CACHE_HOME: cacheHome })
    expect(run).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    expect(fs.readFileSync(cache!.file).length).toBeGreaterThan(1024)
  })

  it("keys the cache by the bundle's content, digested at build time: a rebuilt, changed bundle gets a new key", async () => {
    const cacheHome = path.join(work, "cache-d")
    const bundle = path.join(path.dirname(bin), "hf-sandbox.cjs")
    const keyOf = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex").slice(0, 32)
    const before = keyOf(fs.readFileSync(bundle))
    expect(await version({ XDG_CACHE_HOME: cacheHome })).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    expect(cacheFiles(cacheHome).map((f) => f.name)).toEqual([expect.stringMatching(new RegExp(`-${before}-`))])
    // The same bundle with other content and the same length (V8 alone would take the old cache for it),
    // built again: the starter's key is the new content's.
    const changed = path.join(work, "changed")
    fs.mkdirSync(changed)
    const text = fs.readFileSync(bundle, "latin1")
    const edited = text.replace(/hf-sandbox/, "hf_sandbox")
    expect(edited.length).toBe(text.length)
    fs.writeFileSync(path.join(changed, "hf-sandbox.cjs"), edited, "latin1")
    const rebuilt = await buildStarter(changed)
    const after = keyOf(fs.readFileSync(path.join(changed, "hf-sandbox.cjs")))
    expect(after).not.toBe(before)
    const run = await version({ XDG_CACHE_HOME: cacheHome }, rebuilt)
    expect(run).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    expect(cacheFiles(cacheHome).map((f) => f.name)).toEqual([expect.stringMatching(new RegExp(`-${after}-`))])
  })

  it("keys the cache by the bundle file too: a bundle rewritten without rebuilding the starter gets a new key", async () => {
    const cacheHome = path.join(work, "cache-e")
    const stale = path.join(work, "stale")
    fs.mkdirSync(stale)
    const starter = path.join(stale, path.basename(bin))
    const bundle = path.join(stale, "hf-sandbox.cjs")
    fs.copyFileSync(bin, starter)
    fs.copyFileSync(path.join(path.dirname(bin), "hf-sandbox.cjs"), bundle)
    /** The file's part of the key: size, mtime in microseconds and inode. */
    const identity = () => {
      const stat = fs.statSync(bundle, { bigint: true })
      return [stat.size, stat.mtimeNs / 1000n, stat.ino].map((n) => n.toString(36)).join("-")
    }
    expect(await version({ XDG_CACHE_HOME: cacheHome }, starter)).toMatchObject({ code: 0, stdout: VERSION })
    const before = identity()
    expect(cacheFiles(cacheHome).map((f) => f.name)).toEqual([expect.stringMatching(new RegExp(`-${before}\\.bin$`))])
    // Same length, other content, written in place (same inode); the starter keeps its build-time digest.
    const text = fs.readFileSync(bundle, "latin1")
    const edited = text.replace(/hf-sandbox/, "hf_sandbox")
    expect(edited.length).toBe(text.length)
    fs.writeFileSync(bundle, edited, "latin1")
    // Its mtime moved on for certain, whatever the filesystem's timestamp granularity.
    const written = fs.statSync(bundle)
    fs.utimesSync(bundle, written.atime, new Date(written.mtimeMs + 2000))
    const after = identity()
    expect(after).not.toBe(before)
    const run = await version({ XDG_CACHE_HOME: cacheHome }, starter)
    expect(run).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    expect(cacheFiles(cacheHome).map((f) => f.name)).toEqual([expect.stringMatching(new RegExp(`-${after}\\.bin$`))])
  })

  it("runs without a cache where none can be written, and writes none when turned off", async () => {
    const notADirectory = path.join(work, "a-file")
    fs.writeFileSync(notADirectory, "")
    expect(await version({ XDG_CACHE_HOME: notADirectory })).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    const cacheHome = path.join(work, "cache-c")
    const off = await version({ XDG_CACHE_HOME: cacheHome, HF_SANDBOX_COMPILE_CACHE: "0" })
    expect(off).toMatchObject({ code: 0, stdout: VERSION, stderr: "" })
    expect(fs.existsSync(cacheHome)).toBe(false)
  })
})
