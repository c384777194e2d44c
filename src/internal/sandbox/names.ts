/**
 * Named sandboxes for `Sandbox.connect({ name })` and `Sandbox.getOrCreate`: the running sandbox of a
 * name found through the provider's `list`, and the get-or-create that two racing callers agree on.
 *
 * The race rule lives in the providers (`make({ name })`): each checks the name before it creates, and
 * after creating looks again; of the live sandboxes with the name, the earlier created (then the lower
 * id) keeps it, and the others stop themselves and fail with `NameTaken`. Here a `NameTaken` from `make`
 * means "someone else's sandbox won": attach to it. A caller that sees no other sandbox after creating
 * is the earliest, since anything created later is later in that order.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { ConnectOptions, MakeOptions, Sandbox } from "../../Sandbox.js"
import { StartError } from "../../SandboxError.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import { unsupported } from "../providerSeam.js"
import * as SandboxName from "../sandboxName.js"
import { invalidOptions } from "../startError.js"
import { type Acquire, attachTo, open } from "./open.js"

type Opened = Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope>

const isReason =
  (reason: StartError["reason"]) =>
  (error: StartError): boolean =>
    error.reason === reason

/**
 * `connect`'s way to an endpoint by name: the earliest live sandbox of that name (the one that keeps it
 * while a race settles), attached to by id.
 */
const attachByName =
  (name: string): Acquire =>
  (provider, spec) =>
    provider.list === undefined
      ? Effect.fail(unsupported(provider.name, `attach to sandbox ${name}`, "finding sandboxes by name"))
      : provider.list({ name, providerOptions: spec.providerOptions }).pipe(
          Effect.mapError((error) =>
            error instanceof StartError ? error : StartError.fromHubError(error, provider.name)
          ),
          Effect.flatMap((listing) => {
            const [first] = listing.rows.filter((row) => row.name === name).sort(SandboxName.byAge)
            return first === undefined
              ? Effect.fail(
                  new StartError({
                    provider: provider.name,
                    reason: "NotFound",
                    detail: `no running sandbox is named ${JSON.stringify(name)}: start one with Sandbox.make({ name }) or Sandbox.getOrCreate({ name })`
                  })
                )
              : attachTo(first.id)(provider, spec)
          })
        )

/** The name of `connect({ name })`/`getOrCreate`, checked before anything is asked of a provider. */
const checked = (options: {
  readonly name?: unknown
}): Effect.Effect<string, StartError, SandboxProvider.SandboxProvider> =>
  Effect.flatMap(SandboxProvider.SandboxProvider, (provider) =>
    Effect.try({
      try: () => SandboxName.check("name", options.name),
      catch: (cause) => invalidOptions(provider.name, cause)
    })
  )

/** Attaches to the running sandbox named `options.name`; none: `StartError("NotFound")`. */
export const connectByName = (options: ConnectOptions & { readonly name: string }): Opened =>
  Effect.flatMap(checked(options), (name) =>
    open("connect", options, attachByName(name), { "sandbox.name": name, "sandbox.id": name })
  )

/** Attaches to the running sandbox of the name, else makes it; a lost race attaches to the winner. */
export const getOrCreate = (
  options: MakeOptions & { readonly name: string },
  make: (options: MakeOptions) => Opened
): Opened =>
  Effect.flatMap(checked(options), () =>
    connectByName(options).pipe(
      Effect.catchIf(isReason("NotFound"), () =>
        make(options).pipe(Effect.catchIf(isReason("NameTaken"), () => connectByName(options)))
      )
    )
  ).pipe(Effect.withSpan("Sandbox.getOrCreate", { attributes: { "sandbox.name": options.name } }))
