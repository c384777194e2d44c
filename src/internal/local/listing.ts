/** The local provider's sandboxes as the seam lists them: the columns `ls` shows, the records `--json` prints. */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { ago } from "../ago.js"
import type { LocalContext } from "./context.js"
import { list } from "./operations.js"

export const listing = (ctx: Pick<LocalContext, "stateDir" | "tempDir">): Effect.Effect<SandboxProvider.Listing> =>
  Effect.map(list({ stateDir: ctx.stateDir, tempDir: ctx.tempDir }), (sandboxes) => ({
    columns: ["ID", "PID", "PORT", "CREATED", "IDLE TIMEOUT"],
    rows: sandboxes.map((s) => ({
      id: s.id,
      provider: "local",
      createdAt: s.createdAt,
      cells: [
        s.id,
        String(s.pid),
        String(s.port),
        ago(s.createdAt),
        s.idleTimeoutSeconds > 0 ? `${s.idleTimeoutSeconds}s` : "never"
      ],
      record: { ...s, provider: "local" }
    }))
  }))
