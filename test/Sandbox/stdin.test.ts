/**
 * Streamed stdin, end to end: the quick-tunnel edge as the real one treats request bodies (held until
 * complete, refused over 100 MB), and commands fed through it by the library (`exec`, `execStream`,
 * `spawn` with `stdin` as bytes or a Stream, `process.stdin`).
 */
import { createHash, randomBytes } from "node:crypto"
import * as http from "node:http"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { StdinError } from "hf-sandbox/SandboxError"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import * as Stdin from "../../src/internal/wire/stdin.js"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { localLayer } from "../support/local.js"

const Env = Layer.merge(emulatedHub(), Schedules.layer(fastSchedules))

const emulator = Testing.HubEmulatorService

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

/**
 * A `POST /v1/exec` straight to the emulated edge of `tunnelUrl`, its body written part by part as given;
 * resolves with the answer as soon as it has come (the rest of the body may be unsent).
 */
const rawEdgeRequest = (
  emu: Testing.HubEmulator,
  tunnelUrl: string,
  headers: Record<string, string>,
  parts: ReadonlyArray<Buffer>
) =>
  Effect.async<{ status: number; headers: http.IncomingHttpHeaders; body: string }, Error>((resume) => {
    const url = new URL(emu.url)
    const req = http.request({
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: "/v1/exec",
      headers: { ...headers, "x-emulator-host": new URL(tunnelUrl).hostname, "content-type": "application/json" }
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resume(
          Effect.succeed({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() })
        )
      )
    })
    req.on("error", (error) => resume(Effect.fail(error)))
    req.flushHeaders()
    const write = (i: number): void => {
      if (req.destroyed) return
      if (i === parts.length) {
        if (headers["content-length"] === undefined) req.end()
        return
      }
      if (req.write(parts[i]!)) write(i + 1)
      else req.once("drain", () => write(i + 1))
    }
    write(0)
    return Effect.sync(() => req.destroy())
  })

/** The URL the newest job announced (its marker line), as the client found it. */
const currentTunnelUrl = (emu: Testing.HubEmulator) =>
  Effect.map(emu.jobs, (jobs) => {
    const marker = [...jobs[jobs.length - 1]!.logs].reverse().find((line) => line.startsWith("HF_SANDBOX_TUNNEL "))!
    return (JSON.parse(marker.slice("HF_SANDBOX_TUNNEL ".length)) as { url: string }).url
  })

/** `count` chunks of `size` bytes, each from `seed`, counting what was pulled into `pulled`. */
const counted = (size: number, count: number | undefined, pulled: { bytes: number }): Stream.Stream<Uint8Array> => {
  const chunk: Uint8Array = randomBytes(size)
  const chunks = count === undefined ? Stream.repeatValue(chunk) : Stream.repeatValue(chunk).pipe(Stream.take(count))
  return chunks.pipe(
    Stream.tap((c) =>
      Effect.sync(() => {
        pulled.bytes += c.length
      })
    )
  )
}

const outputBytes = (process: Sandbox.Process<unknown>) =>
  process.output().pipe(
    Stream.filterMap((event) => (event._tag === "Stdout" ? Option.some(event.data) : Option.none())),
    Stream.runCollect,
    Effect.map((chunks) => Buffer.concat([...chunks]))
  )

const outputText = (process: Sandbox.Process<unknown>) => Effect.map(outputBytes(process), (b) => b.toString())

layer(Env, { excludeTestServices: true, timeout: "120 seconds" })("stdin through a quick tunnel", (it) => {
  it.effect("the edge refuses a request body over 100 MB with Cloudflare's 413 page; the origin never sees it", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      yield* Sandbox.make()
      const tunnelUrl = yield* currentTunnelUrl(emu)
      // Announced too large: refused before a byte of the body is read.
      const announced = yield* rawEdgeRequest(emu, tunnelUrl, { "content-length": "100000001" }, [])
      assert.strictEqual(announced.status, 413)
      assert.strictEqual(announced.headers.server, "cloudflare")
      assert.include(announced.body, "<title>413 Request Entity Too Large</title>")
      assert.include(announced.body, "<center>cloudflare</center>")
      // Streamed (chunked) with no length: refused once it passes 100 MB.
      const chunk = Buffer.alloc(1_000_000)
      const parts = Array.from({ length: 101 }, () => chunk)
      const streamed = yield* rawEdgeRequest(emu, tunnelUrl, { "transfer-encoding": "chunked" }, parts)
      assert.strictEqual(streamed.status, 413)
      // A body within the limit reaches the server, whole, with its length (the token is missing: 403).
      const within = yield* rawEdgeRequest(emu, tunnelUrl, { "transfer-encoding": "chunked" }, [chunk, chunk])
      assert.strictEqual(within.status, 403)
      assert.include(within.body, '"code":"auth"')
    }).pipe(Effect.scoped)
  )

  it.effect("exec with 120 MB of stdin through a tunnel sandbox: every byte reaches the command", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const input = randomBytes(120 * 1024 * 1024)
      const result = yield* sb.exec(["sha256sum"], { stdin: input })
      assert.strictEqual(result.exitCode, 0, result.stderr)
      assert.strictEqual(result.stdout.split(" ")[0], sha256(input))
    }).pipe(Effect.scoped)
  )
  it.effect("a tunnel that dies mid-stream: the stdin feed resumes at the server's offset, every byte once", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const sb = yield* Sandbox.make({
        schedules: { stdinRetry: Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds")) },
        env: { SBX_TUNNEL_BACKOFF: "0.05" }
      })
      const parts: Array<Uint8Array> = []
      let pulled = 0
      let killed: ReadonlyArray<string> = []
      const source = Stream.repeatEffect(Effect.sync(() => randomBytes(1_000_000))).pipe(
        Stream.take(30),
        Stream.tap((chunk) =>
          Effect.gen(function* () {
            parts.push(chunk)
            pulled += 1
            if (pulled === 10) killed = yield* emu.killTunnel(sb.id)
          })
        )
      )
      const p = yield* sb.spawn(["sha256sum"], { stdin: source })
      const again = Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds")))
      const exit = yield* again(p.wait)
      assert.strictEqual(killed.length, 1)
      assert.strictEqual(exit.exitCode, 0)
      const out = yield* again(outputText(p))
      assert.strictEqual(out.split(" ")[0], sha256(Buffer.concat(parts)))
    }).pipe(Effect.scoped)
  )
})

const Local = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

layer(Local, { excludeTestServices: true, timeout: "60 seconds" })("stdin on a local sandbox", (it) => {
  it.effect('spawn with stdin "pipe": writes arrive in order, close ends the input, a later write fails', () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const p = yield* sb.spawn(["cat"], { stdin: "pipe" })
      yield* p.stdin.write("hello ")
      yield* p.stdin.write(new TextEncoder().encode("world"))
      yield* p.stdin.close()
      yield* p.stdin.close()
      assert.strictEqual((yield* p.wait).exitCode, 0)
      assert.strictEqual(yield* outputText(p), "hello world")
      const late = yield* Effect.flip(p.stdin.write("late"))
      assert.strictEqual(late._tag, "StdinError")
      assert.strictEqual((late as StdinError).reason, "Closed")
    })
  )

  it.effect("a handle found by id writes from where the pipe is; a process without a pipe says NotPiped", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const p = yield* sb.spawn(["cat"], { stdin: "pipe" })
      yield* p.stdin.write("a")
      const again = yield* sb.process(p.id)
      yield* again.stdin.write("b")
      yield* again.stdin.close()
      yield* p.wait
      assert.strictEqual(yield* outputText(p), "ab")
      const plain = yield* sb.spawn(["sleep", "30"])
      const error = yield* Effect.flip(plain.stdin.write("x"))
      assert.strictEqual(error._tag, "StdinError")
      assert.strictEqual((error as StdinError).reason, "NotPiped")
      assert.include(error.message, 'stdin: "pipe"')
      yield* plain.kill()
    })
  )

  it.effect("spawn with a Stream as stdin: every byte arrives, in order", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const pulled = { bytes: 0 }
      const parts: Array<Uint8Array> = []
      const source = counted(300_000, 70, pulled).pipe(Stream.tap((c) => Effect.sync(() => parts.push(c))))
      const p = yield* sb.spawn(["sha256sum"], { stdin: source })
      assert.strictEqual((yield* p.wait).exitCode, 0)
      assert.strictEqual((yield* outputText(p)).split(" ")[0], sha256(Buffer.concat(parts)))
      assert.strictEqual(pulled.bytes, 70 * 300_000)
    })
  )

  it.effect("a Stream is read only as fast as the command takes it", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const pulled = { bytes: 0 }
      // The command never reads: what the client pulls stays bounded.
      const p = yield* sb.spawn(["sleep", "60"], { stdin: counted(64 * 1024, undefined, pulled) })
      yield* Effect.suspend(() => (pulled.bytes > 0 ? Effect.void : Effect.fail("nothing pulled yet"))).pipe(
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds")))
      )
      yield* Effect.sleep("1 second")
      // Two parts (one in flight, one waiting for it) and the chunk being pulled.
      assert.isAtMost(pulled.bytes, 2 * Stdin.PART_BYTES + 2 * 64 * 1024)
      yield* p.kill()
    })
  )

  it.effect("a source that pauses is sent as it comes, without waiting for a whole part", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      // One line, then nothing (the stream never ends): `head -n 1` must see the line and exit.
      const source = Stream.concat(Stream.make(new TextEncoder().encode("first line\n")), Stream.never)
      const p = yield* sb.spawn(["head", "-n", "1"], { stdin: source })
      assert.strictEqual((yield* p.wait).exitCode, 0)
      assert.strictEqual(yield* outputText(p), "first line\n")
    })
  )

  it.effect("a command that stops reading ends the feed quietly; the rest of the stream is not read", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const pulled = { bytes: 0 }
      const p = yield* sb.spawn(["head", "-c", "10"], { stdin: counted(64 * 1024, undefined, pulled) })
      assert.strictEqual((yield* p.wait).exitCode, 0)
      assert.strictEqual((yield* outputBytes(p)).length, 10)
    })
  )

  it.effect("a Stream that fails: the process is killed and wait fails with the stream's error", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const source = Stream.concat(Stream.make(new Uint8Array(1000)), Stream.fail("the source broke" as const))
      const p = yield* sb.spawn(["sh", "-c", "cat > /dev/null; sleep 30"], { stdin: source })
      const error = yield* Effect.flip(p.wait)
      assert.strictEqual(error, "the source broke")
      const listed = (yield* sb.processes).find((q) => q.id === p.id)!
      assert.strictEqual(listed.signal, 9)
    })
  )

  it.effect("exec and execStream with a Stream as stdin; an endless stream into a command that stops reading", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const pulled = { bytes: 0 }
      const parts: Array<Uint8Array> = []
      const source = counted(1_000_000, 9, pulled).pipe(Stream.tap((c) => Effect.sync(() => parts.push(c))))
      const result = yield* sb.exec(["sha256sum"], { stdin: source })
      assert.strictEqual(result.stdout.split(" ")[0], sha256(Buffer.concat(parts)))
      const endless = yield* sb.exec(["head", "-c", "5"], { stdin: counted(64 * 1024, undefined, { bytes: 0 }) })
      assert.strictEqual(endless.exitCode, 0)
      assert.strictEqual(endless.stdoutBytes.length, 5)
      const events = yield* sb
        .execStream(["wc", "-c"], { stdin: Stream.make(new Uint8Array(3), new Uint8Array(4)) })
        .pipe(Stream.runCollect)
      const stdout = [...events].flatMap((e) => (e._tag === "Stdout" ? [e.text] : [])).join("")
      assert.strictEqual(stdout.trim(), "7")
      // Bytes over the inline size take the pipe too.
      const big = randomBytes(Stdin.INLINE_MAX + 1)
      assert.strictEqual((yield* sb.exec(["sha256sum"], { stdin: big })).stdout.split(" ")[0], sha256(big))
    })
  )

  it.effect("exec with a Stream that fails: the command is killed and exec fails with the stream's error", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const source = Stream.concat(Stream.make(new Uint8Array(10)), Stream.fail("the source broke" as const))
      const marker = `stdin-fail-${Date.now()}`
      const error = yield* Effect.flip(
        sb.exec(["sh", "-c", `cat > /dev/null; sleep 30 # ${marker}`], { stdin: source })
      )
      assert.strictEqual(error, "the source broke")
      // The kill is sent before exec fails; the process then dies as the kernel gets to it, so the check
      // waits (bounded) for it to be gone. `[s]…` matches the command but not this check's own shells
      // (a forked one carries the pattern in its command line until it execs).
      const pattern = `[s]${marker.slice(1)}`
      const left = yield* sb.exec([
        "sh",
        "-c",
        `i=0; while pgrep -f '${pattern}' >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; pgrep -af '${pattern}' || true`
      ])
      assert.strictEqual(left.stdout, "")
    })
  )
})
