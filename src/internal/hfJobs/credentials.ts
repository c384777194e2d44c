/**
 * The HF token, found as `huggingface_hub` finds it (`utils/_auth.py` `get_token`): the OIDC exchange
 * when `HF_OIDC_RESOURCE` is set (Trusted Publishers, `_oidc.py`), then `HF_TOKEN`, then
 * `HUGGING_FACE_HUB_TOKEN`, then the token file (`HF_TOKEN_PATH`, else `$HF_HOME/token`, with `~` and
 * `$VAR` expansion, `constants.py`). A file token from the OAuth login of `hf auth login` is refreshed
 * when less than a day of validity remains (`_refresh_oauth_token_if_needed`), and the refreshed token
 * is written back to `stored_tokens` and the token file. Each credential remembers its source, so a
 * rejection can say which token was refused. The variables are read in `config.ts` (`readEnv`), once.
 */
import { randomBytes } from "node:crypto"
import * as nodePath from "node:path"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as SynchronizedRef from "effect/SynchronizedRef"
import { StartError } from "../../SandboxError.js"
import { EFFECT } from "../surfaceTerms.js"

/** Where a token came from. */
export type Source =
  | { readonly _tag: "Option" }
  | { readonly _tag: "Oidc"; readonly resource: string }
  | { readonly _tag: "Env"; readonly name: "HF_TOKEN" | "HUGGING_FACE_HUB_TOKEN" }
  | { readonly _tag: "File"; readonly path: string }

/** The source in words, for errors (in the Effect API's terms: a surface says them in its own): never the token itself. */
export const describeSource = (source: Source): string => {
  switch (source._tag) {
    case "Option":
      return EFFECT.tokenOption
    case "Oidc":
      return `the OIDC exchange for HF_OIDC_RESOURCE=${source.resource}`
    case "Env":
      return source.name
    case "File":
      return `the token file ${source.path}`
  }
}

export interface Credential {
  readonly token: Redacted.Redacted<string>
  readonly source: Source
  /** Epoch ms after which discovery runs again (a refresh or re-exchange comes due); `undefined`: never. */
  readonly recheckAt: number | undefined
}

/** `huggingface_hub`'s `_clean_token`: CR and LF removed anywhere, then trimmed; empty means none. */
export const cleanToken = (raw: string | undefined): string | undefined => {
  const value = raw?.replace(/[\r\n]/g, "").trim()
  return value === undefined || value === "" ? undefined : value
}

/** What the discovery reads of the environment, read once through `Config` (`config.ts`). */
export interface Env {
  readonly oidcResource: string | undefined
  readonly oidcIdToken: Redacted.Redacted<string> | undefined
  readonly githubActions: boolean
  readonly actionsRequestUrl: string | undefined
  readonly actionsRequestToken: Redacted.Redacted<string> | undefined
  readonly hfToken: Redacted.Redacted<string> | undefined
  readonly legacyToken: Redacted.Redacted<string> | undefined
  readonly tokenPath: string
  readonly storedTokensPath: string
  readonly clientId: string
}

/** Refresh when less than this remains (`_OAUTH_REFRESH_MARGIN`). */
const REFRESH_MARGIN_S = 24 * 3600
/** Look again after this when there is nothing to refresh, or a refresh failed (`_OAUTH_RECHECK_INTERVAL`). */
const RECHECK_S = 300
/** Re-exchange an auto-minted OIDC token this long before it expires (`_OIDC_REFRESH_MARGIN`). */
const OIDC_MARGIN_S = 300
/** `HF_HUB_DOWNLOAD_TIMEOUT`'s default, which bounds the Python client's token requests. */
const REQUEST_TIMEOUT = Duration.seconds(10)

const noToken = (detail: string, reason: "NoToken" | "HubRejected" = "NoToken") =>
  new StartError({ provider: "hf-jobs", reason, detail })

/**
 * A token every Hub client accepts: `hf_` then visible ASCII. Anything else would fail before any
 * request (`@huggingface/hub` refuses other prefixes, `fetch` refuses such a header), and must not be
 * retried as if the network had failed. The message says what is wrong, never the token.
 */
export const validate = (value: string, source: Source): Effect.Effect<Redacted.Redacted<string>, StartError> => {
  const bad = [...value].findIndex((c) => c < "!" || c > "~")
  const problem = !value.startsWith("hf_")
    ? "it does not start with hf_"
    : bad >= 0
      ? `it has a space, control or non-ASCII character at position ${bad + 1}`
      : undefined
  return problem === undefined
    ? Effect.succeed(Redacted.make(value))
    : Effect.fail(
        noToken(
          `the token from ${describeSource(source)} is malformed: ${problem} (${value.length} characters). ` +
            "Copy a token from https://huggingface.co/settings/tokens or run `hf auth login` again."
        )
      )
}

// ---- HTTP ---------------------------------------------------------------------------------------

interface Answer {
  readonly status: number
  readonly body: Record<string, unknown>
}

/** One request with the fiber's abort signal and a bound; redirects are not followed (secrets travel in the body). */
const request = (url: string, init: RequestInit, userAgent: string): Effect.Effect<Answer, string> =>
  Effect.tryPromise({
    try: async (signal) => {
      const headers = new Headers(init.headers)
      headers.set("user-agent", userAgent)
      const response = await fetch(url, { ...init, headers, signal, redirect: "manual" })
      const text = await response.text()
      let body: Record<string, unknown> = {}
      try {
        const parsed: unknown = JSON.parse(text)
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>
        }
      } catch {
        // Not JSON (a proxy's error page): the status says enough.
      }
      return { status: response.status, body }
    },
    catch: (cause) =>
      `no answer from ${new URL(url).origin} (${cause instanceof Error ? cause.message : String(cause)})`
  }).pipe(
    Effect.timeoutFail({
      duration: REQUEST_TIMEOUT,
      onTimeout: () => `no answer from ${new URL(url).origin} within ${Duration.format(REQUEST_TIMEOUT)}`
    })
  )

const str = (body: Record<string, unknown>, key: string) =>
  typeof body[key] === "string" ? (body[key] as string) : undefined
const num = (body: Record<string, unknown>, key: string) => {
  const value = Number(body[key])
  return body[key] === undefined || body[key] === null || !Number.isFinite(value) ? undefined : value
}
/** The OAuth error of an answer (`{"error", "error_description"}`), or its status. */
const oauthError = (answer: Answer) =>
  [str(answer.body, "error") ?? `HTTP ${answer.status}`, str(answer.body, "error_description")]
    .filter((s) => s !== undefined && s !== "")
    .join(": ")

// ---- OIDC (Trusted Publishers) ------------------------------------------------------------------

const oidc = (env: Env, endpoint: string, resource: string, userAgent: string, nowMs: number) =>
  Effect.gen(function* () {
    const source: Source = { _tag: "Oidc", resource }
    const supplied = env.oidcIdToken
    let subject: Redacted.Redacted<string>
    if (supplied !== undefined) {
      subject = supplied
    } else if (!env.githubActions) {
      return yield* noToken(
        `HF_OIDC_RESOURCE=${resource} is set but no OIDC id token is available: not running in a supported CI ` +
          "provider (GitHub Actions) and HF_OIDC_ID_TOKEN is not set. Set HF_OIDC_ID_TOKEN to the id token " +
          "minted by your CI provider, or unset HF_OIDC_RESOURCE."
      )
    } else if (env.actionsRequestUrl === undefined || env.actionsRequestToken === undefined) {
      return yield* noToken(
        `HF_OIDC_RESOURCE=${resource} is set but GitHub Actions gave no ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN: ` +
          "give the workflow job `permissions: id-token: write`."
      )
    } else {
      // The audience is the Hub that validates the id token.
      const url = new URL(env.actionsRequestUrl)
      url.searchParams.set("audience", endpoint)
      const answer = yield* request(
        url.toString(),
        { headers: { authorization: `Bearer ${Redacted.value(env.actionsRequestToken)}` } },
        userAgent
      ).pipe(Effect.mapError((why) => noToken(`cannot get an OIDC id token from GitHub Actions: ${why}`)))
      const value = str(answer.body, "value")
      if (answer.status !== 200 || value === undefined) {
        return yield* noToken(`GitHub Actions refused an OIDC id token (HTTP ${answer.status})`)
      }
      subject = Redacted.make(value)
    }
    const answer = yield* request(
      `${endpoint}/oauth/token`,
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
          subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
          subject_token: Redacted.value(subject),
          resource
        })
      },
      userAgent
    ).pipe(Effect.mapError((why) => noToken(`the OIDC exchange for HF_OIDC_RESOURCE=${resource} failed: ${why}`)))
    const accessToken = str(answer.body, "access_token")
    if (answer.status < 200 || answer.status >= 300 || accessToken === undefined) {
      return yield* noToken(
        `the Hub refused the OIDC exchange for HF_OIDC_RESOURCE=${resource} (${oauthError(answer)}). Check the ` +
          "Trusted Publisher configured for it on the Hub, or unset HF_OIDC_RESOURCE.",
        "HubRejected"
      )
    }
    const expiresIn = num(answer.body, "expires_in") ?? 3600
    // A supplied id token cannot be minted again, so it is kept its whole life; a minted one is renewed early.
    const margin = supplied !== undefined ? 0 : OIDC_MARGIN_S
    return {
      token: yield* validate(accessToken, source),
      source,
      recheckAt: nowMs + Math.max(expiresIn - margin, 0) * 1000
    } satisfies Credential
  })

// ---- the token file and its OAuth refresh -------------------------------------------------------

type Ini = Map<string, Map<string, string>>

/** `configparser` as `huggingface_hub` uses it (no interpolation, keys lower-cased, `=` or `:`). */
const parseIni = (text: string): Ini => {
  const sections: Ini = new Map()
  let current: Map<string, string> | undefined
  let lastKey: string | undefined
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim()
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue
    const header = /^\[(.+)\]$/.exec(trimmed)
    if (header !== null) {
      current = new Map()
      sections.set(header[1]!, current)
      lastKey = undefined
    } else if (current !== undefined && /^\s/.test(line) && lastKey !== undefined) {
      current.set(lastKey, `${current.get(lastKey)}\n${trimmed}`)
    } else if (current !== undefined) {
      const at = trimmed.search(/[=:]/)
      if (at > 0) {
        lastKey = trimmed.slice(0, at).trim().toLowerCase()
        current.set(lastKey, trimmed.slice(at + 1).trim())
      }
    }
  }
  sections.delete("DEFAULT")
  return sections
}

/** `configparser.write` of `_save_stored_tokens_full`: sections sorted by name. */
const formatIni = (sections: Ini): string =>
  [...sections.keys()]
    .sort()
    .map((name) => `[${name}]\n${[...sections.get(name)!].map(([k, v]) => `${k} = ${v}\n`).join("")}\n`)
    .join("")

/**
 * Replaces `file` whole: a temp file created 0600 next to it, then renamed over it, so a reader sees
 * the old content or the new, never a part. The directory is made owner-only, as `_write_secret` does.
 */
export const writeSecret = (fs: FileSystem.FileSystem, file: string, content: string) =>
  Effect.gen(function* () {
    const dir = nodePath.dirname(file)
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 })
    const temp = nodePath.join(dir, `.${nodePath.basename(file)}.${randomBytes(6).toString("hex")}.tmp`)
    yield* Effect.acquireUseRelease(
      fs.writeFileString(temp, content, { flag: "wx", mode: 0o600 }).pipe(Effect.as(temp)),
      () => Effect.zipRight(fs.chmod(temp, 0o600), fs.rename(temp, file)),
      (_, exit) => (exit._tag === "Success" ? Effect.void : Effect.ignore(fs.remove(temp)))
    )
    yield* Effect.ignore(fs.chmod(dir, 0o700))
  })

const readStored = (fs: FileSystem.FileSystem, env: Env) =>
  fs.readFileString(env.storedTokensPath).pipe(
    Effect.map(parseIni),
    Effect.orElseSucceed((): Ini => new Map())
  )

const readTokenFile = (fs: FileSystem.FileSystem, path: string) =>
  fs.readFileString(path).pipe(
    Effect.map(cleanToken),
    Effect.catchAll((error) =>
      error._tag === "SystemError" && error.reason === "NotFound"
        ? Effect.succeed(undefined)
        : Effect.fail(noToken(`cannot read the token file ${path}: ${error.message}`))
    )
  )

/**
 * One refresh at a time in this process: with refresh tokens rotated, a second concurrent refresh would
 * spend a token the first already spent. (Python's lock is a `flock` Node cannot take; across
 * processes, a refresh that loses adopts the token the winner stored.)
 */
const refreshLock = Effect.unsafeMakeSemaphore(1)

/**
 * The file token, refreshed when it is an OAuth token with less than a day left. Best effort, as in
 * `huggingface_hub`: a failed refresh keeps the token (the Hub's 401 then names the file) and warns.
 */
const refreshed = (
  fs: FileSystem.FileSystem,
  env: Env,
  endpoint: string,
  userAgent: string,
  tokenValue: string,
  nowMs: number
): Effect.Effect<{ readonly token: string; readonly recheckAt: number | undefined }> =>
  Effect.gen(function* () {
    const nowS = Math.floor(nowMs / 1000)
    const stored = yield* readStored(fs, env)
    const entry = [...stored].find(([, fields]) => fields.get("hf_token") === tokenValue)
    const expiresAt = Number.parseInt(entry?.[1].get("expires_at") ?? "", 10)
    if (entry === undefined || entry[1].get("refresh_token") === undefined || !Number.isFinite(expiresAt)) {
      return { token: tokenValue, recheckAt: nowMs + RECHECK_S * 1000 }
    }
    if (expiresAt - REFRESH_MARGIN_S > nowS)
      return { token: tokenValue, recheckAt: (expiresAt - REFRESH_MARGIN_S) * 1000 }
    return yield* refreshLock.withPermits(1)(refreshNow(fs, env, endpoint, userAgent, entry[0], tokenValue, nowMs))
  })

/** The refresh itself, under {@link refreshLock}. */
const refreshNow = (
  fs: FileSystem.FileSystem,
  env: Env,
  endpoint: string,
  userAgent: string,
  name: string,
  tokenValue: string,
  nowMs: number
): Effect.Effect<{ readonly token: string; readonly recheckAt: number | undefined }> =>
  Effect.gen(function* () {
    const nowS = Math.floor(nowMs / 1000)
    const keep = (recheckAt: number | undefined) => ({ token: tokenValue, recheckAt })
    // Read again under the lock: another client may have refreshed meanwhile; then its token is adopted.
    const fields = (yield* readStored(fs, env)).get(name)
    const current = fields?.get("hf_token")
    if (current !== undefined && current !== tokenValue) {
      const until = Number.parseInt(fields?.get("expires_at") ?? "", 10)
      return {
        token: current,
        recheckAt: Math.max(nowMs + RECHECK_S * 1000, Number.isFinite(until) ? (until - REFRESH_MARGIN_S) * 1000 : 0)
      }
    }
    const refreshToken = fields?.get("refresh_token")
    if (refreshToken === undefined) return keep(nowMs + RECHECK_S * 1000)

    const answer = yield* Effect.either(
      request(
        `${endpoint}/oauth/token`,
        {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({
            grant_type: "refresh_token",
            refresh_token: refreshToken,
            client_id: env.clientId
          }).toString()
        },
        userAgent
      )
    )
    const newToken = answer._tag === "Right" ? cleanToken(str(answer.right.body, "access_token")) : undefined
    if (answer._tag === "Left" || newToken === undefined || answer.right.status >= 300) {
      const error = answer._tag === "Left" ? undefined : str(answer.right.body, "error")
      if (error === "invalid_grant") {
        // Another process may have refreshed first and spent the refresh token: adopt its result.
        const now = (yield* readStored(fs, env)).get(name)?.get("hf_token")
        if (now !== undefined && now !== tokenValue) return { token: now, recheckAt: nowMs + RECHECK_S * 1000 }
        yield* Effect.logWarning(
          `hf-sandbox: your Hugging Face access token \`${name}\` has expired and could not be refreshed ` +
            "(session expired or revoked). Run `hf auth login` to re-authenticate."
        )
        return keep(undefined)
      }
      const why = answer._tag === "Left" ? answer.left : oauthError(answer.right)
      yield* Effect.logWarning(
        `hf-sandbox: could not refresh your Hugging Face access token \`${name}\` (${why}); will retry later`
      )
      return keep(nowMs + RECHECK_S * 1000)
    }
    const expiresIn = num(answer.right.body, "expires_in")
    const newExpiresAt = expiresIn === undefined ? undefined : nowS + Math.floor(expiresIn)
    const saved = Effect.gen(function* () {
      // Read again: the file may have changed since; only this section is replaced, as `_save_token` does.
      const latest = yield* readStored(fs, env)
      const fields = new Map([["hf_token", newToken]])
      // The server may rotate the refresh token; the old one is kept if it does not.
      fields.set("refresh_token", str(answer.right.body, "refresh_token") ?? refreshToken)
      if (newExpiresAt !== undefined) fields.set("expires_at", String(newExpiresAt))
      latest.set(name, fields)
      yield* writeSecret(fs, env.storedTokensPath, formatIni(latest))
      // The active token changes only if nobody switched to another one meanwhile.
      if ((yield* readTokenFile(fs, env.tokenPath)) === tokenValue) yield* writeSecret(fs, env.tokenPath, newToken)
    })
    yield* saved.pipe(
      Effect.tap(() => Effect.logInfo(`hf-sandbox: refreshed the Hugging Face access token \`${name}\``)),
      Effect.catchAll((error) =>
        Effect.logWarning(
          `hf-sandbox: refreshed the Hugging Face access token \`${name}\` but could not store it ` +
            `(${error.message}); run \`hf auth login\` again if later runs are refused`
        )
      )
    )
    return {
      token: newToken,
      recheckAt: Math.max(
        nowMs + RECHECK_S * 1000,
        newExpiresAt === undefined ? 0 : (newExpiresAt - REFRESH_MARGIN_S) * 1000
      )
    }
  })

/**
 * The credential, in `huggingface_hub`'s order: the explicit option, else OIDC → HF_TOKEN →
 * HUGGING_FACE_HUB_TOKEN → token file (refreshed near expiry) → a `NoToken` error.
 */
export const resolve = (options: {
  readonly fs: FileSystem.FileSystem
  readonly env: Env
  readonly endpoint: string
  readonly userAgent: string
  readonly explicit: Redacted.Redacted<string> | undefined
}): Effect.Effect<Credential, StartError> =>
  Effect.gen(function* () {
    const { env, explicit, fs } = options
    const nowMs = yield* Clock.currentTimeMillis
    const fixed = (value: Redacted.Redacted<string>, source: Source) =>
      Effect.map(
        validate(Redacted.value(value), source),
        (t): Credential => ({ token: t, source, recheckAt: undefined })
      )
    const option = explicit === undefined ? undefined : cleanToken(Redacted.value(explicit))
    if (option !== undefined) return yield* fixed(Redacted.make(option), { _tag: "Option" })
    if (env.oidcResource !== undefined) {
      return yield* oidc(env, options.endpoint, env.oidcResource, options.userAgent, nowMs)
    }
    if (env.hfToken !== undefined) return yield* fixed(env.hfToken, { _tag: "Env", name: "HF_TOKEN" })
    if (env.legacyToken !== undefined) {
      return yield* fixed(env.legacyToken, { _tag: "Env", name: "HUGGING_FACE_HUB_TOKEN" })
    }
    const source: Source = { _tag: "File", path: env.tokenPath }
    const fromFile = yield* readTokenFile(fs, env.tokenPath)
    if (fromFile === undefined) {
      return yield* noToken(
        `no Hugging Face token found. Log in with \`hf auth login\`, set HF_TOKEN, or ${EFFECT.noToken}. ` +
          "Jobs need a token with write access. " +
          `(Looked at HF_TOKEN, HUGGING_FACE_HUB_TOKEN and ${env.tokenPath}.)`
      )
    }
    yield* validate(fromFile, source)
    const current = yield* refreshed(fs, env, options.endpoint, options.userAgent, fromFile, nowMs)
    return { token: yield* validate(current.token, source), source, recheckAt: current.recheckAt }
  })

/**
 * `resolve` kept until its credential's `recheckAt`, then resolved again; a failure is not kept (a
 * user may log in meanwhile).
 */
export const cachedUntilRecheck = <E>(
  resolveOnce: Effect.Effect<Credential, E>
): Effect.Effect<Effect.Effect<Credential, E>> =>
  Effect.map(SynchronizedRef.make<Credential | undefined>(undefined), (ref) =>
    SynchronizedRef.modifyEffect(ref, (cached) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        cached !== undefined && (cached.recheckAt === undefined || now < cached.recheckAt)
          ? Effect.succeed([cached, cached] as const)
          : Effect.map(resolveOnce, (fresh) => [fresh, fresh] as const)
      )
    )
  )
