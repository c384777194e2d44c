/** HF Jobs sandboxes as the seam lists them: the columns `ls` shows, the records `--json` prints. */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { ago } from "../ago.js"
import type { ProviderContext } from "./context.js"
import { list } from "./operations.js"
import * as HfSandboxOptions from "./sandboxOptions.js"

export const listing = (ctx: ProviderContext, options: SandboxProvider.ListOptions) =>
  Effect.map(
    Effect.flatMap(namespaceOf(ctx, options), (namespace) =>
      list(ctx, { all: options.all ?? false, labels: options.labels, name: options.name, namespace })
    ),
    (sandboxes): SandboxProvider.Listing => ({
      columns: ["ID", "STAGE", "IMAGE", "FLAVOR", "CREATED", "NAME"],
      rows: sandboxes.map((s) => ({
        id: s.id,
        provider: "hf-jobs",
        createdAt: s.createdAt,
        cells: [s.id, s.stage, s.image ?? "-", s.flavor ?? "-", ago(s.createdAt), s.name ?? "-"],
        record: { ...s, provider: "hf-jobs" },
        name: s.name
      }))
    })
  )

/**
 * The namespace a seam listing asks about: the caller's `namespace` option (as `connect({ name })` got it),
 * else the Context value's (`HfJobs.withSandboxOptions`), else the provider's default.
 */
const namespaceOf = (ctx: ProviderContext, options: SandboxProvider.ListOptions) =>
  Effect.map(
    Effect.flatMap(ctx.sandboxOptions, (current) =>
      HfSandboxOptions.optionsOf({ providerOptions: options.providerOptions ?? {} }, current)
    ),
    (resolved) => resolved.namespace
  )
