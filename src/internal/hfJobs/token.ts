/**
 * The sandbox token: the bearer the in-sandbox server checks. It is not the HF token, which never
 * reaches the server unless the caller forwards it.
 */
import { createHmac } from "node:crypto"
import * as Redacted from "effect/Redacted"
import * as Credentials from "./credentials.js"

/**
 * The sandbox token is derived from the HF token and a nonce kept in a job label, so a client holding the
 * same HF token can re-attach to a sandbox with nothing stored.
 */
export const deriveSandboxToken = (hfToken: Redacted.Redacted<string>, nonce: string): Redacted.Redacted<string> =>
  // Cleaned as every token is before use: a CRLF `.env` value must derive what the clean value derives.
  Redacted.make(
    createHmac("sha256", Credentials.cleanToken(Redacted.value(hfToken)) ?? "")
      .update(`hf-sandbox:${nonce}`)
      .digest("hex")
  )
