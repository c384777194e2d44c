/**
 * The emulator's stand-in cloudflared answers its command line as the real binary does (urfave/cli v2 over
 * Go's flag package, cmd/cloudflared/main.go): `--version`/`-v`/`-V`/`version` in the real format, and an
 * unknown flag is "Incorrect Usage" plus help on stdout with exit status 0 (main ignores app.Run's error).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { CLOUDFLARED_VERSION, cloudflaredScript } from "../../../src/internal/testing/cloudflared.js"
import { run } from "../../support/run.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-cloudflared-test-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const standIn = (version?: string) => {
  const file = path.join(dir, `cloudflared-${version ?? "default"}`)
  if (!fs.existsSync(file)) fs.writeFileSync(file, cloudflaredScript(process.execPath, version), { mode: 0o755 })
  // Asynchronous, so that a test's command lines run side by side: each is a start of node.
  return (...args: Array<string>) => {
    // No HF_EMULATOR_CONTROL: a command line that is accepted fails at the quick-tunnel request instead.
    const env = { ...process.env }
    delete env.HF_EMULATOR_CONTROL
    // A guard against a hang, not a measure of speed: a loaded machine can take seconds to start node.
    return run(file, args, { env, timeout: 45_000 })
  }
}

/** The arguments the server passes (rpc-server/sbx_server/tunnel_process.py, run_once). */
const SERVER_ARGS = [
  "tunnel",
  "--no-autoupdate",
  "--protocol",
  "http2",
  "--no-prechecks",
  "--metrics",
  "127.0.0.1:0",
  "--url",
  "http://127.0.0.1:9"
]

describe("stand-in cloudflared command line", () => {
  it("answers --version, -v, -V and `version` as the real one (`version --short`: the number only)", async () => {
    const run = standIn()
    const line = `cloudflared version ${CLOUDFLARED_VERSION} (built 2026-08-14T10:54 UTC)\n`
    const forms = [["--version"], ["-v"], ["-V"], ["version"], ["-version"], ["--version=true"]]
    const [short, other, ...answers] = await Promise.all([
      run("version", "--short"),
      standIn("2026.9.1")("--version"),
      ...forms.map((args) => run(...args))
    ])
    forms.forEach((args, i) => {
      expect(answers[i], args.join(" ")).toEqual({ status: 0, stdout: line, stderr: "" })
    })
    expect(short).toEqual({ status: 0, stdout: `${CLOUDFLARED_VERSION}\n`, stderr: "" })
    expect(other!.stdout).toBe("cloudflared version 2026.9.1 (built 2026-09-01T12:00 UTC)\n")
  })

  it("rejects an unknown flag like urfave/cli: Incorrect Usage and help on stdout, exit status 0, no tunnel", async () => {
    const run = standIn()
    const [tunnel, app, version, url, bool] = await Promise.all([
      run("tunnel", "--no-autoupdate", "--xyz", "--url", "http://127.0.0.1:9"),
      run("--xyz"),
      run("tunnel", "--version"),
      run("tunnel", "--url"),
      run("tunnel", "--no-autoupdate=maybe")
    ])
    expect(tunnel.status).toBe(0)
    expect(tunnel.stdout).toMatch(
      /^Incorrect Usage\. flag provided but not defined: -xyz\n\nNAME:\n {3}cloudflared tunnel - Use Cloudflare Tunnel/
    )
    expect(tunnel.stderr).toBe("") // never got as far as requesting a tunnel
    expect(app.status).toBe(0)
    expect(app.stdout).toMatch(/^Incorrect Usage\. flag provided but not defined: -xyz\n\nNAME:\n {3}cloudflared - /)
    // `tunnel` is a sub-app with HideVersion: --version is not one of its flags.
    expect(version.stdout).toMatch(/^Incorrect Usage\. flag provided but not defined: -version\n/)
    expect(url.stdout).toMatch(/^Incorrect Usage\. flag needs an argument: -url\n/)
    expect(bool.stdout).toMatch(/^Incorrect Usage\. invalid boolean value "maybe" for -no-autoupdate: parse error\n/)
  })

  it("knows --no-prechecks from 2026.5.0 on: an older one prints Incorrect Usage for the server's command line", async () => {
    const [old, ...currents] = await Promise.all(
      [standIn("2026.4.2"), standIn("2026.5.0"), standIn()].map((run) => run(...SERVER_ARGS))
    )
    expect(old).toMatchObject({ status: 0, stderr: "" })
    expect(old!.stdout).toMatch(/^Incorrect Usage\. flag provided but not defined: -no-prechecks\n/)
    for (const current of currents) {
      expect(current.status).toBe(1)
      expect(current.stdout).toBe("")
      expect(current.stderr).toContain("Requesting new quick Tunnel on trycloudflare.com...")
    }
  })
})
