/**
 * The Promise facade's runtime: one for the process, on which every call of `hf-sandbox/promise` runs,
 * and the way an Exit becomes the caller's Promise (the typed failure itself, or the abort's reason).
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Shutdown from "../shutdown.js"
import { inSurface } from "../surfaceErrors.js"

export type Services = NodeContext.NodeContext | HttpClient.HttpClient
/** The runtime every call runs on; its layer is built on first use (`ManagedRuntime` is lazy). */
export const runtime: ManagedRuntime.ManagedRuntime<Services, never> = ManagedRuntime.make(
  Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)
)

/**
 * Runs an effect on the shared runtime; the Promise always resolves, with the effect's Exit. With a
 * signal already aborted nothing runs at all (a started fiber could send a request before it sees the
 * interruption).
 */
export const runExit = <A, E>(
  effect: Effect.Effect<A, E, Services>,
  signal?: AbortSignal
): Promise<Exit.Exit<A, E>> => {
  if (signal?.aborted) return Promise.resolve(Exit.interrupt(FiberId.none))
  const release = Shutdown.holdOpen()
  return runtime.runPromiseExit(effect, signal === undefined ? undefined : { signal }).finally(release)
}

export const never = <A>(): Promise<A> => new Promise<A>(() => {})

/**
 * The error a caller sees: the typed failure itself (a Hub error's advice in the facade's words, as
 * `Sandbox.create({ token })`), else the abort's reason, else the defect — each unwrapped from the
 * proxy Effect may put around an error to carry its span, so that `===` holds.
 */
const toError = (cause: Cause.Cause<unknown>, signal: AbortSignal | undefined): unknown => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return inSurface(Cause.originalError(failure.value), "promise")
  if (signal?.aborted && Cause.isInterruptedOnly(cause)) return signal.reason
  return Cause.originalError(Cause.squash(cause))
}

/**
 * Turns an Exit into the caller's Promise. Once a signal is ending the process, results are no longer
 * delivered: the program dies of the signal as it would have, instead of reporting the errors its
 * terminated sandboxes produce on the way.
 */
export const settle = <A, E>(exit: Exit.Exit<A, E>, signal?: AbortSignal): Promise<A> =>
  Shutdown.isDying()
    ? never()
    : Exit.isSuccess(exit)
      ? Promise.resolve(exit.value)
      : Promise.reject(toError(exit.cause, signal))

export const run = <A, E>(effect: Effect.Effect<A, E, Services>, signal?: AbortSignal): Promise<A> =>
  runExit(effect, signal).then((exit) => settle(exit, signal))

/** Rejects with the signal's reason when it aborts first (what `promise` does goes on). */
export const abortable = <A>(promise: Promise<A>, signal: AbortSignal | undefined): Promise<A> => {
  if (signal === undefined) return promise
  return new Promise<A>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener("abort", onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort))
  })
}
