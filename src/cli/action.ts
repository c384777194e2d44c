/**
 * Running a command's handler: on the chosen provider (`--local`, an id of its shape, or HF Jobs), in the
 * output mode the global options ask for, with every failure turned into a message and an exit code.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Providers from "../internal/providers.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as Telemetry from "../Telemetry.js"
import * as Backend from "./backend.js"
import * as Errors from "./errors.js"
import * as Io from "./io.js"
import type { Globals } from "./options.js"
import * as Output from "./output.js"
import * as Parse from "./parse.js"

/**
 * The global options given before the command name (`hf-sandbox --json ls`): the root command's, which
 * the root hands to every command (see app.ts); those given after the name are the command's own.
 */
export class RootGlobals extends Context.Tag("hf-sandbox/cli/RootGlobals")<RootGlobals, Globals>() {}

/** For commands on one sandbox: its id (a `local-…` id is enough to mean the local provider). */
export const idOf = <A extends { readonly id: string }>(args: A): ReadonlyArray<string> => [args.id]

/** What a command's body may use: the provider (with its by-id operations), HTTP, the file system, a scope. */
export type Needs = SandboxProvider.SandboxProvider | HttpClient.HttpClient | FileSystem.FileSystem | Scope.Scope

interface ActionOptions<A> {
  /** How failures map to exit codes: `"command"` for `exec`/`run`, whose own codes pass through. */
  readonly exitCodes?: "plain" | "command"
  /** Whether the command takes a command line after `--`. */
  readonly takesCommand?: boolean
  /** The sandbox ids the arguments name: ids of one provider's own shape (`local-…`) choose it. */
  readonly ids?: (args: A) => ReadonlyArray<string>
  /** Whether the command starts a sandbox: only then may a failure say that it did not start. */
  readonly starts?: boolean
  /**
   * For a command about the default provider (HF Jobs) alone, such as its hardware catalog: the usage
   * mistake to report when another provider is chosen, rather than answer about one it did not ask for.
   */
  readonly defaultProviderOnly?: (chosen: Providers.Adapter) => string
}

/**
 * Runs a handler on the chosen provider and turns every failure into a message and an exit code: 2 for a
 * usage mistake; for `exec`/`run` 127 when the program does not exist and 125 for anything else (so the
 * command's own codes stay unambiguous, as with `docker run`); 1 elsewhere. No stack trace is shown.
 */
export const action =
  <A extends Globals>(
    body: (args: A, mode: Output.Mode) => Effect.Effect<void, unknown, Needs>,
    options: ActionOptions<A> = {}
  ) =>
  (args: A) =>
    Effect.gen(function* () {
      const top = yield* RootGlobals
      // What followed the first `--`: split off before parsing, so never taken for options.
      const { forced, command } = yield* Io.Io
      const mode = { json: top.json || args.json, quiet: top.quiet || args.quiet }
      const adapter = Providers.forCli(top.local || args.local ? ["local"] : [], options.ids?.(args) ?? [])
      const failed = (error: unknown) => {
        // The library's error in the CLI's words, under its own tag (for --json).
        const { tag, message } = Errors.describe(error, options.starts ?? false, command)
        const code =
          tag === "UsageError" ? 2 : options.exitCodes === "command" ? (tag === "CommandNotFoundError" ? 127 : 125) : 1
        return Effect.zipRight(Output.error(mode, tag, message), Output.setExitCode(code))
      }
      if (forced !== undefined && !options.takesCommand) {
        return yield* failed(new Parse.UsageError({ message: `unexpected -- ${forced.join(" ")}`.trimEnd() }))
      }
      if (options.defaultProviderOnly !== undefined && adapter !== Providers.defaultAdapter) {
        return yield* failed(new Parse.UsageError({ message: options.defaultProviderOnly(adapter) }))
      }
      yield* Effect.suspend(() => body(args, mode).pipe(Effect.scoped, Effect.provide(layerFor(adapter)))).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : failed(Cause.squash(cause))
        )
      )
    })

/**
 * The provider, and where it applies (HF Jobs) the anonymous usage events the original hf-sandbox sends
 * (one pair per sandbox made, see docs/telemetry.md), unless HF_HUB_DISABLE_TELEMETRY, DO_NOT_TRACK or
 * another opt-out variable is set. A `--local` sandbox reports nothing: it never leaves this machine.
 * Each request is bounded (3 s), and one still in flight when the command ends gets 1 s, then is dropped.
 */
const layerFor = (adapter: Providers.Adapter) =>
  Layer.unwrapEffect(
    Effect.map(Io.Io, ({ env }) =>
      adapter.telemetry
        ? Telemetry.layerHub().pipe(Layer.provideMerge(Backend.layer(adapter, env)))
        : Backend.layer(adapter, env)
    )
  )
