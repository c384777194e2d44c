/**
 * Streamed stdin through the Promise facade: a Node Readable, an async generator and a web
 * ReadableStream as `stdin`, and `process.stdin` of a process spawned with `stdin: "pipe"`.
 */
import { createHash, randomBytes } from "node:crypto"
import { Readable } from "node:stream"
import { Sandbox } from "hf-sandbox/promise"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

let sb: Sandbox

beforeAll(async () => {
  sb = await Sandbox.create({ provider: "local" })
})

afterAll(async () => {
  await sb?.terminate()
})

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

describe("stdin (Promise facade)", () => {
  it("takes a Node Readable, an async generator and a web ReadableStream", { timeout: 30_000 }, async () => {
    const data = randomBytes(6 * 1024 * 1024)
    const fromReadable = await sb.exec(["sha256sum"], {
      stdin: Readable.from([data.subarray(0, 1000), data.subarray(1000)])
    })
    expect(fromReadable.stdout.split(" ")[0]).toBe(sha256(data))
    async function* lines() {
      yield "one\n"
      yield new TextEncoder().encode("two\n")
    }
    expect((await sb.exec(["cat"], { stdin: lines() })).stdout).toBe("one\ntwo\n")
    const web = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array([104, 105]))
        controller.close()
      }
    })
    expect((await sb.exec(["cat"], { stdin: web })).stdout).toBe("hi")
  })

  it("a failing source rejects the call with its own error", { timeout: 30_000 }, async () => {
    async function* broken() {
      yield "partial"
      throw new Error("the source broke")
    }
    await expect(sb.exec(["sh", "-c", "cat > /dev/null; sleep 30"], { stdin: broken() })).rejects.toThrow(
      "the source broke"
    )
  })

  it('spawn with stdin "pipe": process.stdin.write and close', { timeout: 30_000 }, async () => {
    const p = await sb.spawn(["cat"], { stdin: "pipe" })
    await p.stdin.write("hello ")
    await p.stdin.write(new TextEncoder().encode("pipe"))
    await p.stdin.close()
    expect((await p.wait()).exitCode).toBe(0)
    let out = ""
    for await (const event of p.output()) if (event._tag === "Stdout") out += event.text
    expect(out).toBe("hello pipe")
    await expect(p.stdin.write("late")).rejects.toMatchObject({ _tag: "StdinError", reason: "Closed" })
  })
})
