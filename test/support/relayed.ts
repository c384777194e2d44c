/**
 * The local provider with every sandbox's server reached through a TCP relay of its own
 * (test/support/relay.ts), for tests that cut, refuse or swallow a sandbox's connections. Relays are
 * found by sandbox id, so the tests of a file can run side by side.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import { localLayer } from "./local.js"
import { type Relay, startRelay } from "./relay.js"

export interface Relayed {
  /** Provides `SandboxProvider` (and what `Sandbox.make` needs). */
  readonly layer: Layer.Layer<Layer.Layer.Success<ReturnType<typeof localLayer>>>
  /** The relay in front of a sandbox's server. */
  readonly relayOf: (sb: Sandbox.Sandbox) => Relay
  /** The server behind a sandbox's relay: its own URL and token. */
  readonly serverOf: (sb: Sandbox.Sandbox) => { readonly url: string; readonly token: string }
}

export const relayed = (): Relayed => {
  const relays = new Map<string, Relay>()
  const servers = new Map<string, { readonly url: string; readonly token: string }>()
  const layer = Layer.effect(
    SandboxProvider.SandboxProvider,
    Effect.map(SandboxProvider.SandboxProvider, (local) => ({
      ...local,
      provision: (spec: SandboxProvider.Spec) =>
        Effect.flatMap(local.provision(spec), (endpoint) =>
          Effect.acquireRelease(
            Effect.promise(() => {
              const url = new URL(endpoint.baseUrl)
              return startRelay({ host: url.hostname, port: Number(url.port) })
            }),
            (relay) => Effect.promise(relay.close)
          ).pipe(
            Effect.tap((relay) => {
              relays.set(endpoint.id, relay)
              servers.set(endpoint.id, { url: endpoint.baseUrl, token: Redacted.value(endpoint.token) })
            }),
            Effect.map((relay): SandboxProvider.Endpoint => ({ ...endpoint, baseUrl: relay.url, directReads: false }))
          )
        )
    }))
  ).pipe(Layer.provideMerge(localLayer()))
  return { layer, relayOf: (sb) => relays.get(sb.id)!, serverOf: (sb) => servers.get(sb.id)! }
}
