/**
 * `npm run test:live`: the live conformance suite (test/live/suite.ts) against the real Hugging Face Hub,
 * `HF_ENDPOINT` (default https://huggingface.co) with your token. It starts two `cpu-basic` sandboxes (one
 * per transport, a few minutes each at most, cancelled at the end) and prints a report to send back.
 *
 * Options (environment): the token is found as huggingface_hub finds it (HF_TOKEN, or your `hf auth login`); HF_SANDBOX_LIVE_NAMESPACE (default: the
 * token's user); HF_SANDBOX_LIVE_IMAGE (default python:3.12-slim); HF_SANDBOX_LIVE_FLAVOR (default
 * cpu-basic); HF_SANDBOX_LIVE_MIB (default 64).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as HfConfig from "../src/internal/hfJobs/config.js"
import * as Credentials from "../src/internal/hfJobs/credentials.js"
import * as Live from "../test/live/suite.js"

const clean = (value: string | undefined) => {
  const v = value?.trim()
  return v === undefined || v === "" ? undefined : v
}

const program = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  // The environment as the library reads it: HF_ENDPOINT and what the token discovery needs.
  const config = yield* HfConfig.resolve({})
  const env = yield* config.discovery
  const endpoint = config.endpoint
  // The token as the library and huggingface_hub find it: OIDC, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, the token file.
  const credential = yield* Credentials.resolve({
    fs,
    env,
    endpoint,
    userAgent: "hf-sandbox-live",
    explicit: undefined
  }).pipe(
    Effect.catchTag("StartError", (error) =>
      Effect.sync(() => {
        console.error(
          `test:live needs a Hugging Face token with write access to Jobs: ${error.detail}\n` +
            "It starts two cpu-basic jobs on your account for a few minutes (billed as such) and cancels them."
        )
        process.exit(2)
      })
    )
  )
  const token = credential.token
  const hf = HfJobs.layer({ token, endpoint }).pipe(Layer.provideMerge(NodeContext.layer))
  const layer = Layer.mergeAll(hf, NodeHttpClient.layerUndici)
  const namespace =
    clean(process.env.HF_SANDBOX_LIVE_NAMESPACE) ??
    (yield* Effect.tryPromise(async () => {
      const r = await fetch(`${endpoint.replace(/\/+$/, "")}/api/whoami-v2`, {
        headers: { authorization: `Bearer ${Redacted.value(token)}` }
      })
      if (!r.ok) throw new Error(`whoami answered ${r.status}: run \`hf auth login\` again or check HF_TOKEN`)
      return ((await r.json()) as { name: string }).name
    }))
  const report = yield* Live.run({
    name: new URL(endpoint).host,
    endpoint,
    token,
    namespace,
    image: clean(process.env.HF_SANDBOX_LIVE_IMAGE) ?? "python:3.12-slim",
    flavor: clean(process.env.HF_SANDBOX_LIVE_FLAVOR) ?? "cpu-basic",
    roundTripBytes: Number(clean(process.env.HF_SANDBOX_LIVE_MIB) ?? "64") * 1024 * 1024,
    execSamples: 20,
    startTimeout: "10 minutes"
  }).pipe(Effect.provide(layer))
  console.log(Live.format(report))
  if (report.checks.some((check) => !check.ok)) process.exitCode = 1
})

program.pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
