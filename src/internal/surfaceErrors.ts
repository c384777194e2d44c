/**
 * The library's errors as a surface (the CLI, the Promise facade) reports them: their advice in the
 * surface's words (`surfaceTerms.ts`). A Hub error is told its surface (its `surface` field, its token's
 * source in the surface's words); a start's `detail`, which may quote one (`StartError.fromHubError`) or
 * say how to give a token, has each of the library's phrases replaced. Any other value is returned as it is.
 */
import { HubError, HubTransferError, StartError } from "../SandboxError.js"
import { withFields } from "./errorFields.js"
import { inTerms, type Surface } from "./surfaceTerms.js"

/** `error` said on `surface`: a copy when its words change, else `error` itself. */
export const inSurface = <E>(error: E, surface: Surface): E => {
  if (error instanceof HubError) {
    const tokenSource = error.tokenSource === undefined ? undefined : inTerms(error.tokenSource, surface)
    return withFields(HubError, error, { surface, tokenSource }) as E
  }
  if (error instanceof HubTransferError) return withFields(HubTransferError, error, { surface }) as E
  if (error instanceof StartError) {
    const detail = inTerms(error.detail, surface)
    return detail === error.detail ? error : (withFields(StartError, error, { detail }) as E)
  }
  return error
}
