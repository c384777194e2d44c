/**
 * The Promise facade's named sandboxes: `create({ name })`, `connect({ name })` and `getOrCreate`, on the
 * local provider: two racing `getOrCreate`s share one sandbox, the one that made it owns it (its
 * `await using` ends it), the one that attached only detaches.
 */
import * as fs from "node:fs"
import { Sandbox } from "hf-sandbox/promise"
import { describe, expect, it } from "vitest"
import { useLocalDirs } from "../support/local.js"
import { isAlive, waitGone } from "../support/processes.js"

const dirs = useLocalDirs("sbx-promise-names-")

describe("Promise facade: named sandboxes", () => {
  it("the statics include getOrCreate", () => {
    expect(Object.keys(Sandbox).sort()).toEqual(["connect", "create", "getOrCreate"])
  })

  it("getOrCreate: the maker's dispose ends the sandbox, an attacher's only detaches", async () => {
    const options = { provider: "local", stateDir: dirs.stateDir, tempDir: dirs.tempDir, name: "facade" } as const
    const maker = await Sandbox.getOrCreate(options)
    const attacher = await Sandbox.getOrCreate(options)
    expect(attacher.id).toBe(maker.id)
    const pid = maker.details.pid as number
    const connected = await Sandbox.connect({ provider: "local", stateDir: dirs.stateDir, name: "facade" })
    expect(connected.id).toBe(maker.id)
    await connected[Symbol.asyncDispose]()
    await attacher[Symbol.asyncDispose]()
    expect(isAlive(pid)).toBe(true)
    expect((await maker.exec("echo still")).stdout).toBe("still\n")
    await maker[Symbol.asyncDispose]()
    expect(await waitGone([pid])).toEqual([])
    await expect(Sandbox.connect({ provider: "local", stateDir: dirs.stateDir, name: "facade" })).rejects.toMatchObject(
      {
        reason: "NotFound"
      }
    )
  })

  it("getOrCreate racing: both get the one sandbox, and it ends once both are done with it", async () => {
    const options = { provider: "local", stateDir: dirs.stateDir, tempDir: dirs.tempDir, name: "raced" } as const
    const [a, b] = await Promise.all([Sandbox.getOrCreate(options), Sandbox.getOrCreate(options)])
    expect(a.id).toBe(b.id)
    const pid = a.details.pid as number
    await Promise.all([a[Symbol.asyncDispose](), b[Symbol.asyncDispose]()])
    expect(await waitGone([pid])).toEqual([])
    expect(fs.readdirSync(dirs.stateDir).filter((n) => n.endsWith(".json"))).toEqual([])
  })
})
