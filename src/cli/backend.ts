/**
 * The provider an invocation runs on (chosen in action.ts from the registry of providers), with what
 * the invocation's environment says about it: the state directories, and the emulator's route.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Providers from "../internal/providers.js"
import * as StateHome from "../internal/stateHome.js"
import * as EmulatorRouter from "../internal/testing/router.js"

const httpLayer = (route: string | undefined) =>
  route === undefined
    ? NodeHttpClient.layerUndici
    : Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, EmulatorRouter.mapClient(route))).pipe(
        Layer.provide(NodeHttpClient.layerUndici)
      )

type Env = Readonly<Record<string, string | undefined>>

/**
 * Everything a command needs for the chosen provider: the provider, an HttpClient, Node services. `env`
 * is the invocation's environment (the state directories and the emulator route are read from it).
 */
export const layer = (adapter: Providers.Adapter, env: Env = process.env) => {
  const route = EmulatorRouter.fromEnv(env)
  const provider = adapter.cliLayer({
    stateDir: StateHome.localDirectory(env),
    namespaceCache: StateHome.namespaceCacheDirectory(env),
    emulated: route !== undefined
  })
  return provider.pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(httpLayer(route)))
}
