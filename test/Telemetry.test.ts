/**
 * Usage telemetry and tracing. Events are checked in memory (each termination reason, a real signal
 * in a child process), then as the Hub's HEAD requests against the Hub emulator (exact fields, fields
 * never sent, every opt-out variable), and against telemetry endpoints that hang or refuse, which must
 * never delay or fail a sandbox. Spans are collected with a recording tracer.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, assert, beforeAll, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as Schedules from "hf-sandbox/Schedules"
import * as Telemetry from "hf-sandbox/Telemetry"
import * as Testing from "hf-sandbox/testing"
import * as Signals from "../src/internal/signals.js"
import { type Bundle, bundlePrograms } from "./support/bundleProgram.js"
import { emulatorLayer, fastSchedules } from "./support/hub.js"
import { assertGone, eventually, localLayer } from "./support/local.js"

const Local = localLayer()
const WithMemory = Layer.merge(Local, Telemetry.layerMemory)

/** No opt-out variable, whatever the environment running the tests says. */
const noOptOut = Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))

const terminates = (events: ReadonlyArray<Telemetry.Event>) =>
  events.filter((e): e is Telemetry.TerminateEvent => e._tag === "Terminate")

// ---- events, in memory ------------------------------------------------------------------------

describe("telemetry events (layerMemory, local provider)", () => {
  it.live("create once the sandbox is ready, terminate with `scope` when its scope closes", () =>
    Effect.gen(function* () {
      const before = process.listenerCount("SIGINT")
      const during = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ lifetime: "90s", forwardHfToken: true, flavor: "a10g-small" })
        yield* sb.exec("true")
        // The signal watcher is installed only while a reported sandbox is open.
        assert.isTrue(Signals.listening())
        assert.strictEqual(process.listenerCount("SIGINT"), before + 1)
        return yield* Telemetry.memory
      }).pipe(Effect.scoped)
      assert.strictEqual(process.listenerCount("SIGINT"), before)
      assert.isFalse(Signals.listening())

      assert.strictEqual(during.length, 1)
      const create = during[0]!
      assert.strictEqual(create._tag, "Create")
      if (create._tag !== "Create") return
      assert.match(create.sessionId, /^[0-9a-f]{32}$/)
      // What the provider did, not what was asked: the local provider runs no hardware flavor and gives
      // the sandbox no HF token (`flavor` and `forwardHfToken` are HF Jobs options it ignores).
      assert.deepStrictEqual(create, {
        _tag: "Create",
        sessionId: create.sessionId,
        flavor: "local",
        timeoutS: 90,
        forwardHfToken: false
      })
      const events = yield* Telemetry.memory
      assert.strictEqual(events.length, 2)
      const [end] = terminates(events)
      assert.strictEqual(end?.sessionId, create.sessionId)
      assert.strictEqual(end?.reason, "scope")
      assert.isTrue(end!.durationS >= 0 && end!.durationS < 60)
      assert.strictEqual(Telemetry.userAgent(create).split("; ")[0], "hf-sandbox/0.1.0")
    }).pipe(Effect.provide(WithMemory))
  )

  it.live("defaults: no timeout, token not forwarded; every sandbox has its own session id", () =>
    Effect.gen(function* () {
      yield* Effect.all([Sandbox.make(), Sandbox.make()], { concurrency: 2 }).pipe(Effect.scoped)
      const events = yield* Telemetry.memory
      const creates = events.filter((e): e is Telemetry.CreateEvent => e._tag === "Create")
      assert.strictEqual(creates.length, 2)
      for (const create of creates)
        assert.deepInclude(create, { flavor: "local", timeoutS: null, forwardHfToken: false })
      assert.notStrictEqual(creates[0]!.sessionId, creates[1]!.sessionId)
      assert.sameMembers(
        terminates(events).map((e) => e.sessionId),
        creates.map((e) => e.sessionId)
      )
    }).pipe(Effect.provide(WithMemory))
  )

  it.live("terminate says `user` when sb.terminate was called, once, at the call", () =>
    Effect.gen(function* () {
      const afterCall = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        yield* sb.terminate
        yield* sb.terminate
        return yield* Telemetry.memory
      }).pipe(Effect.scoped)
      assert.deepStrictEqual(
        terminates(afterCall).map((e) => e.reason),
        ["user"]
      )
      assert.strictEqual(terminates(yield* Telemetry.memory).length, 1)
    }).pipe(Effect.provide(WithMemory))
  )

  it.live("terminate says `failure` when the scope closes with a failure or a defect", () =>
    Effect.gen(function* () {
      yield* Sandbox.make().pipe(Effect.zipRight(Effect.fail("boom")), Effect.scoped, Effect.exit)
      yield* Sandbox.make().pipe(Effect.zipRight(Effect.die(new Error("defect"))), Effect.scoped, Effect.exit)
      assert.deepStrictEqual(
        terminates(yield* Telemetry.memory).map((e) => e.reason),
        ["failure", "failure"]
      )
    }).pipe(Effect.provide(WithMemory))
  )

  it.live("terminate says `interruption` when the sandbox's fiber is interrupted", () =>
    Effect.gen(function* () {
      const ready = yield* Deferred.make<void>()
      const fiber = yield* Sandbox.make().pipe(
        Effect.zipRight(Deferred.succeed(ready, undefined)),
        Effect.zipRight(Effect.never),
        Effect.scoped,
        Effect.fork
      )
      yield* Deferred.await(ready)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(
        terminates(yield* Telemetry.memory).map((e) => e.reason),
        ["interruption"]
      )
    }).pipe(Effect.provide(WithMemory))
  )

  it.live("Sandbox.layer reports through the layer's scope", () =>
    Effect.gen(function* () {
      yield* Effect.flatMap(Sandbox.Sandbox, (sb) => sb.exec("true")).pipe(
        Effect.provide(Sandbox.layer().pipe(Layer.provide(Local)))
      )
      assert.deepStrictEqual(
        (yield* Telemetry.memory).map((e) => (e._tag === "Create" ? e._tag : e.reason)),
        ["Create", "scope"]
      )
    }).pipe(Effect.provide(Telemetry.layerMemory))
  )

  it.live("a start that fails reports nothing", () =>
    Effect.gen(function* () {
      const failed = yield* Sandbox.make().pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(failed._tag, "StartError")
      assert.deepStrictEqual(yield* Telemetry.memory, [])
    }).pipe(Effect.provide(Layer.merge(localLayer({ python: "/nonexistent/python3" }), Telemetry.layerMemory)))
  )

  it.live("without a telemetry layer nothing is reported and no signal is watched", () =>
    Effect.gen(function* () {
      assert.isFalse((yield* Telemetry.Telemetry).enabled)

      const before = process.listenerCount("SIGINT")
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        yield* sb.exec("true")
        assert.strictEqual(process.listenerCount("SIGINT"), before)
        assert.isFalse(Signals.listening())
      }).pipe(Effect.scoped, Effect.provide(Local))
    })
  )

  it.live("a telemetry service that hangs holds a sandbox up by one short bound at most", () =>
    Effect.gen(function* () {
      const hanging = Telemetry.layer(() => Effect.never)
      const exit = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        return yield* sb.exec("echo ok")
      }).pipe(Effect.scoped, Effect.provide(Layer.merge(Local, hanging)), Effect.timeout("20 seconds"), Effect.exit)
      assert.isTrue(Exit.isSuccess(exit))
    })
  )
})

// ---- signals, in a child process --------------------------------------------------------------

const root = fileURLToPath(new URL("..", import.meta.url))
const CHILD = "test/support/telemetrySignal.ts"
// Bundled once for the file and run with plain node (see test/support/bundleProgram.ts).
let programs: Bundle
beforeAll(async () => {
  programs = await bundlePrograms([CHILD])
})
afterAll(() => programs?.remove())

interface ChildRun {
  readonly lines: Array<Record<string, unknown>>
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** Runs the fixture in `mode`, sends `signal` after its `ready` line, and collects what it printed. */
const runChild = (mode: string, signal: NodeJS.Signals) =>
  Effect.async<ChildRun, Error>((resume) => {
    // Node itself, not a CLI wrapper such as tsx's, which relays signals to a child of its own.
    const proc = spawn(process.execPath, [programs.paths[CHILD]!, mode], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const lines: Array<Record<string, unknown>> = []
    let buffer = ""
    let stderr = ""
    const timer = setTimeout(() => {
      proc.kill("SIGKILL")
      resume(Effect.fail(new Error(`the child did not finish: ${stderr}`)))
    }, 45_000)
    proc.stderr.on("data", (data: Buffer) => {
      stderr += data.toString()
    })
    proc.stdout.on("data", (data: Buffer) => {
      buffer += data.toString()
      let newline = buffer.indexOf("\n")
      while (newline >= 0) {
        const line = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>
        buffer = buffer.slice(newline + 1)
        lines.push(line)
        if (line.ready === true) proc.kill(signal)
        newline = buffer.indexOf("\n")
      }
    })
    proc.on("exit", (code, exitSignal) => {
      clearTimeout(timer)
      resume(Effect.succeed({ lines, code, signal: exitSignal }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      proc.kill("SIGKILL")
    })
  })

// Each test is a program of its own: they run side by side.
describe.concurrent("telemetry and signals (child processes)", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it.live(`${signal} under runMain: the sandbox is stopped and terminate says \`signal\``, () =>
      Effect.gen(function* () {
        const run = yield* runChild("sandbox", signal)
        const ready = run.lines.find((l) => l.ready === true)
        assert.isDefined(ready, JSON.stringify(run))
        const create = run.lines.find((l) => l._tag === "Create")
        const end = run.lines.find((l) => l._tag === "Terminate")
        assert.strictEqual(end?.reason, "signal", JSON.stringify(run.lines))
        assert.strictEqual(end?.sessionId, create?.sessionId)
        yield* assertGone([ready!.pid as number])
      })
    )
  }

  it.live("the watcher alone never swallows a signal: the process still ends by it", () =>
    Effect.gen(function* () {
      const run = yield* runChild("alone", "SIGTERM")
      assert.deepStrictEqual(run.lines, [{ ready: true }])
      assert.strictEqual(run.signal, "SIGTERM")
    })
  )

  it.live("with the program's own listener, the watcher marks the signal and steps aside", () =>
    Effect.gen(function* () {
      const run = yield* runChild("handled", "SIGTERM")
      assert.deepStrictEqual(run.lines, [{ ready: true }, { handled: true, marked: "SIGTERM", others: 1 }])
      assert.strictEqual(run.code, 0)
    })
  )
})

// ---- the Hub telemetry request ----------------------------------------------------------------

/** A loopback server that accepts connections and never answers: each socket stays open until the client drops it. */
const silentServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly server: net.Server; readonly sockets: Set<net.Socket>; seen: number }>(
    (resume) => {
      const sockets = new Set<net.Socket>()
      const state = { url: "", server: undefined as unknown as net.Server, sockets, seen: 0 }
      const server = net.createServer((socket) => {
        state.seen++
        sockets.add(socket)
        socket.on("data", () => {})
        socket.on("close", () => sockets.delete(socket))
      })
      state.server = server
      server.listen(0, "127.0.0.1", () => {
        state.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
        resume(Effect.succeed(state))
      })
    }
  ),
  ({ server, sockets }) =>
    Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
)

/** A loopback port nothing listens on. */
const closedPort = Effect.async<string>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(`http://127.0.0.1:${port}`)))
  })
})

const HubEnv = Layer.unwrapScoped(
  Effect.gen(function* () {
    const emulator = yield* Testing.make({ schedulingDelay: "50 millis" })
    return Layer.merge(emulatorLayer(emulator, false), Schedules.layer(fastSchedules))
  })
)

const emulator = Testing.HubEmulatorService

/** Waits until the emulator has recorded `count` telemetry pings in all. */
const pings = (count: number) =>
  eventually(
    Effect.flatMap(emulator, (emu) => emu.telemetry).pipe(
      Effect.filterOrFail(
        (all) => all.length >= count,
        (all) => new Error(`${all.length} telemetry pings, waiting for ${count}`)
      )
    )
  )

const pingCount = Effect.flatMap(emulator, (emu) => Effect.map(emu.telemetry, (all) => all.length))

/**
 * The HttpClient of the context, recording the path of each request into `paths` as it is issued. Once
 * a telemetry layer built on it has closed, every request it will ever send is there: absence is proved
 * without waiting for a request that might still be on its way.
 */
const recordingClient = (paths: Array<string>) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.mapRequest(client, (request) => {
        paths.push(new URL(request.url).pathname)
        return request
      })
    )
  )

layer(HubEnv, { excludeTestServices: true, timeout: "60 seconds" })("Telemetry.layerHub (emulated Hub)", (it) => {
  it.effect("each event is one HEAD with exactly the allowed fields in the User-Agent, and no token", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const start = yield* pingCount
      const marker = "marker-7f3a"
      const image = `registry.example/${marker}-image:latest`
      const secretValue = `secret-${marker}`
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({
          image,
          transport: "proxy",
          flavor: "cpu-basic",
          lifetime: "90s",
          forwardHfToken: true,
          env: { MARKER_ENV: marker },
          secrets: { MY_SECRET: secretValue },
          labels: { project: marker }
        })
        yield* sb.exec(["python3", "-c", `print("${marker}-command")`])
        yield* sb.files.write(`${marker}-dir/${marker}-file.txt`, `${marker}-contents`)
        return sb.id
      }).pipe(Effect.scoped, Effect.provide(Telemetry.layerHub({ endpoint: emu.url })), noOptOut)

      const all = (yield* pings(start + 2)).slice(start)
      assert.strictEqual(all.length, 2)
      const [create, end] = all
      assert.strictEqual(create!.path, "/api/telemetry/hf-sandbox/create")
      assert.strictEqual(end!.path, "/api/telemetry/hf-sandbox/terminate")
      const createUa =
        /^hf-sandbox\/0\.1\.0; session_id\/([0-9a-f]{32}); flavor\/cpu-basic; timeout\/90; forward_hf_token\/true$/
      const endUa = /^hf-sandbox\/0\.1\.0; session_id\/([0-9a-f]{32}); duration_s\/\d+(\.\d)?; reason\/scope$/
      assert.match(create!.userAgent, createUa)
      assert.match(end!.userAgent, endUa)
      assert.strictEqual(createUa.exec(create!.userAgent)![1], endUa.exec(end!.userAgent)![1])

      const requests = (yield* emu.requests).filter((r) => r.route === "telemetry").slice(-2)
      for (const ping of [...all, ...requests]) assert.isUndefined(ping.authorization)
      assert.deepStrictEqual(
        requests.map((r) => r.method),
        ["HEAD", "HEAD"]
      )
      const never = [marker, Redacted.value(emu.token), emu.user, emu.url, "127.0.0.1", "hf.jobs", id, "python"]
      for (const ping of all) for (const word of never) assert.notInclude(ping.userAgent + ping.path, word)
    })
  )

  it.effect("HF_ENDPOINT is the default endpoint; connect reports nothing", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const start = yield* pingCount
      const config = Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["HF_ENDPOINT", `${emu.url}/`]])))
      const sent: Array<string> = []
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy" })
        yield* pings(start + 1)
        yield* Effect.gen(function* () {
          const attached = yield* Sandbox.connect(sb.id)
          yield* attached.exec("true")
        }).pipe(Effect.scoped)
        assert.deepStrictEqual(sent, ["/api/telemetry/hf-sandbox/create"], "connect sent nothing")
        yield* sb.terminate
      }).pipe(Effect.scoped, Effect.provide(Telemetry.layerHub().pipe(Layer.provide(recordingClient(sent)))), config)
      // The layer has closed: these are all the requests it sent, and each reached the Hub.
      assert.deepStrictEqual(sent, ["/api/telemetry/hf-sandbox/create", "/api/telemetry/hf-sandbox/terminate"])
      const all = (yield* pings(start + 2)).slice(start)
      assert.deepStrictEqual(
        all.map((p) => p.path),
        ["/api/telemetry/hf-sandbox/create", "/api/telemetry/hf-sandbox/terminate"]
      )
      assert.match(all[0]!.userAgent, /; flavor\/cpu-basic; timeout\/none; forward_hf_token\/false$/)
      assert.match(all[1]!.userAgent, /; reason\/user$/)
    })
  )

  it.effect("a detached sandbox reports create, and terminate only when terminate is called", () =>
    Effect.gen(function* () {
      const kept = yield* Sandbox.make({ detach: true, transport: "proxy" }).pipe(Effect.scoped)
      assert.deepStrictEqual(
        (yield* Telemetry.memory).map((e) => e._tag),
        ["Create"]
      )
      yield* HfJobs.kill(kept.id)
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ detach: true, transport: "proxy" })
        yield* sb.terminate
      }).pipe(Effect.scoped)
      assert.deepStrictEqual(
        (yield* Telemetry.memory).map((e) => (e._tag === "Create" ? e._tag : e.reason)),
        ["Create", "Create", "user"]
      )
    }).pipe(Effect.provide(Telemetry.layerMemory))
  )

  it.effect("every opt-out variable, truthy in any spelling, means no request at all", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const start = yield* pingCount
      const cases = Telemetry.OPT_OUT_VARIABLES.flatMap((name, i) => [
        [name, ["1", "ON", "yes", "True"][i % 4]!] as const,
        [name, [" true ", "YES", "on", "1"][i % 4]!] as const
      ])
      const sent: Array<string> = []
      // Each case has its own configuration: they run side by side. Every spelling turns the layer off;
      // a sandbox then runs under the first spelling of each variable (a spelling changes only whether
      // the layer is on, which every case asserts, not what an off layer sends).
      yield* Effect.forEach(
        cases.entries(),
        ([index, [name, value]]) => {
          const optedOut = Effect.withConfigProvider(ConfigProvider.fromMap(new Map([[name, value]])))
          return Effect.gen(function* () {
            const telemetry = yield* Telemetry.Telemetry
            assert.isFalse(telemetry.enabled, `${name}=${value}`)
            if (index % 2 === 1) return
            // One HF Jobs sandbox, then local ones: the provider does not matter to the telemetry.
            const sb = yield* index === 0 ? Sandbox.make({ transport: "proxy" }) : Sandbox.make()
            yield* sb.exec("true")
          }).pipe(
            Effect.scoped,
            Effect.provide(index === 0 ? Layer.empty : Local),
            Effect.provide(Telemetry.layerHub({ endpoint: emu.url }).pipe(Layer.provide(recordingClient(sent)))),
            optedOut
          )
        },
        { concurrency: 4, discard: true }
      )
      // Every layer has closed: nothing was sent, nor will be.
      assert.deepStrictEqual(sent, [])
      assert.strictEqual(yield* pingCount, start)

      // Values that are not truthy leave telemetry on.
      for (const value of ["0", "false", "no", ""]) {
        const config = Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DO_NOT_TRACK", value]])))
        const enabled = yield* Effect.map(Telemetry.Telemetry, (t) => t.enabled).pipe(
          Effect.provide(Telemetry.layerHub({ endpoint: emu.url })),
          config
        )
        assert.isTrue(enabled, `DO_NOT_TRACK=${JSON.stringify(value)}`)
      }
    })
  )

  it.effect("traced: names and attributes of HF Jobs spans; no token and no command text in any attribute", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const { spans, tracer } = recordingTracer()
      const command = "echo traced-command-text-91c2"
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy" })
        assert.strictEqual((yield* sb.exec(command)).stdout, "traced-command-text-91c2\n")
        yield* HfJobs.list()
        yield* HfJobs.logs(sb.id).pipe(Stream.take(1), Stream.runDrain)
        yield* HfJobs.kill(sb.id)
        return sb.id
      }).pipe(Effect.scoped, Effect.withTracer(tracer))

      const job = yield* emu.job(id)
      const nonce = (job!.spec as { labels: Record<string, string> }).labels["hf-sandbox-nonce"]!
      const sandboxToken = Redacted.value(HfJobs.deriveSandboxToken(emu.token, nonce))
      assertNoSecret(spans, [Redacted.value(emu.token), sandboxToken, "traced-command-text"])

      const named = (name: string) => spans.filter((s) => s.name === name)
      const make = named("Sandbox.make")[0]!
      assert.deepInclude(attrs(make), { "sandbox.id": id, "sandbox.provider": "hf-jobs", "sandbox.transport": "proxy" })
      assert.deepInclude(attrs(named("HfJobs.provision")[0]!), { "sandbox.id": id, "sandbox.flavor": "cpu-basic" })
      assert.deepInclude(attrs(named("Sandbox.exec")[0]!), {
        "sandbox.id": id,
        "sandbox.transport": "proxy",
        "exec.shell": true,
        "exec.exit_code": 0
      })
      assert.isNumber(attrs(named("HfJobs.list")[0]!)["hfjobs.count"])
      assert.deepInclude(attrs(named("HfJobs.kill")[0]!), { "sandbox.id": id })
      assert.deepInclude(attrs(named("HfJobs.logs")[0]!), { "sandbox.id": id, "logs.follow": false })
      // The proxy's bearer and the sandbox token are recorded by the HttpClient's spans, redacted.
      const headers = spans.flatMap((s) =>
        [...s.attributes].filter(
          ([key]) => key === "http.request.header.x-sandbox-token" || key === "http.request.header.authorization"
        )
      )
      assert.isAbove(headers.length, 0)
      for (const [, value] of headers) assert.strictEqual(value, "<redacted>")
    })
  )
})

describe("a telemetry endpoint that hangs or refuses", () => {
  it.live("never delays nor fails a sandbox; the pending requests are dropped when the layer closes", () =>
    Effect.gen(function* () {
      const silent = yield* silentServer
      const layerScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        // A request bound far beyond the checks below: only the layer's release can end these requests.
        Telemetry.layerHub({ endpoint: silent.url, timeout: "60 seconds" }).pipe(
          Layer.provide(NodeHttpClient.layerUndici)
        ),
        layerScope
      ).pipe(noOptOut)
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        // The create request is out and unanswered, and the sandbox works all the same.
        yield* eventually(
          Effect.suspend(() => (silent.sockets.size >= 1 ? Effect.void : Effect.fail("no request yet")))
        )
        assert.strictEqual((yield* sb.exec("echo ok")).stdout, "ok\n")
        yield* sb.files.write("a.txt", "a")
      }).pipe(Effect.scoped, Effect.provide(Local), Effect.provide(context))
      // The sandbox is gone while both requests still wait for an answer that never comes.
      yield* eventually(
        Effect.suspend(() => (silent.sockets.size === 2 ? Effect.void : Effect.fail(`${silent.sockets.size} open`)))
      )
      assert.strictEqual(silent.seen, 2)
      yield* Scope.close(layerScope, Exit.void)
      yield* eventually(
        Effect.suspend(() => (silent.sockets.size === 0 ? Effect.void : Effect.fail(`${silent.sockets.size} open`))),
        "5 seconds"
      )
    }).pipe(Effect.scoped)
  )

  it.live("a request is abandoned after its bound even while the layer lives", () =>
    Effect.gen(function* () {
      const silent = yield* silentServer
      yield* Effect.gen(function* () {
        yield* Effect.scoped(Sandbox.make())
        // Generous waits (a loaded machine failed the 5 s one): what is checked is that the sockets close
        // while the layer still holds its sender, which only the 300 ms bound can do, not how soon.
        yield* eventually(
          Effect.suspend(() => (silent.seen === 2 ? Effect.void : Effect.fail("waiting"))),
          "25 seconds"
        )
        yield* eventually(
          Effect.suspend(() => (silent.sockets.size === 0 ? Effect.void : Effect.fail(`${silent.sockets.size} open`))),
          "25 seconds"
        )
      }).pipe(
        Effect.provide(Local),
        Effect.provide(
          Telemetry.layerHub({ endpoint: silent.url, timeout: "300 millis" }).pipe(
            Layer.provide(NodeHttpClient.layerUndici)
          )
        ),
        noOptOut
      )
    }).pipe(Effect.scoped)
  )

  it.live("a refused connection fails nothing", () =>
    Effect.gen(function* () {
      const url = yield* closedPort
      const result = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        return yield* sb.exec("echo ok")
      }).pipe(
        Effect.scoped,
        Effect.provide(Local),
        Effect.provide(Telemetry.layerHub({ endpoint: url }).pipe(Layer.provide(NodeHttpClient.layerUndici))),
        noOptOut
      )
      assert.strictEqual(result.stdout, "ok\n")
    })
  )
})

// ---- tracing ----------------------------------------------------------------------------------

/** A tracer that keeps every span Effect makes (the native ones), for assertions. */
const recordingTracer = () => {
  const spans: Array<Tracer.Span> = []
  const native = Effect.runSync(Effect.tracer)
  const tracer = Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })
  return { spans, tracer }
}

const attrs = (span: Tracer.Span): Record<string, unknown> => Object.fromEntries(span.attributes)

const assertNoSecret = (spans: ReadonlyArray<Tracer.Span>, secrets: ReadonlyArray<string>) => {
  for (const span of spans) {
    for (const [key, value] of span.attributes) {
      const text = typeof value === "string" ? value : JSON.stringify(value)
      for (const secret of secrets) assert.notInclude(`${key}=${text}`, secret, `${span.name} ${key}`)
      // The local sandbox token is 64 hex characters.
      assert.notMatch(`${text}`, /[0-9a-f]{64}/, `${span.name} ${key}`)
    }
  }
}

describe("tracing (local provider)", () => {
  it.live("every public operation has a span with the sandbox's id and provider, and no command text", () =>
    Effect.gen(function* () {
      const { spans, tracer } = recordingTracer()
      const local = fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-trace-"))
      fs.writeFileSync(path.join(local, "up.bin"), Buffer.alloc(300_000, 7))
      fs.mkdirSync(path.join(local, "tree"))
      fs.writeFileSync(path.join(local, "tree", "one.txt"), "one")
      const id = yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make()
        yield* sb.exec(["python3", "-c", "print('argv-secret-text')"])
        yield* sb.exec("echo shell-secret-text | cat", { timeout: "30 seconds", stdin: "stdin-secret" })
        yield* sb.execStream(["sh", "-c", "echo stream-secret-text"]).pipe(Stream.runDrain)
        const proc = yield* sb.spawn(["sleep", "30"], { tag: "bg" })
        yield* sb.processes
        yield* proc.output().pipe(Stream.runDrain)
        yield* proc.kill("SIGTERM")
        yield* proc.wait
        yield* sb.files.write("dir/a.txt", "hello")
        yield* sb.files.read("dir/a.txt")
        yield* sb.files.readText("dir/a.txt")
        yield* sb.files.stat("dir/a.txt")
        yield* sb.files.exists("dir/nope.txt")
        yield* sb.files.list("dir", { recursive: true })
        yield* sb.files.mkdir("dir2")
        yield* sb.files.rename("dir/a.txt", "dir2/b.txt")
        yield* sb.files.chmod("dir2/b.txt", 0o600)
        yield* sb.files.symlink("dir2/link", "b.txt")
        yield* sb.files.readStream("dir2/b.txt").pipe(Stream.runDrain)
        yield* sb.files.upload(path.join(local, "up.bin"), "up.bin", { rangeSize: 65536, parallelism: 3 })
        yield* sb.files.download("up.bin", path.join(local, "down.bin"))
        yield* sb.files.uploadDir(path.join(local, "tree"), "tree")
        yield* sb.files.downloadDir("tree", path.join(local, "tree-back"))
        yield* sb.files.remove("dir2", { recursive: true })
        yield* sb.logs().pipe(Stream.runDrain)
        yield* sb.terminate
        return sb.id
      }).pipe(
        Effect.scoped,
        Effect.provide(Local),
        Effect.provide(
          Telemetry.layerHub({ endpoint: yield* closedPort }).pipe(Layer.provide(NodeHttpClient.layerUndici))
        ),
        noOptOut,
        Effect.withTracer(tracer)
      )
      fs.rmSync(local, { recursive: true, force: true })

      const ours = spans.filter((s) => s.name.startsWith("Sandbox."))
      const names = new Set(ours.map((s) => s.name))
      for (const name of [
        "Sandbox.make",
        "Sandbox.exec",
        "Sandbox.execStream",
        "Sandbox.spawn",
        "Sandbox.processes",
        "Sandbox.process.output",
        "Sandbox.process.kill",
        "Sandbox.process.wait",
        "Sandbox.files.write",
        "Sandbox.files.read",
        "Sandbox.files.readText",
        "Sandbox.files.stat",
        "Sandbox.files.exists",
        "Sandbox.files.list",
        "Sandbox.files.mkdir",
        "Sandbox.files.rename",
        "Sandbox.files.chmod",
        "Sandbox.files.symlink",
        "Sandbox.files.readStream",
        "Sandbox.files.upload",
        "Sandbox.files.download",
        "Sandbox.files.uploadDir",
        "Sandbox.files.downloadDir",
        "Sandbox.files.remove",
        "Sandbox.logs",
        "Sandbox.terminate"
      ]) {
        assert.isTrue(names.has(name), `no ${name} span`)
      }
      for (const span of ours) {
        assert.strictEqual(span.status._tag, "Ended", span.name)
        assert.deepInclude(attrs(span), { "sandbox.id": id, "sandbox.provider": "local" }, span.name)
      }
      assertNoSecret(spans, ["secret-text", "stdin-secret"])

      const named = (name: string) => ours.filter((s) => s.name === name)
      const [argv, shell] = named("Sandbox.exec")
      assert.deepInclude(attrs(argv!), {
        "exec.shell": false,
        "exec.argc": 3,
        "exec.exit_code": 0,
        "exec.truncated": false
      })
      assert.deepInclude(attrs(shell!), {
        "exec.shell": true,
        "exec.timeout_ms": 30_000,
        "exec.stdin_bytes": 12,
        "exec.exit_code": 0
      })
      // exec has one span of its own, not an execStream span inside it.
      assert.strictEqual(named("Sandbox.execStream").length, 1)
      assert.deepInclude(attrs(named("Sandbox.execStream")[0]!), { "exec.argc": 3, "exec.exit_code": 0 })
      assert.deepInclude(attrs(named("Sandbox.spawn")[0]!), {
        "exec.argc": 2,
        "process.id": named("Sandbox.process.kill")[0]!.attributes.get("process.id")
      })
      assert.deepInclude(attrs(named("Sandbox.process.kill")[0]!), { "process.signal": "SIGTERM" })
      assert.deepInclude(attrs(named("Sandbox.files.upload")[0]!), {
        "files.bytes": 300_000,
        "files.parallelism": 3,
        "files.range_size": 65536
      })
      assert.deepInclude(attrs(named("Sandbox.files.download")[0]!), { "files.bytes": 300_000 })
      assert.deepInclude(attrs(named("Sandbox.files.readStream")[0]!), { "files.bytes": 5 })
      assert.deepInclude(attrs(named("Sandbox.files.uploadDir")[0]!), { "files.count": 1, "files.bytes": 3 })
      assert.deepInclude(attrs(named("Sandbox.files.downloadDir")[0]!), { "files.count": 1, "files.bytes": 3 })
      assert.deepInclude(attrs(named("Sandbox.files.list")[0]!), { "files.recursive": true, "files.count": 1 })
      // A stream's span lasts until the stream is done, not just until it is built.
      const stream = named("Sandbox.execStream")[0]!
      if (stream.status._tag === "Ended") {
        assert.isTrue(stream.status.endTime - stream.status.startTime > 1_000_000n, "execStream span ended at once")
      }
      // The telemetry pings are not the user's operations: they stay out of the traces.
      assert.isFalse(spans.some((s) => String(s.attributes.get("url.full") ?? "").includes("/api/telemetry/")))
    })
  )
})
