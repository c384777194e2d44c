/**
 * Shared pieces of the HF Jobs suites: quick schedules, and the HF Jobs provider wired to a Hub emulator.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Testing from "hf-sandbox/testing"
import { fakeDns } from "./fakeDns.js"

/** Quick Hub retries and stage checks, so fault tests do not wait on production backoff. */
export const fastSchedules = {
  hubRetry: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)), Schedule.asVoid),
  cancelRetry: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)), Schedule.asVoid),
  stageCheck: Schedule.spaced("250 millis").pipe(Schedule.asVoid)
}

/**
 * The HF Jobs provider on `emulator` (with `provider`'s further options), an HttpClient routed to it, and the
 * emulator as a service.
 */
export const emulatorLayer = (
  emulator: Testing.HubEmulator,
  publicDns: ReadonlyArray<string> | false,
  provider: HfJobs.Options = {}
) =>
  Layer.mergeAll(
    HfJobs.layer({ token: emulator.token, endpoint: emulator.url, publicDns, ...provider }).pipe(
      Layer.provideMerge(NodeContext.layer)
    ),
    Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emulator))).pipe(
      Layer.provide(NodeHttpClient.layerUndici)
    ),
    Layer.succeed(Testing.HubEmulatorService, emulator)
  )

/**
 * A scoped emulator with a 100 ms scheduling delay (plus `options`) behind {@link emulatorLayer}, whose
 * DNS fallback asks a loopback resolver, never a public one.
 */
export const emulatedHub = (options: Testing.EmulatorOptions = {}, provider: HfJobs.Options = {}) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const dns = yield* fakeDns({})
      const emulator = yield* Testing.make({ schedulingDelay: "100 millis", ...options })
      return emulatorLayer(emulator, [dns.server], provider)
    })
  )
