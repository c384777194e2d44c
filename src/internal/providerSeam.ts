/** The accessors of the provider seam: the by-id operations of the provider in use, or a typed refusal. */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { StartError } from "../SandboxError.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as Sweep from "./sweep.js"

// The Tag is handed in by the public module (which defines it), so this module needs only its types: no
// import cycle between the two.
type Tag = typeof SandboxProvider.SandboxProvider

/** The provider's refusal of an operation it does not have (a provider written before the seam had it). */
export const unsupported = (provider: string, during: string, operation: string) =>
  new StartError({
    provider,
    reason: "InvalidOptions",
    detail: `the ${provider} provider does not support ${operation}: use a provider that does, or its own API`,
    during
  })

export const list =
  (tag: Tag) =>
  (options: SandboxProvider.ListOptions = {}) =>
    Effect.flatMap(tag, (provider) =>
      provider.list === undefined
        ? Effect.fail(unsupported(provider.name, "list sandboxes", "listing sandboxes"))
        : provider.list(options)
    )

export const kill = (tag: Tag) => (id: string) =>
  Effect.flatMap(tag, (provider) =>
    provider.kill === undefined
      ? Effect.fail(unsupported(provider.name, `kill sandbox ${id}`, "stopping sandboxes by id"))
      : provider.kill(id)
  )

export const logs =
  (tag: Tag) =>
  (id: string, options: SandboxProvider.LogOptions = {}) =>
    Stream.unwrap(
      Effect.map(tag, (provider) =>
        provider.logs === undefined
          ? Stream.fail(unsupported(provider.name, `read the log of sandbox ${id}`, "reading logs by id"))
          : provider.logs(id, options)
      )
    )

/** Attaches through `provider`, or refuses when it cannot attach: `Sandbox.connect`'s way too. */
export const connectWith = (provider: SandboxProvider.Service, id: string, spec: SandboxProvider.Spec) =>
  provider.connect === undefined
    ? Effect.fail(unsupported(provider.name, `attach to sandbox ${id}`, "attaching to sandboxes by id"))
    : provider.connect(id, spec)

export const connect = (tag: Tag) => (id: string, spec: SandboxProvider.Spec) =>
  Effect.flatMap(tag, (provider) => connectWith(provider, id, spec))

export const sweep =
  (tag: Tag) =>
  (options: SandboxProvider.SweepOptions = {}) =>
    Effect.gen(function* () {
      const provider = yield* tag
      const filters = yield* Sweep.filters(provider.name, options)
      const listing = yield* list(tag)({
        labels: filters.labels,
        name: filters.name,
        providerOptions: options.providerOptions
      })
      const matches = yield* Sweep.select(
        listing.rows.filter((row) => filters.name === undefined || row.name === filters.name),
        filters.olderThan
      )
      return options.dryRun ? matches : yield* Sweep.stopAll(matches, (row) => kill(tag)(row.id))
    }).pipe(Effect.withSpan("SandboxProvider.sweep", { attributes: { "sweep.dryRun": options.dryRun ?? false } }))
