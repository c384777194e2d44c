/**
 * The providers and telemetry senders of the Promise facade: one per distinct set of options, built once
 * on the shared runtime and kept for the process's life.
 */
import { createHash } from "node:crypto"
import type * as NodeContext from "@effect/platform-node/NodeContext"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as HfJobs from "../../HfJobs.js"
import * as LocalSandbox from "../../LocalSandbox.js"
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Telemetry from "../../Telemetry.js"
import * as Background from "../background.js"
import { runtime } from "./runtime.js"

// ---------------------------------------------------------------------------------------------------
// Providers: one per distinct set of provider options, built once on the shared runtime, so that the
// HF provider resolves its token and asks `whoami` once, not for every sandbox.

export type ProviderContext = Context.Context<SandboxProvider.SandboxProvider>

const providers = new Map<string, Promise<ProviderContext>>()
/** Where the providers and telemetry senders live: for the process's life. */
const providersScope: Scope.CloseableScope = Effect.runSync(Scope.make())

const providerContext = (
  key: string,
  layer: () => Layer.Layer<SandboxProvider.SandboxProvider, never, NodeContext.NodeContext>
): Promise<ProviderContext> => {
  let context = providers.get(key)
  if (context === undefined) {
    context = runtime.runPromise(Layer.buildWithScope(layer(), providersScope))
    context.catch(() => providers.delete(key))
    providers.set(key, context)
  }
  return context
}

/** The options each provider's layer takes; everything else goes to `Sandbox.make`/`connect`. */
const PROVIDER_KEYS = {
  hf: ["token", "endpoint", "jobsDomain", "publicDns"],
  local: ["python", "serverScript", "tempDir", "stopTimeout", "stateDir"]
} as const

/** The provider an options object asks for, built once per distinct set of provider options. */
export const providerOf = (
  options: { readonly provider?: "hf" | "local" | undefined },
  inferred: "hf" | "local" = "hf"
): Promise<ProviderContext> => {
  const name = options.provider ?? inferred
  if (!Object.hasOwn(PROVIDER_KEYS, name)) {
    const rejected = Promise.reject(
      new StartError({
        provider: String(name),
        reason: "InvalidOptions",
        detail: `unknown provider ${JSON.stringify(name)}: use provider: "hf" (Hugging Face Jobs, the default) or "local"`
      })
    )
    // Awaited later, or not at all when the call is aborted first: never an unhandled rejection.
    rejected.catch(() => undefined)
    return rejected
  }
  const picked: Record<string, unknown> = {}
  for (const key of PROVIDER_KEYS[name]) {
    const value = (options as Record<string, unknown>)[key]
    if (value !== undefined) picked[key] = value
  }
  if (typeof picked.token === "string") picked.token = Redacted.make(picked.token)
  // The key holds no secret: a token is represented by its hash.
  const key = JSON.stringify([
    name,
    ...PROVIDER_KEYS[name].map((k) => {
      const value = picked[k]
      if (value === undefined) return null
      if (Redacted.isRedacted(value))
        return createHash("sha256")
          .update(String(Redacted.value(value)))
          .digest("hex")
      return Array.isArray(value) || typeof value === "boolean" ? value : String(value)
    })
  ])
  return providerContext(key, () =>
    name === "local" ? LocalSandbox.layer(picked as LocalSandbox.Options) : HfJobs.layer(picked as HfJobs.Options)
  )
}

// ---------------------------------------------------------------------------------------------------
// Telemetry: the facade is one of the original hf-sandbox's own surfaces, and sends its two anonymous
// events per sandbox made on HF Jobs (see docs/telemetry.md), unless an opt-out variable is set when
// the sandbox is created. One sender per endpoint, for the process's life. Its requests and their
// bounds never keep the process alive: a program whose work is done exits at once, ping or not.

const telemetries = new Map<string, Promise<Context.Context<Telemetry.Telemetry>>>()

export const telemetryOf = (
  endpoint: string | undefined
): Promise<Context.Context<Telemetry.Telemetry>> | undefined => {
  if (Effect.runSync(Telemetry.optedOut)) return undefined
  const key = endpoint ?? ""
  let context = telemetries.get(key)
  if (context === undefined) {
    const layer = Telemetry.layerHub(endpoint !== undefined ? { endpoint } : {}).pipe(
      Layer.provide(Background.layerHttpClient)
    )
    context = runtime.runPromise(Layer.buildWithScope(layer, providersScope).pipe(Effect.withClock(Background.clock)))
    context.catch(() => telemetries.delete(key))
    telemetries.set(key, context)
  }
  return context
}
