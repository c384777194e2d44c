/**
 * Commands that survive a lost connection, end to end: a local sandbox reached through a TCP relay
 * that cuts every connection on command (test/support/relay.ts), and an HF Jobs sandbox whose quick
 * tunnel dies and comes back under a new URL (Hub emulator, stand-in cloudflared). `exec` and
 * `execStream` reattach and resume each stream at the byte they had reached; what cannot be resumed
 * is a `ConnectionLostError` that says what is known about the command.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { Sandbox as PromiseSandbox, SandboxError } from "hf-sandbox/promise"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import * as Testing from "hf-sandbox/testing"
import { emulatedHub, fastSchedules } from "../support/hub.js"
import { assertGone, eventually, isAlive, localLayer } from "../support/local.js"
import { relayed } from "../support/relayed.js"

/** Reattaches quickly, for a while: the relay accepts again at once. */
const reattach = Schedule.spaced("50 millis").pipe(Schedule.upTo("30 seconds"), Schedule.asVoid)

/** The local provider, with every sandbox's server reached through a relay of its own. */
const { layer: RelayedOnly, relayOf, serverOf } = relayed()

/** The same, every sandbox reattaching on the quick {@link reattach} unless its test gives its own. */
const Relayed = Layer.merge(RelayedOnly, Schedules.layer({ reattach }))
const workdir = (sb: Sandbox.Sandbox) => sb.details.workdir as string

/** Waits until a file of the sandbox holds `pattern` (read on the local disk: no request through the relay). */
const fileMatching = (sb: Sandbox.Sandbox, name: string, pattern: RegExp) =>
  eventually(
    Effect.sync(() => {
      const file = path.join(workdir(sb), name)
      return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : ""
    }).pipe(
      Effect.filterOrFail(
        (text) => pattern.test(text),
        () => new Error(`no ${pattern} in ${name} yet`)
      )
    )
  )

const MiB = 1024 * 1024

describe("exec and execStream through a relay that cuts every connection", () => {
  it.live(
    "a 100 MiB execStream cut in the middle completes with exact bytes",
    () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        const relay = relayOf(sb)
        // The size issue 11 names; over twelve times the window the server may send past what the client
        // acknowledged (8 MiB): the cut finds bytes acknowledged, sent and not acknowledged, and not yet sent.
        const total = 100 * MiB
        const hash = createHash("sha256")
        let received = 0
        let stderr = ""
        let cutAt = -1
        let exitCode: number | null | undefined
        yield* sb.execStream(`head -c ${total} /dev/urandom | tee out.bin; sha256sum out.bin >&2`).pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              if (event._tag === "Stdout") {
                hash.update(event.data)
                received += event.data.length
                if (cutAt < 0 && received >= total / 2) {
                  cutAt = relay.connections()
                  relay.cut()
                }
              } else if (event._tag === "Stderr") stderr += event.text
              else if (event._tag === "Exit") exitCode = event.exitCode
            })
          )
        )
        assert.isAtLeast(cutAt, 1)
        assert.isAbove(relay.connections(), cutAt, "the stream reattached through a new connection")
        assert.strictEqual(exitCode, 0)
        assert.strictEqual(received, total)
        assert.strictEqual(`${hash.digest("hex")}  out.bin\n`, stderr)
      }).pipe(Effect.scoped, Effect.provide(Relayed)),
    120_000
  )
})

// Each test has its own sandbox and relay: these run side by side (the 100 MiB one above, CPU-bound, alone).
describe.concurrent("exec and execStream through a relay that cuts every connection, side by side", () => {
  it.live("a long exec with output before and after the cut returns all of it", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const relay = relayOf(sb)
      yield* sb.exec("mkfifo gate")
      const fiber = yield* Effect.fork(
        sb.exec("echo before; echo err-before >&2; echo up > ready; read l < gate; echo after; seq 1 20000")
      )
      yield* fileMatching(sb, "ready", /up/)
      const before = relay.connections()
      relay.cut()
      // Released by another request, after the cut: the command goes on while its client reattaches.
      yield* sb.exec("echo go > gate")
      const result = yield* Fiber.join(fiber)
      assert.isAbove(relay.connections(), before, "new connections after the cut")
      const seq = Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join("")
      assert.strictEqual(result.stdout, `before\nafter\n${seq}`)
      assert.strictEqual(result.stderr, "err-before\n")
      assert.strictEqual(result.exitCode, 0)
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("a connection lost before the start event is retried with the same idempotency key: it runs once", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const relay = relayOf(sb)
      yield* sb.exec("mkfifo gate")
      // Everything the server sends is lost: the client never learns the command's id.
      relay.swallow(true)
      const fiber = yield* Effect.fork(sb.exec("echo ran >> side.txt; read l < gate; echo out"))
      yield* fileMatching(sb, "side.txt", /ran/)
      relay.swallow(false)
      relay.cut()
      yield* eventually(sb.exec("echo go > gate"))
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result.stdout, "out\n")
      assert.strictEqual(fs.readFileSync(path.join(workdir(sb), "side.txt"), "utf8"), "ran\n")
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live(
    "bytes lost in a proxy's buffers are sent again after the cut: the server keeps what was not acknowledged",
    () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        const relay = relayOf(sb)
        // Twice the window the server may send unacknowledged (8 MiB): more than the 4 MiB to swallow.
        const total = 16 * MiB
        const started = yield* Deferred.make<void>()
        let received = 0
        const hash = createHash("sha256")
        const fiber = yield* sb.execStream(`head -c ${total} /dev/urandom | tee out.bin`).pipe(
          Stream.runForEach((event) =>
            event._tag === "Start"
              ? Deferred.succeed(started, undefined)
              : Effect.sync(() => {
                  if (event._tag === "Stdout") {
                    hash.update(event.data)
                    received += event.data.length
                  }
                })
          ),
          Effect.fork
        )
        yield* Deferred.await(started)
        // What the server sends from now on is lost, as in a proxy that dies with full buffers. However
        // much that is, the server sends at most a window past what the client acknowledged and keeps
        // it (test/server/execResume.test.ts proves the bound).
        relay.swallow(true)
        yield* eventually(
          Effect.suspend(() => (relay.swallowed() > 4 * MiB ? Effect.void : Effect.fail(new Error("not yet"))))
        )
        relay.swallow(false)
        relay.cut()
        yield* Fiber.join(fiber)
        assert.strictEqual(received, total)
        assert.strictEqual(
          hash.digest("hex"),
          createHash("sha256")
            .update(fs.readFileSync(path.join(workdir(sb), "out.bin")))
            .digest("hex")
        )
      }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live(
    "output another reader drained past the server's buffer is a ConnectionLostError saying the command still runs",
    () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        const relay = relayOf(sb)
        const server = serverOf(sb)
        const started = yield* Deferred.make<{ readonly pid: number }>()
        const fiber = yield* sb.execStream(["head", "-c", String(256 * MiB), "/dev/zero"]).pipe(
          Stream.tap((event) => (event._tag === "Start" ? Deferred.succeed(started, { pid: event.pid }) : Effect.void)),
          Stream.runDrain,
          Effect.fork
        )
        const { pid } = yield* Deferred.await(started)
        relay.swallow(true)
        // A second reader of the command (its output followed from the oldest byte, which waits for no
        // acknowledgement; the pid names it too) reads 32 MiB, far past the 8 MiB kept behind what was sent.
        yield* Effect.promise(async () => {
          const controller = new AbortController()
          const res = await fetch(`${server.url}/v1/processes/${pid}/output?follow=1&encoding=base64`, {
            method: "POST",
            headers: { "X-Sandbox-Token": server.token },
            signal: controller.signal
          })
          const reader = res.body!.getReader()
          let read = 0
          while (read < 32 * MiB) read += (await reader.read()).value?.length ?? Number.POSITIVE_INFINITY
          controller.abort()
        })
        relay.swallow(false)
        relay.cut()
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.strictEqual(error._tag, "ConnectionLostError")
        if (error._tag !== "ConnectionLostError") return
        assert.match(error.commandId ?? "", /^e-\d+$/)
        assert.strictEqual(error.running, true)
        assert.match(error.message, /fell out of the sandbox's output buffer/)
        assert.match(error.message, /Command e-\d+ was still running when last seen/)
        // Given up, it is killed rather than left paused until the server's grace runs out.
        yield* assertGone([pid])
      }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("reattaching that fails until the schedule runs out is a ConnectionLostError with the command's id", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({ schedules: { reattach: Schedule.recurs(3).pipe(Schedule.asVoid) } })
      const relay = relayOf(sb)
      // Cut once the client has the command's id (its start event), so that there is one to report.
      const started = yield* Deferred.make<void>()
      const fiber = yield* sb.execStream("sleep 60").pipe(
        Stream.tap((event) => (event._tag === "Start" ? Deferred.succeed(started, undefined) : Effect.void)),
        Stream.runDrain,
        Effect.fork
      )
      yield* Deferred.await(started)
      relay.refuse(true)
      relay.cut()
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "ConnectionLostError")
      if (error._tag !== "ConnectionLostError") return
      assert.match(error.commandId ?? "", /^e-\d+$/)
      assert.strictEqual(error.running, true)
      assert.match(error.message, /reattaching failed until the reattach schedule ran out/)
      assert.isUndefined(error.exitCode)
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("a stream silent for timeouts.streamIdle is a lost connection, exec's and execStream's alike", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make({
        // No ping for a minute: the command's silence is the stream's.
        env: { SBX_PING_INTERVAL: "60" },
        timeouts: { streamIdle: "1 second" },
        schedules: { reattach: Schedule.recurs(0).pipe(Schedule.asVoid) }
      })
      for (const silent of [sb.exec("sleep 30"), Stream.runDrain(sb.execStream("sleep 30"))]) {
        const error = yield* Effect.flip(silent)
        assert.strictEqual(error._tag, "ConnectionLostError")
        assert.match(error.message, /the output stream was silent for 1s/)
      }
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("a command the sandbox has forgotten when the client is back is a ConnectionLostError saying so", () =>
    Effect.gen(function* () {
      // Forgotten as soon as it ends, so that the test need not wait for the default 5 minutes.
      const sb = yield* Sandbox.make({ env: { SBX_EXEC_RETAIN: "0" } })
      const relay = relayOf(sb)
      const server = serverOf(sb)
      yield* sb.exec("mkfifo gate")
      const started = yield* Deferred.make<string>()
      const fiber = yield* sb.execStream("echo before; read l < gate; echo after").pipe(
        Stream.tap((event) => (event._tag === "Stdout" ? Deferred.succeed(started, event.text) : Effect.void)),
        Stream.runDrain,
        Effect.fork
      )
      assert.strictEqual(yield* Deferred.await(started), "before\n")
      relay.refuse(true)
      relay.cut()
      // The command ends while its client cannot reach the sandbox, and is forgotten.
      yield* Effect.promise(() =>
        fetch(`${server.url}/v1/exec`, {
          method: "POST",
          headers: { "X-Sandbox-Token": server.token },
          body: JSON.stringify({ cmd: "echo go > gate", cwd: workdir(sb) })
        }).then((r) => r.text())
      )
      yield* eventually(
        Effect.promise(() =>
          fetch(`${server.url}/v1/processes?kind=exec`, { headers: { "X-Sandbox-Token": server.token } }).then(
            (r) => r.json() as Promise<Array<{ cmd: string }>>
          )
        ).pipe(
          Effect.filterOrFail(
            (list) => !list.some((p) => p.cmd.startsWith("echo before")),
            () => new Error("not forgotten yet")
          )
        )
      )
      relay.refuse(false)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "ConnectionLostError")
      if (error._tag !== "ConnectionLostError") return
      assert.match(error.commandId ?? "", /^e-\d+$/)
      assert.match(error.message, /the sandbox no longer knows the command/)
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )

  it.live("a stream given up early kills its command, as the dropped connection did before", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const events = yield* sb.execStream("sleep 60 & echo $!; wait").pipe(
        Stream.take(2),
        Stream.runCollect,
        Effect.map((chunk) => [...chunk])
      )
      const pid = events[0]!._tag === "Start" ? events[0]!.pid : -1
      const child = Number(events[1]!._tag === "Stdout" ? events[1]!.text.trim() : -1)
      yield* assertGone([pid, child])
      assert.strictEqual((yield* sb.exec("echo still here")).stdout, "still here\n")
    }).pipe(Effect.scoped, Effect.provide(Relayed))
  )
})

describe("idempotencyKey", () => {
  it.live("a retried exec or spawn with the same key returns the existing command: it ran once", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.make()
      const first = yield* sb.exec("echo ran >> once.txt; echo out", { idempotencyKey: "step-1" })
      const again = yield* sb.exec("echo ran >> once.txt; echo out", { idempotencyKey: "step-1" })
      assert.deepInclude(again, { stdout: "out\n", exitCode: 0 })
      assert.strictEqual(again.stdout, first.stdout)
      const streamed = yield* sb
        .execStream("echo ran >> once.txt; echo out", { idempotencyKey: "step-1" })
        .pipe(Stream.runCollect)
      assert.deepStrictEqual(
        [...streamed].map((e) => e._tag),
        ["Start", "Stdout", "Exit"]
      )
      assert.strictEqual(fs.readFileSync(path.join(workdir(sb), "once.txt"), "utf8"), "ran\n")

      const p1 = yield* sb.spawn("echo ran >> spawned.txt; sleep 60", { idempotencyKey: "daemon" })
      const p2 = yield* sb.spawn("echo ran >> spawned.txt; sleep 60", { idempotencyKey: "daemon" })
      assert.strictEqual(p2.id, p1.id)
      assert.strictEqual(p2.pid, p1.pid)
      yield* fileMatching(sb, "spawned.txt", /ran/)
      assert.strictEqual(fs.readFileSync(path.join(workdir(sb), "spawned.txt"), "utf8"), "ran\n")
      assert.isTrue(isAlive(p1.pid))

      const conflict = yield* Effect.flip(sb.exec("echo other", { idempotencyKey: "step-1" }))
      assert.strictEqual(conflict._tag, "BadRequestError")
      if (conflict._tag === "BadRequestError") assert.strictEqual(conflict.code, "idempotency_conflict")

      for (const key of ["", "has space", "x".repeat(129)]) {
        const bad = yield* Effect.flip(sb.exec("true", { idempotencyKey: key }))
        assert.strictEqual(bad._tag, "InvalidArgumentError")
        if (bad._tag === "InvalidArgumentError") assert.strictEqual(bad.argument, "idempotencyKey")
        const badSpawn = yield* Effect.flip(sb.spawn("true", { idempotencyKey: key }))
        assert.strictEqual(badSpawn._tag, "InvalidArgumentError")
      }
    }).pipe(Effect.scoped, Effect.provide(localLayer()))
  )
})

describe("idempotencyKey in the Promise facade", () => {
  it("is validated and sent like in the Effect API", async () => {
    await using sb = await PromiseSandbox.create({ provider: "local" })
    const bad = await sb.exec("true", { idempotencyKey: "no spaces" }).catch((e: unknown) => e)
    assert.instanceOf(bad, SandboxError.InvalidArgumentError)
    assert.include((bad as Error).message, "idempotencyKey")
    const p1 = await sb.spawn("sleep 60", { idempotencyKey: "promise-1" })
    const p2 = await sb.spawn("sleep 60", { idempotencyKey: "promise-1" })
    assert.strictEqual(p2.id, p1.id)
    const r1 = await sb.exec("echo $$", { idempotencyKey: "promise-2" })
    const r2 = await sb.exec("echo $$", { idempotencyKey: "promise-2" })
    assert.strictEqual(r2.stdout, r1.stdout)
  })
})

const Tunnel = Layer.merge(emulatedHub(), Schedules.layer(fastSchedules))

layer(Tunnel, { excludeTestServices: true })("through a quick tunnel that restarts", (it) => {
  it.effect(
    "an exec whose tunnel dies mid-output reattaches at the new URL and returns every byte",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        const sb = yield* Sandbox.make({
          env: { SBX_TUNNEL_BACKOFF: "0.1" },
          schedules: { reattach: Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds")) }
        })
        yield* sb.exec("mkfifo gate")
        const started = yield* Deferred.make<void>()
        const fiber = yield* sb.execStream("seq 1 1000; read l < gate; seq 1001 50000").pipe(
          Stream.tap((event) => (event._tag === "Stdout" ? Deferred.succeed(started, undefined) : Effect.void)),
          Stream.filterMap((event) => (event._tag === "Stdout" ? Option.some(event.data) : Option.none())),
          Stream.decodeText(),
          Stream.runCollect,
          Effect.fork
        )
        yield* Deferred.await(started)
        const killed = yield* emu.killTunnel(sb.id)
        assert.strictEqual(killed.length, 1)
        // Through the restarted tunnel (a new URL), once the sandbox has found it.
        yield* eventually(sb.exec("echo go > gate"), "60 seconds")
        const text = [...(yield* Fiber.join(fiber))].join("")
        assert.strictEqual(text, Array.from({ length: 50000 }, (_, i) => `${i + 1}\n`).join(""))
      }).pipe(Effect.scoped),
    120_000
  )

  it.effect(
    "an exec whose job dies under it fails at once with ConnectionLostError naming the job's end, not after the reattach schedule",
    () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        // A reattach schedule longer than the test: only the provider's word that the job ended can end the exec.
        const sb = yield* Sandbox.make({
          transport: "proxy",
          schedules: { reattach: Schedule.spaced("1 second").pipe(Schedule.upTo("1 hour")) }
        })
        const started = yield* Deferred.make<void>()
        const fiber = yield* sb.execStream("echo up; exec sleep 300").pipe(
          Stream.tap((event) => (event._tag === "Stdout" ? Deferred.succeed(started, undefined) : Effect.void)),
          Stream.runDrain,
          Effect.flip,
          Effect.fork
        )
        yield* Deferred.await(started)
        // The container dies (SIGKILL): no exit event, the connection just drops.
        yield* emu.killJob(sb.id)
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag, "ConnectionLostError", error.message)
        assert.include(error.message, "ERROR")
      }).pipe(Effect.scoped),
    60_000
  )
})
