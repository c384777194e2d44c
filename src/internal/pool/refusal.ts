/**
 * A host that refused to start for want of isolation, said in the pool's terms. The server refuses host
 * mode when it cannot give each sandbox its own uid and Landlock confinement (not root, no Landlock)
 * unless told to accept it: it prints its refusal, naming its own switch (`SBX_HOST_WEAK_ISOLATION=1
 * (--weak-isolation)`), and on the next line the same refusal as data, `SBX_REFUSAL {"code":
 * "isolation_missing", "missing": [...]}` (rpc-server/sbx_server/host.py `setup`), which is what is read
 * here: its code, never its wording. A pool's user never sets that switch: the pool does, from its
 * `weakIsolation` option. So the host's start error becomes an `InvalidOptions` one about `weakIsolation`
 * (`StartError.invalid`): the library's message names `weakIsolation: true`, and the CLI names its flag
 * from the option (src/cli/errors.ts).
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { StartError } from "../../SandboxError.js"
import { withFields } from "../errorFields.js"

/** Starts the server's refusal as data (rpc-server/sbx_server/common.py `REFUSAL_MARKER`). */
const MARKER = "SBX_REFUSAL "

const IsolationMissing = Schema.parseJson(
  Schema.Struct({ code: Schema.Literal("isolation_missing"), missing: Schema.NonEmptyArray(Schema.String) })
)

/** What the host misses, and its stderr without the refusal (its wording, and the data after it). */
const refused = (stderr: string) => {
  const lines = stderr.split("\n")
  // Found anywhere in a line: a job's log may put something before what the server printed.
  const at = lines.findIndex((l) => l.includes(MARKER))
  const line = lines[at]
  if (line === undefined) return undefined
  const said = Schema.decodeUnknownEither(IsolationMissing)(line.slice(line.indexOf(MARKER) + MARKER.length).trim())
  if (Either.isLeft(said)) return undefined
  // The line before the data is the refusal in words (the server writes both at once): re-said here.
  const rest = [...lines.slice(0, Math.max(0, at - 1)), ...lines.slice(at + 1)].join("\n")
  return { missing: said.right.missing.join("; "), rest: rest.trim() === "" ? undefined : rest }
}

/**
 * The host's start error in the pool's terms when it is the server's isolation refusal (the pool did not
 * accept weak isolation), else the error itself. Every field of the error is kept but what is re-said:
 * its reason, detail and the refusal's lines of its `stderrTail` (the error is the cause, whole).
 */
export const inPoolTerms = (error: StartError): StartError => {
  const found = error.stderrTail === undefined ? undefined : refused(error.stderrTail)
  if (found === undefined) return error
  const advice = `(docs/security.md "Weak isolation"), or run the hosts as root on a kernel with Landlock (ABI >= 6)`
  const hostRefused = `the pool's host refused to start: ${found.missing}`
  return withFields(StartError, error, {
    reason: "InvalidOptions",
    detail: `weakIsolation is not set, and ${hostRefused}. Pass \`weakIsolation: true\` to SandboxPool.layer to accept weaker isolation ${advice}`,
    invalid: {
      option: "weakIsolation",
      problem: `not given, and ${hostRefused}. Give it to accept weaker isolation ${advice}`
    },
    stderrTail: found.rest,
    cause: error
  })
}
