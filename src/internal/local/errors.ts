/**
 * The local provider's failures: every one is a `StartError` of provider `"local"` (see
 * internal/startError for those met by something that starts nothing).
 */
import { StartError } from "../../SandboxError.js"
import { ID_PATTERN } from "./state.js"

export const startError = (reason: StartError["reason"], detail: string, stderrTail?: string, cause?: unknown) =>
  new StartError({ provider: "local", reason, detail, stderrTail, cause })

const notAnId = (id: string) => `"${id}" is not a local sandbox id (they look like local-1a2b3c4d5e6f)`

/** No sandbox `id` in the state directory `dir`; `why` says how that can be. */
export const unknownSandbox = (id: string, dir: string, why = "") =>
  new StartError({
    provider: "local",
    reason: "NotReady",
    detail: ID_PATTERN.test(id) ? `no local sandbox ${id} in ${dir}${why}` : notAnId(id)
  })
