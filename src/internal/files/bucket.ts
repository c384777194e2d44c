/**
 * `files.toHub` to a Storage Bucket and `files.fromHub` from one: bucket storage speaks Xet, which a
 * stdlib program cannot, so the transfer runs the image's own `hf` CLI in the sandbox (`huggingface_hub`
 * ≥ 1.5.0, the first with buckets): `hf buckets cp` for a file, `hf buckets sync` for a folder. Its
 * version is checked first, so that a missing or old `hf` fails before anything moves, saying what to
 * install. The token reaches `hf` as `HF_TOKEN` in that one command's environment, never in its argv.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type {
  FromHubOptions,
  HubBucketDownload,
  HubBucketSource,
  HubBucketTarget,
  HubBucketUpload,
  HubSource,
  HubTarget,
  ToHubOptions
} from "../../Files.js"
import { HubTransferError, InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import type { Context } from "./context.js"
import { transferAccess } from "./hub.js"

const BUCKET = /^[\w.-]+\/[\w.-]+$/
/** The first `huggingface_hub` with `hf buckets` (its Buckets API). */
const MINIMUM: readonly [number, number, number] = [1, 5, 0]
const INSTALL = "pip install -U huggingface_hub"

/** Whether a transfer's Hub side is a bucket (`{ bucket }`) rather than a repo (`{ repo }`). */
export const isBucket = <B extends HubBucketTarget>(target: HubTarget | HubSource | B): target is B =>
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

/** The bucket, its `hf://buckets/…` URI and the sandbox path, checked before anything runs. */
const checked = (operation: string, bucketPath: HubBucketTarget, local: string, localName: "src" | "dest") => {
  const bad = (argument: string, detail: string) =>
    Effect.fail(new InvalidArgumentError({ operation, argument, detail }))
  const { bucket } = bucketPath
  if (typeof bucket !== "string" || !BUCKET.test(bucket) || bucket.includes("..")) {
    return bad("bucket", `${JSON.stringify(bucket)} is not a bucket id: use "namespace/name"`)
  }
  const path = bucketPath.path ?? ""
  if (typeof path !== "string" || path.includes("\0") || path.startsWith("/") || path.split("/").includes("..")) {
    return bad("path", `${JSON.stringify(bucketPath.path)} is not a path in the bucket: give a relative path`)
  }
  if (typeof local !== "string" || local === "" || local.includes("\0")) {
    return bad(localName, `${JSON.stringify(local)} is not a path in the sandbox: give a file or directory path`)
  }
  return Effect.succeed({ bucket, uri: `hf://buckets/${bucket}/${path}` })
}

/**
 * Runs `script` (its arguments after it) with the image's `hf` once its version is checked, the token in
 * its environment only: `hf`'s stdout, or the typed failure.
 */
const runHf = (
  ctx: Context,
  operation: string,
  bucket: string,
  script: ReadonlyArray<string>,
  options: ToHubOptions
): Effect.Effect<string, OperationError> =>
  Effect.gen(function* () {
    const failure = (reason: HubTransferError["reason"], detail: string) =>
      new HubTransferError({ operation, repo: `bucket ${bucket}`, reason, detail })
    const found = yield* runToEnd(ctx, ["sh", "-c", VERSION_SCRIPT], {})
    const version = found.exitCode === 0 ? versionIn(found.stdout) : undefined
    if (found.exitCode === 127) {
      return yield* Effect.fail(
        failure("Unsupported", `a bucket transfer runs the \`hf\` CLI, and the sandbox has none on its PATH`)
      )
    }
    if (version === undefined || !atLeast(version, MINIMUM)) {
      const have = version === undefined ? "an `hf` whose version is unknown" : `hf ${version.join(".")}`
      return yield* Effect.fail(
        failure(
          "Unsupported",
          `a bucket transfer needs \`hf\` from huggingface_hub ${MINIMUM.join(".")} or later (\`hf buckets\`), and the sandbox has ${have}: ${INSTALL}`
        )
      )
    }
    const access = yield* transferAccess(ctx, options)
    const env: Record<string, string> = {
      HF_ENDPOINT: access.endpoint,
      HF_HUB_DISABLE_PROGRESS_BARS: "1",
      ...access.env
    }
    const ran = yield* runToEnd(ctx, ["sh", "-c", ...script], env)
    if (ran.exitCode !== 0) {
      const said = ran.stderr.trim().slice(-2000) || ran.stdout.trim().slice(-2000)
      const reason = ran.exitCode === 66 ? "Failed" : reasonOf(ran.stderr)
      return yield* Effect.fail(failure(reason, `\`hf\` exited with ${ran.exitCode}: ${said}`))
    }
    return ran.stdout
  })

/** `files.toHub` to a bucket (see the module docs). */
export const toBucket = (
  ctx: Context,
  src: string,
  target: HubBucketTarget,
  options: ToHubOptions = {}
): Effect.Effect<HubBucketUpload, OperationError> =>
  Effect.flatMap(checked("files.toHub", target, src, "src"), ({ bucket, uri }) =>
    Effect.map(runHf(ctx, "files.toHub", bucket, [UPLOAD_SCRIPT, "hf-sandbox-bucket", src, uri], options), (stdout) => {
      const newline = stdout.indexOf("\n")
      return {
        bucket,
        destination: uri,
        folder: stdout.slice(0, newline) === "sync",
        output: stdout.slice(newline + 1)
      }
    })
  )

/**
 * `files.fromHub` from a bucket: a `path` that is empty or ends with `/` is a folder, synced below `dest`
 * (`hf buckets sync`); another is one file, copied to `dest` (`hf buckets cp`).
 */
export const fromBucket = (
  ctx: Context,
  source: HubBucketSource,
  dest: string,
  options: FromHubOptions = {}
): Effect.Effect<HubBucketDownload, OperationError> =>
  Effect.flatMap(checked("files.fromHub", source, dest, "dest"), ({ bucket, uri }) => {
    const folder = uri.endsWith("/")
    const command = folder ? "sync" : "cp"
    const script = `mkdir -p "$(dirname "$2")" && exec hf buckets ${command} "$1" "$2"`
    return Effect.map(
      runHf(ctx, "files.fromHub", bucket, [script, "hf-sandbox-bucket", uri, dest], options),
      (output) => ({
        bucket,
        source: uri,
        folder,
        output
      })
    )
  })
