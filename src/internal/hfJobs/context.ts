/**
 * What every operation of one HF Jobs provider shares: its resolved configuration, the credential and a
 * Hub client for it, the namespace, the server's files. Built once per provider (per layer), each piece
 * resolved on first use and kept; every operation takes it explicitly.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { SandboxOptions } from "../../HfJobs.js"
import { type HubError, StartError } from "../../SandboxError.js"
import * as Schedules from "../../Schedules.js"
import { readServerPackage, type ServerFiles } from "../serverScript.js"
import type * as Config from "./config.js"
import * as Credentials from "./credentials.js"
import * as Hub from "./hub.js"
import * as JobRef from "./jobRef.js"
import * as NamespaceCache from "./namespaceCache.js"

export interface ProviderContext {
  readonly config: Config.Resolved
  /** The credential, kept until a refresh or re-exchange comes due. */
  readonly credential: Effect.Effect<Credentials.Credential, StartError>
  /** A Hub client that sends `credential`'s token and names its source in a 401. */
  readonly clientOf: (credential: Credentials.Credential) => Hub.HubClient
  /** The Hub client of the current credential. */
  readonly hub: Effect.Effect<Hub.HubClient, StartError>
  /** The namespace an operation works in: `explicit`, else the option, else the token's user. */
  readonly namespaceOf: (explicit: string | undefined) => Effect.Effect<string, StartError>
  /** The in-sandbox server package's files, sent into every job. */
  readonly serverFiles: Effect.Effect<ServerFiles, StartError>
  /** The HF options in force in the caller's Context (`HfJobs.CurrentSandboxOptions`). */
  readonly sandboxOptions: Effect.Effect<SandboxOptions>
}

/** A failed Hub request as a start's error: unreachable, or rejected with the Hub's words. */
export const hubFailure = (error: HubError) => StartError.fromHubError(error)

export const make = (
  config: Config.Resolved,
  fs: FileSystem.FileSystem,
  sandboxOptions: Effect.Effect<SandboxOptions>
): Effect.Effect<ProviderContext> =>
  Effect.gen(function* () {
    const { endpoint, userAgent } = config
    // The environment was read once, with the configuration; a bad value fails where a token is needed.
    const env = Either.mapLeft(
      config.discovery,
      (e) =>
        new StartError({ provider: "hf-jobs", reason: "InvalidOptions", detail: `bad configuration: ${e.message}` })
    )
    // The credential is found again when a refresh comes due.
    const credential = yield* Credentials.cachedUntilRecheck(
      Effect.flatMap(env, (e) => Credentials.resolve({ fs, env: e, endpoint, userAgent, explicit: config.token }))
    )
    const clientOf = (c: Credentials.Credential) =>
      Hub.make({ endpoint, token: c.token, userAgent, tokenSource: Credentials.describeSource(c.source) })
    const hub = Effect.map(credential, clientOf)
    // whoami is strictly rate-limited: asked at most once for the provider's life.
    const whoami = yield* Effect.cached(
      Effect.flatMap(Effect.zip(hub, Schedules.Schedules), ([h, schedules]) =>
        h.whoami.pipe(Hub.retryTransient(schedules.hubRetry), Effect.mapError(hubFailure))
      )
    )
    const userNamespace = yield* Effect.cached(
      config.namespaceCache === undefined
        ? Effect.map(whoami, (w) => w.name)
        : Effect.flatMap(credential, (c) =>
            NamespaceCache.cached(
              fs,
              config.namespaceCache!,
              endpoint,
              c.token,
              Effect.map(whoami, (w) => w.name)
            )
          )
    )
    // A namespace becomes a segment of Hub paths: it is checked like an id.
    const namespaceOf = (explicit: string | undefined) => {
      const given = explicit ?? config.namespace
      if (given === undefined) return userNamespace
      return JobRef.isNamespace(given)
        ? Effect.succeed(given)
        : Effect.fail(
            new StartError({
              provider: "hf-jobs",
              reason: "InvalidOptions",
              detail: `namespace ${JSON.stringify(given)} is not a Hub user or organisation name`
            })
          )
    }
    const serverFiles = yield* Effect.cached(
      readServerPackage(fs).pipe(
        Effect.mapError(
          (e) =>
            new StartError({
              provider: "hf-jobs",
              reason: "SpawnFailed",
              detail: `cannot read the sandbox server: ${e.message}`
            })
        )
      )
    )
    return { config, credential, clientOf, hub, namespaceOf, serverFiles, sandboxOptions }
  })
