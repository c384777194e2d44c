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
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Telemetry from "../../Telemetry.js"
import * as Background from "../background.js"
import * as Providers from "../providers.js"
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

/** The provider an options object asks for, built once per distinct set of provider options. */
export const providerOf = (options: { readonly provider?: string | undefined }, inferred?: Providers.Adapter) => {
  const adapter =
    options.provider === undefined ? (inferred ?? Providers.defaultAdapter) : Providers.byName(options.provider)
  if (adapter === undefined) {
    const rejected = Promise.reject(
      new StartError({
        provider: String(options.provider),
        reason: "InvalidOptions",
        detail: `unknown provider ${JSON.stringify(options.provider)}: use provider: ${Providers.adapters
          .map((a) =>
            a === Providers.defaultAdapter
              ? `${JSON.stringify(a.name)} (${a.title}, the default)`
              : JSON.stringify(a.name)
          )
          .join(" or ")}`
      })
    )
    // Awaited later, or not at all when the call is aborted first: never an unhandled rejection.
    rejected.catch(() => undefined)
    return rejected
  }
  const picked: Record<string, unknown> = {}
  for (const key of adapter.optionKeys) {
    const value = (options as Record<string, unknown>)[key]
    if (value !== undefined) picked[key] = value
  }
  if (typeof picked.token === "string") picked.token = Redacted.make(picked.token)
  // The key holds no secret: a token is represented by its hash.
  const key = JSON.stringify([
    adapter.name,
    ...adapter.optionKeys.map((k) => {
      const value = picked[k]
      if (value === undefined) return null
      if (Redacted.isRedacted(value))
        return createHash("sha256")
          .update(String(Redacted.value(value)))
          .digest("hex")
      return Array.isArray(value) || typeof value === "boolean" ? value : String(value)
    })
  ])
  return providerContext(key, () => adapter.layer(picked))
}

/** Whether the usage telemetry of the original hf-sandbox applies to the provider an options object asks for. */
const telemetryApplies = (options: { readonly provider?: string | undefined }): boolean =>
  (options.provider === undefined ? Providers.defaultAdapter : Providers.byName(options.provider))?.telemetry ?? false

// ---------------------------------------------------------------------------------------------------
// Telemetry: the facade is one of the original hf-sandbox's own surfaces, and sends its two anonymous
// events per sandbox made on HF Jobs (see docs/telemetry.md), unless an opt-out variable is set when
// the sandbox is created. One sender per endpoint, for the process's life. Its requests and their
// bounds never keep the process alive: a program whose work is done exits at once, ping or not.

const telemetries = new Map<string, Promise<Context.Context<Telemetry.Telemetry>>>()

const telemetryOf = (endpoint: string | undefined): Promise<Context.Context<Telemetry.Telemetry>> | undefined => {
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

/** The telemetry sender for a sandbox an options object makes: none when it does not apply or is opted out. */
export const telemetryFor = (options: {
  readonly provider?: string | undefined
  readonly endpoint?: string | undefined
}): Promise<Context.Context<Telemetry.Telemetry>> | undefined =>
  telemetryApplies(options) ? telemetryOf(options.endpoint) : undefined
