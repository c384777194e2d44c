/**
 * The quick start: create a sandbox on the local provider, use it, and tear it down.
 *
 *   npm install && npm run demo
 *
 * Swap `LocalSandbox.layer()` for the HF Jobs provider to run the same program in a container on
 * Hugging Face hardware.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"

/** Runs one step and prints what it returned, with how long it took. */
const step = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>, show: (a: A) => string) =>
  Effect.timed(effect).pipe(
    Effect.tap(([duration, value]) =>
      Console.log(`${name.padEnd(28)} ${Duration.toMillis(duration).toFixed(1).padStart(7)} ms   ${show(value)}`)
    ),
    Effect.map(([, value]) => value)
  )

const program = Effect.gen(function* () {
  yield* Console.log("hf-sandbox quick start (local provider)\n")
  const sb = yield* step("create sandbox", Sandbox.make({ image: "python:3.12" }), (sb) => sb.id)
  yield* step("python3 -c 'print(1+1)'", sb.exec(["python3", "-c", "print(1+1)"]), (r) => r.stdout.trim())
  yield* step("shell pipeline", sb.exec("printf 'banana\\napple\\ncherry\\n' | sort | head -n 2 | tr '\\n' ' '"), (r) =>
    r.stdout.trim()
  )
  yield* step("write hello.txt", sb.files.write("hello.txt", "hello from the sandbox\n"), () => "ok")
  yield* step("read hello.txt", sb.files.readText("hello.txt"), (text) => JSON.stringify(text))
  yield* step("terminate", sb.terminate, () => "done")
})

const Live = LocalSandbox.layer().pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(NodeHttpClient.layerUndici))

program.pipe(Effect.scoped, Effect.provide(Live), NodeRuntime.runMain)
