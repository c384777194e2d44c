/**
 * The namespace (user name) of a token, kept on disk between runs. The Hub's `whoami-v2` is strictly
 * rate-limited, and a CLI is a new process per command: without this every command would ask it.
 *
 * One file per token and endpoint, `<dir>/<hash>.json`, named by a SHA-256 of both (never the token
 * itself), holding only the name and when it was asked. The directory is 0700 and the file 0600,
 * written whole or not at all (temp file, then rename). An entry older than {@link MAX_AGE_MS}, or one
 * that cannot be read, is asked again; a cache that cannot be written costs only that.
 */
import { createHash } from "node:crypto"
import * as path from "node:path"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { writeSecret } from "./credentials.js"

/** A user may rename their account: a cached name is asked again after a day. */
const MAX_AGE_MS = 24 * 60 * 60 * 1000

/** What a Hub path segment can be; a file edited into something else is not trusted. */
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/

/** The file of a token on an endpoint. */
export const fileOf = (dir: string, endpoint: string, token: Redacted.Redacted<string>): string =>
  path.join(
    dir,
    `${createHash("sha256")
      .update(`hf-sandbox namespace\0${endpoint}\0${Redacted.value(token)}`)
      .digest("hex")}.json`
  )

const read = (fs: FileSystem.FileSystem, file: string, now: number) =>
  fs.readFileString(file).pipe(
    Effect.flatMap((text) =>
      Effect.try(() => {
        const entry = JSON.parse(text) as { readonly namespace?: unknown; readonly savedAtMs?: unknown }
        const fresh =
          typeof entry.savedAtMs === "number" && entry.savedAtMs <= now && now - entry.savedAtMs < MAX_AGE_MS
        return typeof entry.namespace === "string" && NAME.test(entry.namespace) && fresh ? entry.namespace : undefined
      })
    ),
    Effect.orElseSucceed(() => undefined)
  )

/** A cache that cannot be written costs only that: the failure is logged at debug level. */
const write = (fs: FileSystem.FileSystem, file: string, namespace: string, now: number) =>
  writeSecret(fs, file, `${JSON.stringify({ namespace, savedAtMs: now })}\n`).pipe(
    Effect.catchAll((error) => Effect.logDebug(`hf-sandbox: the namespace cache was not written: ${error.message}`))
  )

/** The token's namespace from the cache in `dir`, else from `ask`, which is then kept for the next run. */
export const cached = <E, R>(
  fs: FileSystem.FileSystem,
  dir: string,
  endpoint: string,
  token: Redacted.Redacted<string>,
  ask: Effect.Effect<string, E, R>
): Effect.Effect<string, E, R> =>
  Effect.gen(function* () {
    const file = fileOf(dir, endpoint, token)
    const now = yield* Clock.currentTimeMillis
    const known = yield* read(fs, file, now)
    if (known !== undefined) return known
    const namespace = yield* ask
    yield* write(fs, file, namespace, now)
    return namespace
  })
