/**
 * The Hub emulator's listening socket takes a burst of connections as the real front ends do: a client
 * with a thousand requests in flight (a 1,000-lease pool) connects a thousand times before the event loop
 * it shares with the emulator can accept one, and none of those handshakes may be dropped (they were
 * with Node's default accept queue of 511, and came back as ECONNRESET some 30 s later).
 *
 * The burst runs in a child process in a network namespace of its own (`unshare -n`, root), so that the
 * kernel's count of dropped handshakes is its alone on a machine where other tests run.
 */
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Bundle, bundlePrograms } from "../../support/bundleProgram.js"
import { run as runProgram } from "../../support/run.js"

const BURST = "test/support/emulatorBurst.ts"
const root = path.resolve(import.meta.dirname, "../../..")

const ownNetwork =
  process.getuid?.() === 0 &&
  spawnSync("unshare", ["-n", "ip", "link", "set", "lo", "up"], { stdio: "ignore" }).status === 0
    ? undefined
    : "needs root, unshare -n and ip (a network namespace of its own, for the kernel's counters)"

let programs: Bundle
beforeAll(async () => {
  if (ownNetwork === undefined) programs = await bundlePrograms([BURST])
})
afterAll(() => programs?.remove())

describe.skipIf(ownNetwork !== undefined)("emulator's listening socket", () => {
  it("takes 1,000 connections made in one tick without dropping a handshake", async () => {
    const run = await runProgram(
      "unshare",
      ["-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1" 1000', process.execPath, programs.paths[BURST]!],
      // A guard against a hang, not a measure of speed.
      { cwd: root, timeout: 60_000 }
    )
    expect(run.stderr).toBe("")
    const line = run.stdout.split("\n").find((l) => l.startsWith("{"))
    expect(JSON.parse(line ?? "null")).toEqual({ answered: 1000, listenOverflows: 0 })
  }, 90_000)
})
