/**
 * `hf-sandbox kill ID... | --all | --label K=V --older-than D --name N [--dry-run]`: sandboxes stopped
 * by id, all of them, or those a sweep's filters select; each failure reported on its own.
 */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as SandboxName from "../../internal/sandboxName.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import { action } from "../action.js"
import * as Errors from "../errors.js"
import { durationFlag, globals } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

const filterOptions = {
  label: Options.text("label").pipe(
    Options.withAlias("l"),
    Options.withPseudoName("KEY[=VALUE]"),
    Options.repeated,
    Options.withDescription("Only sandboxes with this label (repeatable: all of them).")
  ),
  olderThan: durationFlag("older-than", "Only sandboxes created longer ago than this, e.g. 30m, 1h, 2d."),
  name: Options.text("name").pipe(
    Options.withPseudoName("NAME"),
    Options.optional,
    Options.withDescription("Only the sandbox with this name (Sandbox.make({ name })).")
  ),
  dryRun: Options.boolean("dry-run").pipe(
    Options.withDescription("Stop nothing: print the sandboxes that would be stopped.")
  )
}

/** The sweep's filters given on the command line, checked; `undefined` when none was given. */
const filtersOf = (a: {
  readonly label: ReadonlyArray<string>
  readonly olderThan: Option.Option<string>
  readonly name: Option.Option<string>
}) =>
  Effect.gen(function* () {
    if (a.label.length === 0 && Option.isNone(a.olderThan) && Option.isNone(a.name)) return undefined
    const name = Option.getOrUndefined(a.name)
    if (name !== undefined) {
      yield* Effect.try({
        try: () => SandboxName.check("--name", name),
        catch: (e) => new Parse.UsageError({ message: e instanceof Error ? e.message : String(e) })
      })
    }
    return {
      ...(a.label.length > 0 ? { labels: yield* Parse.labels(a.label) } : {}),
      ...(Option.isSome(a.olderThan) ? { olderThan: yield* Parse.duration("--older-than", a.olderThan.value) } : {}),
      ...(name !== undefined ? { name } : {})
    }
  })

export const kill = Command.make(
  "kill",
  {
    ...globals,
    all: Options.boolean("all").pipe(Options.withDescription("Stop every running sandbox of the provider.")),
    ...filterOptions,
    ids: Args.text({ name: "ID" }).pipe(Args.repeated, Args.withDescription("Sandboxes to stop (ID or NAMESPACE/ID)."))
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        for (const id of a.ids) yield* Parse.notAnOption("ID", id)
        const filters = yield* filtersOf(a)
        const ways = [a.ids.length > 0, a.all, filters !== undefined].filter(Boolean).length
        if (ways !== 1) {
          return yield* new Parse.UsageError({
            message:
              ways === 0
                ? "which sandboxes? give their ids, or --all, or filters (--label, --older-than, --name)"
                : "give either sandbox ids, --all, or filters (--label, --older-than, --name): only one of them"
          })
        }
        const provider = yield* SandboxProvider.SandboxProvider
        const targets =
          filters !== undefined
            ? (yield* SandboxProvider.sweep({ ...filters, dryRun: true })).map((r) => r.id)
            : a.all
              ? (yield* SandboxProvider.list({ all: false })).rows.map((r) => r.id)
              : a.ids
        if (a.dryRun) {
          if (mode.json) return yield* Output.json({ wouldKill: targets })
          for (const id of targets) yield* Output.line(id)
          return yield* Output.note(
            mode,
            `Dry run: ${targets.length} ${provider.name} sandbox${targets.length === 1 ? "" : "es"} would be stopped.`
          )
        }
        const results = yield* Effect.forEach(
          targets,
          (id) =>
            // A pooled id (`HOST.LOCAL`) deletes only that sandbox on its host (the seam routes it).
            SandboxProvider.kill(id).pipe(
              Effect.as({ id, error: undefined as string | undefined, type: undefined as string | undefined }),
              Effect.catchAll((e) => {
                const { tag, message } = Errors.describe(e, false)
                return Effect.succeed({ id, error: message as string | undefined, type: tag as string | undefined })
              })
            ),
          { concurrency: 8 }
        )
        const killed = results.filter((r) => r.error === undefined).map((r) => r.id)
        const failures = results.filter((r) => r.error !== undefined)
        for (const f of failures) yield* Output.write("stderr", `hf-sandbox: ${f.id}: ${f.error}\n`)
        if (mode.json) {
          yield* Output.json({ killed, failed: failures.map((f) => ({ id: f.id, error: f.error, type: f.type })) })
        } else {
          for (const id of killed) yield* Output.line(id)
          if (a.ids.length === 0 && targets.length === 0) {
            yield* Output.note(mode, `No ${provider.name} sandboxes ${a.all ? "running" : "match"}.`)
          }
        }
        if (failures.length > 0) yield* Output.setExitCode(1)
      }),
    { ids: (a) => a.ids }
  )
).pipe(
  Command.withDescription(
    "Stop sandboxes by id, all of them with --all, or those matching --label, --older-than and --name (--dry-run: only print them)."
  )
)
