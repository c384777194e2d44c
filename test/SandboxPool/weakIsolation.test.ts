/**
 * `SandboxPool` on the local provider where its host servers cannot be root: a program using the pool
 * (test/support/weakPoolChild.ts, bundled) run as nobody, as a user runs it, so the hosts it starts run
 * as nobody too. With `weakIsolation` the pool serves (isolation "landlock" or "none",
 * docs/security.md); without it, it fails saying what the host misses. Runs as root only (to drop to
 * nobody); test/server/hostWeak.test.ts checks the server itself.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Bundle, bundlePrograms } from "../support/bundleProgram.js"
import { run } from "../support/run.js"

const NOBODY = 65534
const CHILD = "test/support/weakPoolChild.ts"
const cannotRun =
  process.platform !== "linux"
    ? "not Linux"
    : process.getuid?.() !== 0
      ? "not root: the program cannot be run as another user"
      : !fs.existsSync("/usr/bin/python3")
        ? "/usr/bin/python3 is missing"
        : undefined

let programs: Bundle | undefined
let root = ""

beforeAll(async () => {
  if (cannotRun !== undefined) return
  programs = await bundlePrograms([CHILD])
  // The bundle's temp directory is root's (0700): nobody must reach the program and the server under it.
  fs.chmodSync(path.resolve(programs.paths[CHILD]!, "../../../.."), 0o755)
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-weak-pool-"))
  fs.chownSync(root, NOBODY, NOBODY)
}, 60_000)

afterAll(() => {
  programs?.remove()
  if (root !== "") fs.rmSync(root, { recursive: true, force: true })
})

/** Runs the program as nobody with its own state and temp directories: its JSON line. */
const runAsNobody = async (mode: "weak" | "strict") => {
  const dirs = fs.mkdtempSync(path.join(root, `${mode}-`))
  const [stateDir, tempDir] = [path.join(dirs, "state"), path.join(dirs, "tmp")]
  fs.mkdirSync(tempDir)
  for (const dir of [dirs, tempDir]) fs.chownSync(dir, NOBODY, NOBODY)
  const { status, signal, stdout, stderr } = await run(
    process.execPath,
    [programs!.paths[CHILD]!, mode, stateDir, tempDir],
    // A guard against a hang, not a measure of speed.
    {
      cwd: dirs,
      env: { PATH: "/usr/bin:/bin", HOME: dirs },
      uid: NOBODY,
      gid: NOBODY,
      timeout: 90_000,
      killSignal: "SIGKILL"
    }
  )
  if (status !== 0) throw new Error(`the program exited with ${signal ?? status}: ${stderr}`)
  return { result: JSON.parse(stdout.trim().split("\n").at(-1)!), tempDir }
}

/** The processes whose environment names `dir` (the hosts' TMPDIR is in the temp directory). */
const processesUnder = (dir: string) =>
  fs.readdirSync("/proc").filter((pid) => {
    if (!/^\d+$/.test(pid)) return false
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, "utf8").includes(dir)
    } catch {
      return false
    }
  })

describe.skipIf(cannotRun !== undefined)(
  `SandboxPool on the local provider, run by nobody${cannotRun === undefined ? "" : ` (skipped: ${cannotRun})`}`,
  { timeout: 120_000 },
  () => {
    it("with weakIsolation, leases sandboxes in their own homes, as nobody, and leaves nothing behind", async () => {
      const { result, tempDir } = await runAsNobody("weak")
      expect(result.error).toBeUndefined()
      const [a, b] = result.leases
      expect(a.id).not.toBe(b.id)
      for (const lease of [a, b]) {
        expect(lease.uid).toBe(NOBODY)
        expect(lease.pwd).toBe(lease.home)
        expect(lease.read).toBe(lease.id)
        expect(lease.home.startsWith(fs.realpathSync(tempDir))).toBe(true)
        expect(fs.existsSync(lease.home)).toBe(false)
      }
      expect(a.home).not.toBe(b.home)
      expect({ hosts: result.hosts, released: result.released }).toEqual({ hosts: 1, released: 0 })
      expect(processesUnder(tempDir)).toEqual([])
    })

    it("without weakIsolation, fails naming what the host misses and the option that accepts it", async () => {
      const { result, tempDir } = await runAsNobody("strict")
      expect(result.error).toMatchObject({ tag: "StartError", reason: "InvalidOptions", option: "weakIsolation" })
      expect(result.error.message).toContain("not root: cannot give sandboxes their own uid")
      // The pool's option, not the server's switch, which the pool sets from it.
      expect(result.error.message).toContain("Pass `weakIsolation: true` to SandboxPool.layer")
      expect(result.error.message).not.toContain("SBX_HOST_WEAK_ISOLATION")
      expect(result.error.message).not.toContain("SBX_REFUSAL")
      expect(processesUnder(tempDir)).toEqual([])
    })
  }
)
