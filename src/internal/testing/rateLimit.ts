/** The Hub's rate limiter as the emulator runs it: one fixed window across every Hub API route. */
import type { Settings } from "./settings.js"

/** The Hub's policy for the `"api"` bucket of a free user (hub-docs rate-limits.md): 1,000 per 5 minutes. */
export const HUB_API_POLICY = { quota: 1000, windowSeconds: 300 }

export const RATE_LIMITED = "You have exceeded our rate limit. Please retry later."

/**
 * The headers of the Hub's 429 (IETF draft-ietf-httpapi-ratelimit-headers-09, as hub-docs
 * rate-limits.md shows them): what is left in the window and the seconds until it resets, and the policy.
 * Never `Retry-After`.
 */
export const rateLimitHeaders = (resetSeconds: number, policy: { quota: number; windowSeconds: number }) => ({
  ratelimit: `"api";r=0;t=${Math.max(0, Math.ceil(resetSeconds))}`,
  "ratelimit-policy": `"fixed window";"api";q=${policy.quota};w=${policy.windowSeconds}`
})

/** The fixed window of the rate limiter: when the current one started and how many requests it had. */
export class FixedWindow {
  windowStart = Date.now()
  windowCount = 0

  constructor(readonly limit: Settings["rateLimit"]) {}

  /** Counts the request in the limiter's window; the 429's reset time when the quota is used up. */
  take(): { resetSeconds: number; policy: { quota: number; windowSeconds: number } } | undefined {
    const limit = this.limit
    if (limit === undefined) return undefined
    const now = Date.now()
    if (now - this.windowStart >= limit.windowMs) {
      // Fixed windows, back to back from the first one: a quiet spell does not shift them.
      this.windowStart += Math.floor((now - this.windowStart) / limit.windowMs) * limit.windowMs
      this.windowCount = 0
    }
    this.windowCount += 1
    if (this.windowCount <= limit.quota) return undefined
    return {
      resetSeconds: (this.windowStart + limit.windowMs - now) / 1000,
      policy: { quota: limit.quota, windowSeconds: Math.ceil(limit.windowMs / 1000) }
    }
  }
}
