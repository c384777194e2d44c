/**
 * Errors that tell the truth: bad options are one typed error naming the option and the value, caught
 * before anything is sent; a server that refuses the sandbox token is reported at its first answer.
 * Real local servers over loopback HTTP.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import type { StartError } from "hf-sandbox/SandboxError"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Testing from "hf-sandbox/testing"
import { emulatorLayer } from "./support/hub.js"
import { localLayer } from "./support/local.js"
import { closedPort } from "./support/ports.js"

const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

/** The error `effect` fails with; a success fails the test. */
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flip(effect).pipe(
    Effect.catchAll((value) => Effect.dieMessage(`expected a failure, got a success: ${String(value)}`))
  )

layer(SharedSandbox, { excludeTestServices: true })("validation of a running sandbox's calls", (it) => {
  it.effect("maxOutputBytes ≤ 0 or fractional is an InvalidArgumentError naming it and the value", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      for (const bad of [-1, 0, 1.5]) {
        const error = yield* failure(sb.exec("echo hi", { maxOutputBytes: bad }))
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.include(error.message, "maxOutputBytes")
        assert.include(error.message, String(bad))
      }
    })
  )

  it.effect("spawn's bufferBytes outside 1 byte..64 MiB is an InvalidArgumentError naming it and the value", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      for (const bad of [0, -1, 1.5, 64 * 1024 * 1024 + 1, Number.NaN, "1024" as unknown as number]) {
        const error = yield* failure(sb.spawn("touch ran-with-bad-buffer", { bufferBytes: bad }))
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.include(error.message, "bufferBytes")
        assert.include(error.message, typeof bad === "string" ? JSON.stringify(bad) : String(bad))
        assert.include(error.message, "64 MiB")
      }
      assert.isFalse(yield* sb.files.exists("ran-with-bad-buffer"))
      // The bounds themselves are taken, and the buffer is what the sandbox keeps of the output.
      const kept = yield* sb.spawn(["printf", "0123456789"], { bufferBytes: 4 })
      yield* kept.wait
      const output = yield* kept.output().pipe(
        Stream.filter((e) => e._tag === "Stdout"),
        Stream.map((e) => ("text" in e ? e.text : "")),
        Stream.runCollect
      )
      assert.strictEqual(Array.from(output).join(""), "6789")
      const largest = yield* sb.spawn("true", { bufferBytes: 64 * 1024 * 1024 })
      assert.strictEqual((yield* largest.wait).exitCode, 0)
    })
  )

  it.effect("an env name with a space or = at exec is an InvalidArgumentError naming it; nothing runs", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      for (const name of ["MY VAR", "A=B", "1ABC", ""]) {
        const error = yield* failure(sb.exec("touch ran-with-bad-env", { env: { [name]: "x" } }))
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.include(error.message, "env")
        assert.include(error.message, JSON.stringify(name))
      }
      const spawned = yield* failure(sb.spawn("true", { env: { "MY VAR": "x" } }))
      assert.strictEqual(spawned._tag, "InvalidArgumentError")
      assert.isFalse(yield* sb.files.exists("ran-with-bad-env"))
    })
  )

  it.effect("a bad exec timeout names the option and the value; zero or negative is refused", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const bad = yield* failure(sb.exec("true", { timeout: "soon" as never }))
      assert.strictEqual(bad._tag, "InvalidArgumentError")
      assert.include(bad.message, "timeout")
      assert.include(bad.message, '"soon"')
      const zero = yield* failure(sb.exec("true", { timeout: 0 }))
      assert.strictEqual(zero._tag, "InvalidArgumentError")
      assert.include(zero.message, "timeout")
    })
  )

  it.effect("a sub-millisecond exec timeout is rounded up to 1 ms: the command is killed, never flaky", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const r = yield* sb.exec("sleep 5", { timeout: "100 micros" })
      assert.isTrue(r.timedOut)
    })
  )

  it.effect("ExecResult carries the raw bytes; the string form replaces invalid UTF-8", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      const r = yield* sb.exec(["printf", "a\\377b"])
      assert.deepStrictEqual([...r.stdoutBytes], [0x61, 0xff, 0x62])
      assert.strictEqual(r.stdout, "a\uFFFDb")
      assert.strictEqual(r.stderrBytes.length, 0)
    })
  )

  it.effect("chmod with a fraction or out of range is an InvalidArgumentError naming the mode", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      yield* sb.files.write("chmod-me.txt", "x")
      for (const bad of [1.5, -1, 0o10000]) {
        const error = yield* failure(sb.files.chmod("chmod-me.txt", bad))
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.include(error.message, "mode")
        assert.include(error.message, String(bad))
      }
    })
  )

  it.effect("a rename onto a directory names the target; a directory onto a file says so", () =>
    Effect.gen(function* () {
      const sb = yield* Sandbox.Sandbox
      yield* sb.files.write("rename-src.txt", "a")
      yield* sb.files.write("rename-full/x", "x")
      const onto = yield* failure(sb.files.rename("rename-src.txt", "rename-full"))
      assert.strictEqual(onto._tag, "IsDirectoryError")
      assert.strictEqual((onto as { path?: string }).path, "rename-full")
      assert.match(onto.message, /^rename-full is a directory/)
      yield* sb.files.mkdir("rename-dir")
      const dirOntoFile = yield* failure(sb.files.rename("rename-dir", "rename-src.txt"))
      assert.strictEqual(dirOntoFile._tag, "BadRequestError")
      assert.notInclude(dirOntoFile.message, "a component of the path")
      assert.include(dirOntoFile.message, "not a directory")
    })
  )
})

describe("validation at make", () => {
  const Live = localLayer()
  const invalid = (options: Sandbox.MakeOptions) =>
    failure(Effect.scoped(Sandbox.make(options))).pipe(Effect.provide(Live)) as Effect.Effect<StartError>

  it.live("idleTimeout ≤ 0, lifetime 0, bad durations and bad env names are InvalidOptions naming them", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[Sandbox.MakeOptions, string, string]> = [
        [{ idleTimeout: 0 }, "idleTimeout", "0"],
        [{ idleTimeout: -5 }, "idleTimeout", "-5"],
        [{ lifetime: 0 }, "lifetime", "0"],
        [{ lifetime: "0s" }, "lifetime", '"0s"'],
        [{ lifetime: "ten minutes" }, "lifetime", '"ten minutes"'],
        // The deprecated alias is checked under its own name.
        [{ timeout: "0s" }, "timeout", '"0s"'],
        // Two different limits: both options and both values named.
        [
          { lifetime: "30m", timeout: "1h" },
          "lifetime: 30m, but its deprecated alias timeout is 1h",
          "give only lifetime"
        ],
        [{ startTimeout: "3 mins" as never }, "startTimeout", '"3 mins"'],
        [{ timeouts: { request: "x" as never } }, "timeouts.request", '"x"'],
        [{ env: { "MY VAR": "x" } }, "env", '"MY VAR"'],
        [{ env: { "A=B": "x" } }, "env", '"A=B"']
      ]
      for (const [options, option, value] of cases) {
        const error = yield* invalid(options)
        assert.strictEqual(error._tag, "StartError")
        assert.strictEqual(error.reason, "InvalidOptions", error.message)
        assert.include(error.message, option)
        assert.include(error.message, value)
      }
    })
  )
})

describe("a server that refuses the sandbox token", () => {
  it.live("is StartError Unauthorized (its cause an AuthError) at the first answer, not after startTimeout", () =>
    Effect.gen(function* () {
      // A real server, reached with another token: what `connect` meets when the token is wrong.
      const real = yield* Sandbox.make()
      const endpoint = Effect.succeed({
        id: "wrong-token",
        provider: "wrong-token",
        baseUrl: `http://127.0.0.1:${real.details.port}`,
        token: Redacted.make("not-the-token"),
        died: Effect.never,
        details: {}
      })
      const provider = SandboxProvider.SandboxProvider.of({
        name: "wrong-token",
        provision: () => endpoint,
        connect: () => endpoint
      })
      // startTimeout is far above any test bound: only an answer at the first refusal passes.
      const error = yield* failure(
        Sandbox.make({ startTimeout: "10 minutes" }).pipe(
          Effect.provideService(SandboxProvider.SandboxProvider, provider)
        )
      )
      assert.strictEqual(error.reason, "Unauthorized", error.message)
      assert.strictEqual((error.cause as { _tag?: string } | undefined)?._tag, "AuthError")
      assert.include(error.message, "token")
      assert.notInclude(error.message, "not-the-token")
      // connect starts nothing: it says so.
      const attach = yield* failure(
        Sandbox.connect("wrong-token", { startTimeout: "10 minutes" }).pipe(
          Effect.provideService(SandboxProvider.SandboxProvider, provider)
        )
      )
      assert.strictEqual(attach.reason, "Unauthorized", attach.message)
      assert.match(attach.message, /^Could not attach to sandbox wrong-token/)
    }).pipe(Effect.scoped, Effect.provide(localLayer()))
  )
})

describe("an unreachable Hub", () => {
  it.live("is StartError HubUnreachable naming the endpoint and the refused connection", () =>
    Effect.gen(function* () {
      const endpoint = `http://127.0.0.1:${yield* Effect.promise(closedPort)}`
      const jobs = HfJobs.layer({ endpoint, token: Redacted.make("hf_unreachable_test_token") }).pipe(
        Layer.provideMerge(NodeContext.layer),
        Layer.merge(NodeHttpClient.layerUndici)
      )
      const error = yield* failure(Effect.scoped(Sandbox.make()).pipe(Effect.provide(jobs)))
      // Listing starts nothing: it says what could not be done.
      const listing = yield* failure(HfJobs.list().pipe(Effect.provide(jobs)))
      assert.match(listing.message, /^Could not list sandboxes on the hf-jobs provider \(HubUnreachable\)/)
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.reason, "HubUnreachable", error.message)
      assert.include(error.message, endpoint)
      assert.include(error.message, "ECONNREFUSED")
      // The advice names the layer's option, in the Effect API's terms.
      for (const { message } of [error, listing]) {
        assert.include(
          message,
          "Check the network, and HF_ENDPOINT (or the `endpoint` option of HfJobs.layer) if you set one."
        )
      }
      assert.notInclude(error.message, "hf_unreachable_test_token")
    })
  )
})

describe("HF Jobs lifetime 0", () => {
  it.live("is InvalidOptions naming lifetime, and no job is created", () =>
    Effect.gen(function* () {
      const emulator = yield* Testing.make({})
      const error = yield* failure(
        Effect.scoped(Sandbox.make({ lifetime: 0 })).pipe(Effect.provide(emulatorLayer(emulator, false)))
      )
      assert.strictEqual(error._tag, "StartError")
      assert.strictEqual(error.reason, "InvalidOptions", error.message)
      assert.include(error.message, "lifetime")
      const requests = yield* emulator.requests
      assert.strictEqual(requests.filter((r) => r.route === "create").length, 0)
    }).pipe(Effect.scoped)
  )
})
