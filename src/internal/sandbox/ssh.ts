/**
 * `sb.sshCommand()`: the `ssh` command that opens a session into a sandbox, built from the SSH URL its
 * provider gives (`ssh://<job id>@ssh.hf.jobs` on HF Jobs) the way `hf jobs ssh` builds it
 * (`ssh [-p PORT] USER@HOST`). No token goes into it: SSH authenticates with the caller's own key.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { Sandbox, SshCommand } from "../../Sandbox.js"
import { SshError } from "../../SandboxError.js"
import type { Running } from "./running.js"

/** The command of an `ssh://USER@HOST[:PORT]` URL, or `None` when it is not one. */
const fromUrl = (url: string): Option.Option<SshCommand> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return Option.none()
  }
  if (parsed.protocol !== "ssh:" || parsed.username === "" || parsed.hostname === "") return Option.none()
  const destination = `${decodeURIComponent(parsed.username)}@${parsed.hostname}`
  const port = parsed.port === "" ? undefined : Number(parsed.port)
  return Option.some({
    argv: ["ssh", ...(port === undefined ? [] : ["-p", String(port)]), destination],
    destination,
    port,
    url
  })
}

/** `sb.sshCommand`: from the provider's SSH URL of the sandbox, or `SshError` naming why there is none. */
export const sshCommand =
  ({ attributes, endpoint }: Running): Sandbox["sshCommand"] =>
  () => {
    const refuse = (reason: "NotEnabled" | "NotSupported") =>
      new SshError({ id: endpoint.id, provider: endpoint.provider, reason })
    return endpoint.sshUrl === undefined
      ? Effect.fail(refuse("NotSupported"))
      : endpoint.sshUrl.pipe(
          Effect.flatMap((url) =>
            Option.match(Option.flatMap(url, fromUrl), {
              onNone: () => Effect.fail(refuse("NotEnabled")),
              onSome: Effect.succeed
            })
          ),
          Effect.withSpan("Sandbox.sshCommand", { attributes })
        )
  }
