/** HF Jobs sandboxes as the seam lists them: the columns `ls` shows, the records `--json` prints. */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { ago } from "../ago.js"
import type { ProviderContext } from "./context.js"
import { list } from "./operations.js"

export const listing = (ctx: ProviderContext, options: SandboxProvider.ListOptions) =>
  Effect.map(
    list(ctx, { all: options.all ?? false }),
    (sandboxes): SandboxProvider.Listing => ({
      columns: ["ID", "STAGE", "IMAGE", "FLAVOR", "CREATED"],
      rows: sandboxes.map((s) => ({
        id: s.id,
        provider: "hf-jobs",
        createdAt: s.createdAt,
        cells: [s.id, s.stage, s.image ?? "-", s.flavor ?? "-", ago(s.createdAt)],
        record: { ...s, provider: "hf-jobs" }
      }))
    })
  )
