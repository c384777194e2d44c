/**
 * How a local sandbox's server is started, owned or detached alike: its arguments, its environment, the
 * line it announces its port with, and the error when it cannot be started at all.
 */
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Protocol from "../../Protocol.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { startError } from "./errors.js"

/** Host variables a command needs to behave normally; everything else (tokens, keys) stays out. */
const INHERITED_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"]

/** A sandbox token: 32 random bytes (256 bits) as 64 hex characters, new for every sandbox. */
export const newToken = (): string => randomBytes(32).toString("hex")

/** Reads into memory go in one request: on loopback there is no round trip for parallel ranges to hide. */
export const WHOLE_FILE = Number.MAX_SAFE_INTEGER

/** The interpreter's and the server's arguments, the same for an owned and a detached sandbox. */
export const serverArgs = (script: string, spec: SandboxProvider.Spec): Array<string> => [
  "-u", // unbuffered: the listening line and any error reach us at once
  "-S", // no site-packages: the server is stdlib-only, and skipping them saves start time
  script,
  "--host",
  "127.0.0.1",
  "--port",
  "0",
  ...(spec.idleTimeout
    ? [
        "--idle-timeout",
        String(Duration.toSeconds(spec.idleTimeout)),
        // Not idle while this process is still reaching it (a loaded machine can take longer than a short idle).
        "--start-grace",
        String(Math.ceil(Duration.toSeconds(spec.startTimeout)))
      ]
    : []),
  ...(spec.lifetime ? ["--lifetime", String(Duration.toSeconds(spec.lifetime))] : [])
]

/** The part of this process's environment a server inherits: the variables of `INHERITED_ENV` that are set. */
const hostEnv = (): Record<string, string> =>
  Object.fromEntries(
    INHERITED_ENV.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]!]]))
  )

/** The PATH the server is started with, on which its interpreter is looked up. */
export const serverPath = (spec: SandboxProvider.Spec): string | undefined => spec.env.PATH ?? hostEnv().PATH

/** The server's environment: a minimal host environment, the sandbox's own, its secrets and its token. */
export const serverEnv = (spec: SandboxProvider.Spec, workdir: string, token: string): Record<string, string> => ({
  ...hostEnv(),
  TMPDIR: workdir,
  ...spec.env,
  ...Object.fromEntries(Object.entries(spec.secrets).map(([k, v]) => [k, Redacted.value(v)])),
  ...(spec.host !== undefined ? hostModeEnv(spec.host, workdir) : {}),
  SBX_TOKEN: token
})

/**
 * A pool host's variables (the wire contract of host mode): its sandboxes' homes live in its working
 * directory, so they go with it (the server makes the directories above them traversable by their uids).
 */
const hostModeEnv = (host: SandboxProvider.HostSpec, workdir: string): Record<string, string> => ({
  SBX_HOST_MODE: "1",
  SBX_CAPACITY: String(host.capacity),
  SBX_HOMES_DIR: path.join(workdir, HOMES),
  ...(host.weakIsolation ? { SBX_HOST_WEAK_ISOLATION: "1" } : {}),
  ...(host.hostTokenActs ? { SBX_HOST_TOKEN_ACTS: "1" } : {})
})

/** The directory of a host's working directory that holds its sandboxes' homes. */
const HOMES = "homes"

export const decodeListening = Schema.decodeUnknownOption(Schema.parseJson(Protocol.ListeningLine))

export const cannotRun = (python: string, message: string) =>
  /ENOENT/.test(message)
    ? `cannot run "${python}": not found. Install Python 3.8+ or pass { python: "/path/to/python3" } to LocalSandbox.layer`
    : `cannot run "${python}": ${message}`

/** The server's announcement awaited for at most `startTimeout`; a timeout's error carries its last words. */
export const announcedWithin =
  (spec: SandboxProvider.Spec, lastWords: () => string) =>
  <R>(announcement: Effect.Effect<Protocol.ListeningLine, StartError, R>) =>
    Effect.timeoutFail(announcement, {
      duration: spec.startTimeout,
      onTimeout: () =>
        startError(
          "Timeout",
          `the server did not announce its port within ${Duration.format(spec.startTimeout)}`,
          lastWords()
        )
    })

/**
 * `sb.expose(port)` on this machine: the sandbox's servers listen here, so the loopback address reaches
 * them with no proxy and no token.
 */
export const expose: NonNullable<SandboxProvider.Endpoint["expose"]> = (port) =>
  Effect.succeed({ url: `http://127.0.0.1:${port}`, headers: {}, via: "loopback" })
