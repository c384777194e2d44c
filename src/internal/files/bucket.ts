/**
 * `files.toHub` to a Storage Bucket: bucket storage speaks Xet, which a stdlib program cannot, so the
 * upload runs the image's own `hf` CLI in the sandbox (`huggingface_hub` ≥ 1.5.0, the first with
 * buckets): `hf buckets cp` for a file, `hf buckets sync` for a folder. Its version is checked first, so
 * that a missing or old `hf` fails before anything moves, saying what to install. The token reaches `hf`
 * as `HF_TOKEN` in that one command's environment, never in its argv.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type { HubBucketTarget, HubBucketUpload, HubTarget, ToHubOptions } from "../../Files.js"
import { HubTransferError, InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import type { Context } from "./context.js"
import { discoveredHub } from "./hub.js"

const OPERATION = "files.toHub"
const BUCKET = /^[\w.-]+\/[\w.-]+$/
/** The first `huggingface_hub` with `hf buckets` (its Buckets API). */
const MINIMUM: readonly [number, number, number] = [1, 5, 0]
const INSTALL = "pip install -U huggingface_hub"

/** Whether `toHub`'s target is a bucket (`{ bucket }`) rather than a repo (`{ repo }`). */
export const isBucketTarget = (target: HubTarget | HubBucketTarget): target is HubBucketTarget =>
  typeof target === "object" && target !== null && "bucket" in target && !("repo" in target)

/** Prints `hf`'s version, or exits 127 when there is no `hf` on the sandbox's PATH. */
const VERSION_SCRIPT = "command -v hf >/dev/null 2>&1 || exit 127; exec hf version"

/**
 * A folder is synced, a file copied (`hf buckets cp` refuses folders); the first line of stdout says which,
 * the rest is `hf`'s.
 */
const UPLOAD_SCRIPT = [
  'if [ -d "$1" ]; then echo sync; exec hf buckets sync "$1" "$2"; fi',
  '[ -e "$1" ] || { echo "no such file or folder in the sandbox: $1" >&2; exit 66; }',
  'echo cp; exec hf buckets cp "$1" "$2"'
].join("\n")

interface Ran {
  readonly exitCode: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command in the sandbox to its end: its exit code and its output, decoded whole. */
const runToEnd = (ctx: Context, command: ReadonlyArray<string>, env: Record<string, string>) =>
  Stream.runCollect(ctx.execStream(command, { env })).pipe(
    Effect.map((events): Ran => {
      const stdout: Array<Uint8Array> = []
      const stderr: Array<Uint8Array> = []
      let exitCode: number | null = null
      for (const event of Chunk.toReadonlyArray(events)) {
        if (event._tag === "Stdout") stdout.push(event.data)
        else if (event._tag === "Stderr") stderr.push(event.data)
        else if (event._tag === "Exit") exitCode = event.exitCode
      }
      const text = (chunks: Array<Uint8Array>) => new TextDecoder().decode(Buffer.concat(chunks))
      return { exitCode, stdout: text(stdout), stderr: text(stderr) }
    })
  )

/** `x.y.z` as numbers, from the first version in `text`. */
const versionIn = (text: string) => {
  const match = /(\d+)\.(\d+)\.(\d+)/.exec(text)
  return match === null ? undefined : ([Number(match[1]), Number(match[2]), Number(match[3])] as const)
}

const atLeast = (version: ReadonlyArray<number>, minimum: ReadonlyArray<number>) => {
  for (const [i, part] of minimum.entries()) {
    if (version[i]! !== part) return version[i]! > part
  }
  return true
}

/** What the failure of `hf` says, as a reason: its own words decide (it prints the Hub's status). */
const reasonOf = (stderr: string): HubTransferError["reason"] =>
  /\b(401|403)\b|Unauthorized|Forbidden/i.test(stderr)
    ? "Unauthorized"
    : /\b404\b|not found/i.test(stderr)
      ? "NotFound"
      : "Failed"

const checked = (src: string, target: HubBucketTarget) => {
  const bad = (argument: string, detail: string) =>
    Effect.fail(new InvalidArgumentError({ operation: OPERATION, argument, detail }))
  if (typeof target.bucket !== "string" || !BUCKET.test(target.bucket) || target.bucket.includes("..")) {
    return bad("bucket", `${JSON.stringify(target.bucket)} is not a bucket id: use "namespace/name"`)
  }
  const path = target.path ?? ""
  if (typeof path !== "string" || path.includes("\0") || path.startsWith("/") || path.split("/").includes("..")) {
    return bad("path", `${JSON.stringify(target.path)} is not a path in the bucket: give a relative path`)
  }
  if (typeof src !== "string" || src === "" || src.includes("\0")) {
    return bad("src", `${JSON.stringify(src)} is not a path in the sandbox: give a file or directory path`)
  }
  return Effect.succeed({ bucket: target.bucket, destination: `hf://buckets/${target.bucket}/${path}` })
}

/** `files.toHub` to a bucket (see the module docs). */
export const toBucket = (
  ctx: Context,
  src: string,
  target: HubBucketTarget,
  options: ToHubOptions = {}
): Effect.Effect<HubBucketUpload, OperationError> =>
  Effect.flatMap(checked(src, target), ({ bucket, destination }) =>
    Effect.gen(function* () {
      const failure = (reason: HubTransferError["reason"], detail: string, status?: number) =>
        new HubTransferError({ operation: OPERATION, repo: `bucket ${bucket}`, reason, detail, status })
      const found = yield* runToEnd(ctx, ["sh", "-c", VERSION_SCRIPT], {})
      const version = found.exitCode === 0 ? versionIn(found.stdout) : undefined
      if (found.exitCode === 127) {
        return yield* Effect.fail(
          failure("Unsupported", `a bucket upload runs the \`hf\` CLI, and the sandbox has none on its PATH`)
        )
      }
      if (version === undefined || !atLeast(version, MINIMUM)) {
        const have = version === undefined ? "an `hf` whose version is unknown" : `hf ${version.join(".")}`
        return yield* Effect.fail(
          failure(
            "Unsupported",
            `a bucket upload needs \`hf\` from huggingface_hub ${MINIMUM.join(".")} or later (\`hf buckets\`), and the sandbox has ${have}: ${INSTALL}`
          )
        )
      }
      const access = ctx.hub ?? (yield* discoveredHub(ctx))
      const token = options.token !== undefined ? Option.some(options.token) : yield* access.token
      const env: Record<string, string> = {
        HF_ENDPOINT: access.endpoint,
        HF_HUB_DISABLE_PROGRESS_BARS: "1",
        ...Option.match(token, { onNone: () => ({}), onSome: (t) => ({ HF_TOKEN: Redacted.value(t) }) })
      }
      const ran = yield* runToEnd(ctx, ["sh", "-c", UPLOAD_SCRIPT, "hf-sandbox-bucket", src, destination], env)
      if (ran.exitCode !== 0) {
        const said = ran.stderr.trim().slice(-2000) || ran.stdout.trim().slice(-2000)
        const reason = ran.exitCode === 66 ? "Failed" : reasonOf(ran.stderr)
        return yield* Effect.fail(failure(reason, `\`hf\` exited with ${ran.exitCode}: ${said}`))
      }
      const newline = ran.stdout.indexOf("\n")
      const folder = ran.stdout.slice(0, newline) === "sync"
      return { bucket, destination, folder, output: ran.stdout.slice(newline + 1) }
    })
  )
