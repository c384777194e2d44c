/** The local provider's sandboxes as the seam lists them: the columns `ls` shows, the records `--json` prints. */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { ago } from "../ago.js"
import * as SandboxName from "../sandboxName.js"
import type { LocalContext } from "./context.js"
import { list } from "./operations.js"

/** Sandboxes with a state file (detached or named), filtered here by name and labels. */
export const listing = (
  ctx: Pick<LocalContext, "stateDir" | "tempDir">,
  options: SandboxProvider.ListOptions = {}
): Effect.Effect<SandboxProvider.Listing> =>
  Effect.map(list({ stateDir: ctx.stateDir, tempDir: ctx.tempDir }), (sandboxes) => ({
    columns: ["ID", "PID", "PORT", "CREATED", "IDLE TIMEOUT", "NAME"],
    rows: sandboxes
      .filter(
        (s) =>
          (options.name === undefined || s.name === options.name) && SandboxName.hasLabels(s.labels, options.labels)
      )
      .map((s) => ({
        id: s.id,
        provider: "local",
        createdAt: s.createdAt,
        cells: [
          s.id,
          String(s.pid),
          String(s.port),
          ago(s.createdAt),
          s.idleTimeoutSeconds > 0 ? `${s.idleTimeoutSeconds}s` : "never",
          s.name ?? "-"
        ],
        record: { ...s, provider: "local" },
        name: s.name
      }))
  }))
