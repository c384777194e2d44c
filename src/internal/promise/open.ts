/**
 * Starting or attaching to a sandbox for the Promise facade: in a scope of its own, registered for the
 * process's exit while it starts (its failure is said in the facade's terms as every call's is: runtime.ts).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Scope from "effect/Scope"
import type { Sandbox } from "../../promise.js"
import * as EffectSandbox from "../../Sandbox.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Telemetry from "../../Telemetry.js"
import * as Names from "../sandbox/names.js"
import * as Shutdown from "../shutdown.js"
import { handleOf } from "./handles.js"
import type { ProviderContext } from "./providers.js"
import { runExit, settle } from "./runtime.js"

/** Starts or attaches to a sandbox in a scope of its own. */
export const open = async (params: {
  /** Whether the sandbox is this handle's to end; a function when only the start says (`getOrCreate`). */
  readonly owned: boolean | (() => boolean)
  readonly provider: Promise<ProviderContext>
  readonly make: Effect.Effect<
    EffectSandbox.Sandbox,
    StartError,
    SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope
  >
  readonly signal: AbortSignal | undefined
  readonly httpClient: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  readonly telemetry?: Promise<Context.Context<Telemetry.Telemetry>> | undefined
}): Promise<Sandbox> => {
  if (params.signal?.aborted) return Promise.reject(params.signal.reason)
  const scope = Effect.runSync(Scope.make())
  // A start in progress is registered too: a signal or exit during it interrupts the start, which
  // releases whatever was already created (a job found by its label, a half-started server).
  const cancel = new AbortController()
  const signal = params.signal === undefined ? cancel.signal : AbortSignal.any([params.signal, cancel.signal])
  let started: Promise<unknown> = Promise.resolve()
  // A start that may create (`getOrCreate`) is registered as one that does: interrupting an attach only detaches.
  const unregister =
    params.owned !== false
      ? Shutdown.register({
          terminate: async () => {
            cancel.abort()
            await started
          },
          killSync: () => {}
        })
      : undefined
  try {
    const context = await params.provider
    // Telemetry that cannot be set up is no telemetry: it never fails a sandbox.
    const telemetry = await params.telemetry?.catch(() => undefined)
    const effect = params.make.pipe(
      params.httpClient === undefined ? identity : Effect.updateService(HttpClient.HttpClient, params.httpClient),
      Scope.extend(scope),
      Effect.provide(context),
      telemetry === undefined ? identity : Effect.provide(telemetry)
    )
    const pending = runExit(effect, signal)
    started = pending
    const exit = await pending
    if (Exit.isFailure(exit)) {
      await runExit(Scope.close(scope, exit))
      return await settle(Exit.failCause(exit.cause), params.signal)
    }
    return handleOf(exit.value, scope, typeof params.owned === "function" ? params.owned() : params.owned)
  } finally {
    unregister?.()
  }
}

/** The Effect API's `getOrCreate`, and whether it made the sandbox (rather than attached to one). */
export const getOrCreateTracked = (options: EffectSandbox.MakeOptions & { readonly name: string }) => {
  let created = false
  return {
    make: Names.getOrCreate(options, (makeOptions) =>
      Effect.tap(
        EffectSandbox.make(makeOptions),
        Effect.sync(() => {
          created = true
        })
      )
    ),
    created: () => created
  }
}
