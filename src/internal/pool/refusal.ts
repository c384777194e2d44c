/**
 * A host that refused to start for want of isolation, said in the pool's terms. The server refuses host
 * mode when it cannot give each sandbox its own uid and Landlock confinement (not root, no Landlock)
 * unless told to accept it, and its refusal names the server's own switch
 * (`SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)`, rpc-server/sbx_server/host.py `setup`). A pool's user
 * never sets that: the pool does, from its `weakIsolation` option. So the host's start error becomes an
 * `InvalidOptions` one about `weakIsolation` (`StartError.invalid`): the library's message names
 * `weakIsolation: true`, and the CLI names its flag from the option (src/cli/errors.ts).
 */
import { StartError } from "../../SandboxError.js"

/** How the server's refusal begins (its stderr line), and the switch it names. */
const REFUSED = "host mode refused: "
const SWITCH = "SBX_HOST_WEAK_ISOLATION"

/** What the server says is missing: its refusal line, from the reasons to its advice. */
const missing = (stderr: string): string | undefined => {
  const line = stderr.split("\n").find((l) => l.includes(REFUSED) && l.includes(SWITCH))
  if (line === undefined) return undefined
  const reasons = line.slice(line.indexOf(REFUSED) + REFUSED.length)
  const advice = reasons.indexOf(". Run it as root")
  return advice >= 0 ? reasons.slice(0, advice) : reasons
}

/**
 * The host's start error in the pool's terms when it is the server's isolation refusal (the pool did not
 * accept weak isolation), else the error itself.
 */
export const inPoolTerms = (error: StartError): StartError => {
  const why = error.stderrTail === undefined ? undefined : missing(error.stderrTail)
  if (why === undefined) return error
  const advice = `(docs/security.md "Weak isolation"), or run the hosts as root on a kernel with Landlock (ABI >= 6)`
  const refused = `the pool's host refused to start: ${why}`
  return new StartError({
    provider: error.provider,
    reason: "InvalidOptions",
    detail: `weakIsolation is not set, and ${refused}. Pass \`weakIsolation: true\` to SandboxPool.layer to accept weaker isolation ${advice}`,
    invalid: {
      option: "weakIsolation",
      problem: `not given, and ${refused}. Give it to accept weaker isolation ${advice}`
    },
    cause: error,
    ...(error.during === undefined ? {} : { during: error.during })
  })
}
