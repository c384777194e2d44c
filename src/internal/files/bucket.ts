/**
 * `files.toHub` to a Storage Bucket and `files.fromHub` from one: bucket storage speaks Xet, which a
 * stdlib program cannot, so the transfer drives the image's own `hf` CLI in the sandbox (`huggingface_hub`
 * ≥ 1.5.0, the first with buckets) through the stdlib program `rpc-server/bucket_transfer.py`, run as one
 * command as `hub_transfer.py` is ({@link runProgram}): a missing `hf` fails before anything runs, and one
 * older than {@link MINIMUM} refuses `hf buckets`, having moved nothing, after which its version is asked
 * to say what to install (a transfer that works starts `hf` only for what it moves); it learns what will
 * move and its size from `hf buckets sync --dry-run` (or the file's own size), runs `hf buckets sync
 * --apply` for a folder and `hf buckets cp` for a file, and reports the bytes that really moved as progress
 * lines. The token reaches `hf` as `HF_TOKEN` in that one command's environment, never in its argv.
 */
import { dirname, join } from "node:path"
import * as Effect from "effect/Effect"
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
import { InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import { serverScriptPath } from "../serverScript.js"
import type { Context } from "./context.js"
import { runProgram } from "./hub.js"

/** The program's path: beside the server's package, as `hub_transfer.py` is. */
const programPath: string = join(dirname(serverScriptPath), "bucket_transfer.py")

const BUCKET = /^[\w.-]+\/[\w.-]+$/
/**
 * The first `huggingface_hub` with `hf buckets` (its Buckets API, and `sync --dry-run`/`--apply`): its one
 * definition, given to the program in its spec.
 */
const MINIMUM: readonly [number, number, number] = [1, 5, 0]

/** Whether a transfer's Hub side is a bucket (`{ bucket }`) rather than a repo (`{ repo }`). */
export const isBucket = <B extends HubBucketTarget>(target: HubTarget | HubSource | B): target is B =>
  typeof target === "object" && target !== null && "bucket" in target && !("repo" in target)

/** The program's last line. */
interface Done {
  readonly done: true
  /** Whether a folder was synced rather than one file copied. */
  readonly folder: boolean
  readonly bytes: number
  /** What the transfer's `hf` runs printed on stdout (its last 64 KiB). */
  readonly output: string
}

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

/** Runs the program for `op` on `bucket` (see the module docs): its `done` line, or the typed failure. */
const run = (
  ctx: Context,
  operation: string,
  bucket: string,
  spec: {
    readonly op: "toBucket" | "fromBucket"
    readonly uri: string
    readonly local: string
    readonly folder?: boolean
  },
  options: FromHubOptions
): Effect.Effect<Done, OperationError> =>
  // The one definition of the minimum; the bucket is in `uri` (the program reads it from there).
  runProgram<Done>(ctx, operation, `bucket ${bucket}`, programPath, { ...spec, minimum: MINIMUM }, options)

/** `files.toHub` to a bucket (see the module docs). */
export const toBucket = (
  ctx: Context,
  src: string,
  target: HubBucketTarget,
  options: ToHubOptions = {}
): Effect.Effect<HubBucketUpload, OperationError> =>
  Effect.flatMap(checked("files.toHub", target, src, "src"), ({ bucket, uri }) =>
    Effect.map(run(ctx, "files.toHub", bucket, { op: "toBucket", uri, local: src }, options), (done) => ({
      bucket,
      destination: uri,
      folder: done.folder,
      output: done.output
    }))
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
    return Effect.map(
      run(ctx, "files.fromHub", bucket, { op: "fromBucket", uri, local: dest, folder }, options),
      (done) => ({ bucket, source: uri, folder, output: done.output })
    )
  })
