/**
 * The Hub emulator's fault knobs: their defaults (none injected), the counted ones each room spends, and
 * the injected Hub answers (errors and redirects) that come before authentication.
 */
import * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { CLOUDFLARED_VERSION } from "./cloudflared.js"
import { sendError } from "./http.js"
import { HUB_API_POLICY, RATE_LIMITED, rateLimitHeaders } from "./rateLimit.js"

export const defaultFaults = (): Testing.Faults => ({
  hubErrors: [],
  hubRedirects: [],
  createAnswerDelayMs: 0,
  cutLogStreams: 0,
  schedulingDelay: undefined,
  tunnelCreate429: 0,
  tunnelWarmup530Ms: 0,
  tunnelRegisterDelayMs: 100,
  unknownTunnelHostsDnsFail: true,
  crashBeforeReady: 0,
  cloudflaredOnPath: CLOUDFLARED_VERSION,
  cloudflaredDownloadCorrupt: 0,
  cloudflaredDownloadTruncated: 0,
  freshTunnelDns: { propagationMs: 0, systemMisses: 0, publicMisses: 0 },
  logFirstByteDelayMs: 0,
  silentLogStreams: 0,
  telemetry: undefined,
  unavailableFlavors: []
})

/** A fault that counts down: "the next N …". */
type Counted = "crashBeforeReady" | "cutLogStreams" | "silentLogStreams" | "tunnelCreate429"

/** Spends one of a counted fault: whether it fires for this job, stream or tunnel. */
export const take = (faults: Testing.Faults, knob: Counted): boolean => {
  if (faults[knob] <= 0) return false
  faults[knob] -= 1
  return true
}

/**
 * Answers a Hub request with the first injected error or redirect that matches its route, spending one;
 * whether it did. Injected errors come first, as the Hub's rate limiter answers before it looks at the token.
 */
export const answerInjected = (
  faults: Testing.Faults,
  route: Testing.HubRoute,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL
): boolean => {
  const matches = (f: { route: string; times: number }) =>
    f.times > 0 && (f.route === route || (f.route === "any" && route !== "hardware"))
  const fault = faults.hubErrors.find(matches)
  if (fault !== undefined) {
    fault.times -= 1
    if (fault.status === 429) {
      sendError(res, 429, RATE_LIMITED, rateLimitHeaders(fault.retryAfterSeconds ?? 0, HUB_API_POLICY))
      return true
    }
    sendError(
      res,
      fault.status,
      http.STATUS_CODES[fault.status] ?? "Injected error",
      fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) }
    )
    return true
  }
  const redirect = faults.hubRedirects.find(matches)
  if (redirect === undefined) return false
  redirect.times -= 1
  req.resume()
  const location =
    redirect.toOrigin === undefined
      ? url.pathname + url.search
      : new URL(url.pathname + url.search, redirect.toOrigin).href
  res.writeHead(redirect.status ?? 307, { location, "content-length": 0 })
  res.end()
  return true
}
