/** `hf-sandbox expose ID PORT`: the URL of a server listening on PORT in a sandbox. */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { action, idOf } from "../action.js"
import { attach } from "../attach.js"
import { durationFlag, globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

/** What a caller must send beside the URL, said without the secret itself. */
const authNote = (via: string, headers: Readonly<Record<string, string>>) => {
  const names = Object.keys(headers)
  if (names.length === 0) {
    return via === "tunnel"
      ? "No token needed: a quick tunnel is public, anyone with the URL reaches the port."
      : "No token needed."
  }
  return via === "proxy"
    ? "Send your HF token: Authorization: Bearer $HF_TOKEN."
    : `Send the sandbox's headers (${names.join(", ")}); use the library's sb.expose(port) to get them.`
}

export const expose = Command.make(
  "expose",
  {
    ...globals,
    via: Options.choice("via", ["direct", "server"]).pipe(
      Options.optional,
      Options.withDescription(
        "direct (default): the loopback address locally; on HF the Jobs proxy host of a declared --port, else the port's own quick tunnel. server: through the sandbox server (needs its token)."
      )
    ),
    wait: durationFlag("wait", "First wait until something listens on the port, at most this long (e.g. 2m)."),
    id: sandboxId,
    port: Args.integer({ name: "PORT" }).pipe(Args.withDescription("The port a server listens on in the sandbox."))
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const wait = yield* Parse.optionalDuration("--wait", a.wait)
        const sb = yield* attach(id)
        if (wait !== undefined) yield* sb.waitForPort(a.port, { timeout: wait })
        const exposed = yield* sb.expose(a.port, { via: Option.getOrUndefined(a.via) })
        if (mode.json) {
          // Header names only: their values are tokens, which are never printed.
          yield* Output.json({
            sandbox: sb.id,
            port: a.port,
            url: exposed.url,
            via: exposed.via,
            headers: Object.keys(exposed.headers)
          })
        } else yield* Output.line(exposed.url)
        yield* Output.note(mode, authNote(exposed.via, exposed.headers))
      }),
    { ids: idOf }
  )
).pipe(
  Command.withDescription(
    "Print the URL of a server listening on PORT in a sandbox (HTTP, SSE and WebSocket), optionally after waiting for it to listen."
  )
)
