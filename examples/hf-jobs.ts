/**
 * The quick start on Hugging Face Jobs: the same program as `quickstart.ts`, in a container on HF
 * hardware. Needs a Hugging Face token with write access (`hf auth login`, or HF_TOKEN) and credits
 * for Jobs; a cpu-basic sandbox costs about a cent an hour and is cancelled when the program ends.
 *
 *   npx tsx examples/hf-jobs.ts                 # Cloudflare quick tunnel (default transport)
 *   npx tsx examples/hf-jobs.ts proxy           # the HF Jobs proxy
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"

const transport = process.argv[2] === "proxy" ? "proxy" : "tunnel"

const step = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>, show: (a: A) => string) =>
  Effect.timed(effect).pipe(
    Effect.tap(([duration, value]) =>
      Console.log(`${name.padEnd(28)} ${Duration.toMillis(duration).toFixed(0).padStart(7)} ms   ${show(value)}`)
    ),
    Effect.map(([, value]) => value)
  )

const program = Effect.gen(function* () {
  yield* Console.log(`hf-sandbox on HF Jobs (${transport} transport)\n`)
  const sb = yield* step(
    "create sandbox",
    Sandbox.make({ image: "python:3.12", flavor: "cpu-basic", lifetime: "30m", transport }),
    (sb) => `${sb.id}  ${sb.details.url}`
  )
  yield* step("python3 -c 'print(1+1)'", sb.exec(["python3", "-c", "print(1+1)"]), (r) => r.stdout.trim())
  yield* step("uname -a", sb.exec("uname -a"), (r) => r.stdout.trim())
  yield* step("write hello.txt", sb.files.write("/tmp/hello.txt", "hello from HF Jobs\n"), () => "ok")
  yield* step("read hello.txt", sb.files.readText("/tmp/hello.txt"), (text) => JSON.stringify(text))
  yield* step("terminate (cancel the job)", sb.terminate, () => "done")
})

const Live = HfJobs.layer().pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(NodeHttpClient.layerUndici))

program.pipe(Effect.scoped, Effect.provide(Live), NodeRuntime.runMain)
