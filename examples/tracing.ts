/**
 * Tracing: every public operation of hf-sandbox runs in an Effect span (`Sandbox.make`,
 * `Sandbox.exec`, `Sandbox.files.write`, …) with attributes such as the sandbox's id, its provider and
 * transport, a command's argument count and exit code, or a transfer's byte count — never a token nor
 * the text of a command. Without an exporter they cost little and go nowhere; this program exports them
 * with `@effect/opentelemetry` to the console, on the local provider:
 *
 *   npx tsx examples/tracing.ts
 *
 * For a real backend, swap `ConsoleSpanExporter` for `OTLPTraceExporter` from
 * `@opentelemetry/exporter-trace-otlp-http` (or use `Otlp.layer` from `@effect/opentelemetry`).
 * The HttpClient's own spans (`http.client POST`, …) appear as children, their token headers redacted.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"

const Tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "hf-sandbox-example" },
  spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter())
}))

const Live = LocalSandbox.layer().pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(NodeHttpClient.layerUndici))

const program = Effect.gen(function* () {
  const sb = yield* Sandbox.make()
  const r = yield* sb.exec(["python3", "-c", "print(1+1)"])
  yield* sb.files.write("hello.txt", "hello from a traced sandbox\n")
  yield* sb.files.readText("hello.txt")
  yield* Effect.log(`1+1 = ${r.stdout.trim()} in sandbox ${sb.id}`)
}).pipe(Effect.scoped, Effect.withSpan("example.tracing"))

program.pipe(Effect.provide(Live), Effect.provide(Tracing), NodeRuntime.runMain)
