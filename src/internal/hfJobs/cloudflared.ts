/**
 * The caller's overrides of the cloudflared a tunnel sandbox's server downloads (`cloudflared` option of
 * `Sandbox.make`), checked before any job exists. The server checks them again (SBX_CLOUDFLARED_*), but a
 * bad value caught there costs a job start and surfaces only as a log line.
 */
import * as Validate from "../validate.js"

/** The first cloudflared release that accepts every flag the server passes (`--no-prechecks`: 2026.5.0). */
const MIN_VERSION = [2026, 5, 0] as const

const RELEASE = /^(\d+)\.(\d+)\.(\d+)$/

export interface Overrides {
  readonly version?: string | undefined
  readonly sha256?: string | undefined
  readonly baseUrl?: string | undefined
}

/** The overrides as given, or throws a `Validate.Invalid` naming the bad one (`cloudflared.version`), its value and what to do. */
export const check = (overrides: Overrides): Overrides => {
  const { version, sha256, baseUrl } = overrides
  const min = MIN_VERSION.join(".")
  if (version !== undefined && version !== "") {
    const match = RELEASE.exec(version)
    if (match === null) {
      throw new Validate.Invalid(
        "cloudflared.version",
        `${JSON.stringify(version)} is not a cloudflared release tag (YYYY.M.P, e.g. ${min}); ` +
          "leave it unset for the pinned release"
      )
    }
    const parts = match.slice(1).map(Number)
    const older = parts.findIndex((part, i) => part !== MIN_VERSION[i])
    if (older >= 0 && parts[older]! < MIN_VERSION[older]!) {
      throw new Validate.Invalid(
        "cloudflared.version",
        `${JSON.stringify(version)} is older than ${min}, the first cloudflared release with ` +
          `every flag hf-sandbox passes (--no-prechecks); use ${min} or newer, or leave it unset for the pinned release`
      )
    }
  }
  if (sha256 !== undefined && sha256 !== "" && !/^[0-9a-fA-F]{64}$/.test(sha256.trim())) {
    throw new Validate.Invalid(
      "cloudflared.sha256",
      `${JSON.stringify(sha256)} is not a sha256 digest (64 hex digits, from the release notes)`
    )
  }
  if (baseUrl !== undefined && baseUrl !== "" && !/^https?:\/\/\S+$/.test(baseUrl)) {
    throw new Validate.Invalid("cloudflared.baseUrl", `${JSON.stringify(baseUrl)} is not an http(s) URL`)
  }
  return overrides
}
