/**
 * The emulated Hub's token endpoint, `POST /oauth/token`, and the credentials it issues: the refresh of
 * the OAuth tokens `hf auth login` stores (`grant_type=refresh_token`, form-encoded, as
 * `huggingface_hub.utils._oauth_device.refresh_access_token` sends it) and the Trusted Publishers OIDC
 * exchange (RFC 8693, JSON, as `huggingface_hub._oidc.exchange_oidc_token` sends it, answered as
 * hub-docs `trusted-publishers.md` documents). Also a stand-in for the GitHub Actions id-token endpoint
 * (`ACTIONS_ID_TOKEN_REQUEST_URL`), which is GitHub's, not the Hub's.
 */
import { randomBytes } from "node:crypto"
import type * as http from "node:http"

/** `huggingface_hub.constants.DEVICE_CODE_OAUTH_CLIENT_ID`: the client `hf auth login` logs in with. */
export const DEVICE_CODE_CLIENT_ID = "26be6b09-91c5-47da-9861-d2d2bb7a7e36"
const REFRESH_GRANT = "refresh_token"
const EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
const ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
/** `hf auth login` tokens live 30 days; Trusted Publisher tokens 60 minutes (hub-docs). */
const OAUTH_LIFETIME_S = 30 * 24 * 3600
const OIDC_LIFETIME_S = 3600
/** Repo resources of an exchange: `ns/name` or `{datasets,spaces,kernels,buckets}/ns/name`; a user has no slash. */
const RESOURCE = /^(?:(?:datasets|spaces|kernels|buckets)\/)?[A-Za-z0-9][\w.-]*\/[\w.-]+$|^[A-Za-z0-9][\w-]*$/

const secret = (prefix: string) => `${prefix}${randomBytes(17).toString("hex")}`

/** What a bearer token is to the emulated Hub. */
export type Verdict =
  | { readonly _tag: "Valid" }
  | { readonly _tag: "Invalid" }
  /** A Trusted Publisher token: a repo's write token or a user's read-only `gated-repos` token, never Jobs. */
  | { readonly _tag: "Scoped"; readonly resource: string }

interface Issued {
  readonly kind: "oauth" | "oidc"
  readonly expiresAtMs: number
  readonly resource?: string | undefined
}

interface Publisher {
  readonly resource: string
  readonly requestToken: string
}

export interface Grant {
  readonly accessToken: string
  readonly refreshToken: string
  readonly expiresIn: number
}

export interface TrustedPublisher {
  readonly resource: string
  readonly idToken: string
  readonly actionsRequestUrl: string
  readonly actionsRequestToken: string
}

const oauthError = (res: http.ServerResponse, status: number, error: string, description: string) =>
  sendJson(res, status, { error, error_description: description })

const sendJson = (res: http.ServerResponse, status: number, body: unknown) => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store"
  })
  res.end(text)
}

export class OAuthState {
  private readonly access = new Map<string, Issued>()
  /** Live refresh tokens: each is spent by one refresh (rotated), as a rotating server does. */
  private readonly refresh = new Set<string>()
  /** Minted id tokens → the publisher they prove and the audience they were minted for. */
  private readonly idTokens = new Map<string, { readonly resource: string; readonly audience: string }>()
  private readonly publishers = new Map<string, Publisher>()

  constructor(
    private readonly staticToken: string,
    private readonly hubUrl: () => string
  ) {}

  /** The verdict on `Authorization: Bearer <token>`. An expired token is as invalid as an unknown one. */
  verify(authorization: string | undefined): Verdict {
    const token = /^Bearer (.+)$/.exec(authorization ?? "")?.[1]
    if (token === undefined) return { _tag: "Invalid" }
    if (token === this.staticToken) return { _tag: "Valid" }
    const issued = this.access.get(token)
    if (issued === undefined || Date.now() >= issued.expiresAtMs) return { _tag: "Invalid" }
    return issued.kind === "oidc" ? { _tag: "Scoped", resource: issued.resource ?? "" } : { _tag: "Valid" }
  }

  /** What `hf auth login` receives from the device-code flow: an access token and its refresh token. */
  login(expiresInS: number = OAUTH_LIFETIME_S): Grant {
    const accessToken = secret("hf_oauth_")
    const refreshToken = secret("hf_oauth_refresh_")
    this.access.set(accessToken, { kind: "oauth", expiresAtMs: Date.now() + expiresInS * 1000 })
    this.refresh.add(refreshToken)
    return { accessToken, refreshToken, expiresIn: expiresInS }
  }

  trust(resource: string): TrustedPublisher {
    const requestToken = secret("gha_")
    this.publishers.set(requestToken, { resource, requestToken })
    const idToken = this.mint(resource, this.hubUrl())
    return {
      resource,
      idToken,
      actionsRequestUrl: `${this.hubUrl()}/__emulator/actions-id-token?api-version=2.0`,
      actionsRequestToken: requestToken
    }
  }

  private mint(resource: string, audience: string) {
    const idToken = `eyJ${randomBytes(24).toString("base64url")}`
    this.idTokens.set(idToken, { resource, audience })
    return idToken
  }

  /** GitHub's `ACTIONS_ID_TOKEN_REQUEST_URL`: `GET ?audience=…` with the request token as bearer → `{"value": jwt}`. */
  actionsIdToken(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1]
    const publisher = bearer === undefined ? undefined : this.publishers.get(bearer)
    if (req.method !== "GET") return sendJson(res, 405, { message: "Method not allowed" })
    if (publisher === undefined) return sendJson(res, 401, { message: "Bad credentials" })
    const audience = url.searchParams.get("audience") ?? ""
    return sendJson(res, 200, { count: 1, value: this.mint(publisher.resource, audience) })
  }

  /** `POST /oauth/token`. The body is read whole; its secrets are never recorded. */
  async token(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) {
    if (req.method !== "POST") return sendJson(res, 405, { error: "Method not allowed" })
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
    let params: Record<string, unknown>
    try {
      if (type === "application/x-www-form-urlencoded") {
        params = Object.fromEntries(new URLSearchParams(body.toString("utf8")))
      } else if (type === "application/json") {
        const parsed: unknown = JSON.parse(body.toString("utf8"))
        params = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? { ...parsed } : {}
      } else {
        return oauthError(res, 400, "invalid_request", "unsupported content type")
      }
    } catch {
      return oauthError(res, 400, "invalid_request", "malformed request body")
    }
    const str = (key: string) => (typeof params[key] === "string" ? (params[key] as string) : undefined)
    const grant = str("grant_type")
    if (grant === REFRESH_GRANT) return this.refreshGrant(res, str("client_id"), str("refresh_token"))
    if (grant === EXCHANGE_GRANT) {
      return this.exchange(res, str("subject_token_type"), str("subject_token"), str("resource"))
    }
    if (grant === undefined) return oauthError(res, 400, "invalid_request", "missing grant_type")
    return oauthError(res, 400, "unsupported_grant_type", `grant_type ${grant} is not supported`)
  }

  private refreshGrant(res: http.ServerResponse, clientId: string | undefined, refreshToken: string | undefined) {
    if (clientId === undefined || refreshToken === undefined) {
      return oauthError(res, 400, "invalid_request", "client_id and refresh_token are required")
    }
    if (clientId !== DEVICE_CODE_CLIENT_ID) return oauthError(res, 401, "invalid_client", "unknown client")
    if (!this.refresh.delete(refreshToken)) {
      return oauthError(res, 400, "invalid_grant", "The refresh token is invalid, expired or revoked")
    }
    const grant = this.login()
    return sendJson(res, 200, {
      access_token: grant.accessToken,
      token_type: "bearer",
      expires_in: grant.expiresIn,
      refresh_token: grant.refreshToken
    })
  }

  private exchange(
    res: http.ServerResponse,
    subjectTokenType: string | undefined,
    subjectToken: string | undefined,
    resource: string | undefined
  ) {
    if (subjectTokenType !== ID_TOKEN_TYPE || subjectToken === undefined || resource === undefined) {
      return oauthError(
        res,
        400,
        "invalid_request",
        "subject_token, subject_token_type (id_token) and resource are required"
      )
    }
    if (!RESOURCE.test(resource)) return oauthError(res, 400, "invalid_request", `invalid resource ${resource}`)
    const claims = this.idTokens.get(subjectToken)
    if (claims === undefined || claims.resource !== resource) {
      return oauthError(res, 400, "invalid_grant", "No trusted publisher matches this token")
    }
    if (claims.audience !== this.hubUrl()) {
      return oauthError(res, 400, "invalid_grant", "Audience check failed")
    }
    const accessToken = secret(resource.includes("/") ? "hf_jwt_" : "hf_oauth_")
    this.access.set(accessToken, { kind: "oidc", expiresAtMs: Date.now() + OIDC_LIFETIME_S * 1000, resource })
    return sendJson(res, 200, {
      access_token: accessToken,
      token_type: "bearer",
      expires_in: OIDC_LIFETIME_S,
      issued_token_type: ACCESS_TOKEN_TYPE
    })
  }
}
