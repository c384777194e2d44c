/**
 * Finding the tunnel: the in-sandbox server prints one marker line once cloudflared's edge connection is
 * registered, and the client matches only that line. cloudflared's own output is never parsed: it contains
 * other trycloudflare URLs (the `api.trycloudflare.com` link in its banner and failure messages).
 */
import * as Option from "effect/Option"
import { TUNNEL_MARKER } from "./bootstrap.js"

const MARKER = new RegExp(`^\\s*${TUNNEL_MARKER}\\s+(\\{.*\\})\\s*$`)
const TUNNEL_URL = /^https:\/\/(?!api\.)[a-z0-9-]+\.trycloudflare\.com$/

/** The tunnel URL announced by a log line, if the line is the server's marker and the URL is a quick tunnel. */
export const parseMarker = (line: string): Option.Option<string> => {
  const match = MARKER.exec(line)
  if (match === null) return Option.none()
  try {
    const url = (JSON.parse(match[1]!) as { url?: unknown }).url
    return typeof url === "string" && TUNNEL_URL.test(url) ? Option.some(url) : Option.none()
  } catch {
    return Option.none()
  }
}

/**
 * Whether a Jobs-proxy URL is the one of this job's server port under the Jobs domain; only then may it
 * receive the HF token.
 */
export const isJobProxyUrl = (url: string, jobId: string, port: number, jobsDomain: string): boolean => {
  try {
    const parsed = new URL(url)
    return (
      parsed.protocol === "https:" &&
      parsed.username === "" &&
      parsed.password === "" &&
      parsed.hostname.startsWith(`${jobId}--${port}.`) &&
      parsed.hostname === `${jobId}--${port}.${jobsDomain}`
    )
  } catch {
    return false
  }
}
