/**
 * The files API of a sandbox on top of the wire client: ranged, parallel transfers with progress, and
 * whole-tree copies. Each operation lives in the room of its concept (`upload`, `download`, `tree`, with
 * `plan` for how a transfer runs); this composes them over one {@link Context}.
 */
import * as Effect from "effect/Effect"
import type {
  FileInfo,
  Files,
  FromHubOptions,
  HubBucketSource,
  HubBucketTarget,
  HubSource,
  HubTarget,
  ToHubOptions
} from "../../Files.js"
import type * as Protocol from "../../Protocol.js"
import { fromBucket, isBucket, toBucket } from "./bucket.js"
import type { Context } from "./context.js"
import { download, readBytes, readStream } from "./download.js"
import { fromHub, toHub } from "./hub.js"
import * as LocalTree from "./localTree.js"
import { checkMode, withPlan } from "./plan.js"
import { downloadDir, uploadDir } from "./tree.js"
import { upload, writeBytes, writeStream } from "./upload.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The files API of one sandbox. */
export const make = (ctx: Context): Files => {
  const { wire, guard, guardStream, readRangeSize } = ctx
  return {
    write: (path, data, options = {}) => {
      const bytes = typeof data === "string" ? encoder.encode(data) : data
      return withPlan(
        ctx,
        "files.write",
        options,
        bytes instanceof Uint8Array ? bytes.length : undefined,
        (plan) =>
          bytes instanceof Uint8Array
            ? writeBytes(wire, path, bytes, options.mode, options.inPlace, plan)
            : writeStream(wire, path, bytes, options.mode, plan),
        { "files.streamed": !(bytes instanceof Uint8Array) }
      )
    },
    read: (path, options = {}) =>
      withPlan(ctx, "files.read", { ...options, rangeSize: options.rangeSize ?? readRangeSize }, undefined, (plan) =>
        readBytes(wire, path, plan)
      ),
    readText: (path) =>
      withPlan(ctx, "files.readText", { rangeSize: readRangeSize }, undefined, (plan) =>
        Effect.map(readBytes(wire, path, plan), (b) => decoder.decode(b))
      ),
    stat: (path) => guard("files.stat", Effect.map(wire.stat(path), toFileInfo)),
    exists: (path) =>
      guard(
        "files.exists",
        wire.stat(path).pipe(
          Effect.as(true),
          Effect.catchTag("FileNotFoundError", () => Effect.succeed(false)),
          // Nothing can exist below a file: `test -e` says no, and so does this.
          Effect.catchIf(
            (error) => error._tag === "BadRequestError" && error.code === "not_a_directory",
            () => Effect.succeed(false)
          )
        )
      ),
    list: (path, options = {}) =>
      guard(
        "files.list",
        Effect.map(wire.list(path, options.recursive ?? false), (r) => r.entries.map(toFileInfo)).pipe(
          Effect.tap((entries) => Effect.annotateCurrentSpan("files.count", entries.length))
        ),
        { "files.recursive": options.recursive ?? false }
      ),
    remove: (path, options = {}) =>
      guard("files.remove", wire.remove(path, options.recursive ?? false), {
        "files.recursive": options.recursive ?? false
      }),
    mkdir: (path) => guard("files.mkdir", wire.mkdir(path)),
    rename: (from, to) => guard("files.rename", wire.rename(from, to)),
    chmod: (path, mode) =>
      guard(
        "files.chmod",
        Effect.flatMap(checkMode("files.chmod", mode), (valid) => wire.chmod(path, valid.toString(8)))
      ),
    symlink: (path, target, options = {}) => guard("files.symlink", wire.symlink(path, target, options.replace)),
    readStream: (path) => guardStream("files.readStream", readStream(wire, path)),
    upload: (localPath, remotePath, options = {}) =>
      withPlan(ctx, "files.upload", options, undefined, (plan) =>
        upload(ctx, "files.upload", localPath, remotePath, options.mode, plan, undefined, options.inPlace)
      ),
    download: (remotePath, localPath, options = {}) =>
      withPlan(ctx, "files.download", options, undefined, (plan) =>
        Effect.flatMap(LocalTree.checkPreserveModes("files.download", options.preserveModes), (preserve) =>
          download(ctx, "files.download", remotePath, localPath, plan, { preserve, umask: LocalTree.currentUmask() })
        )
      ),
    uploadDir: (localDir, remoteDir, options = {}) =>
      guard("files.uploadDir", uploadDir(ctx, localDir, remoteDir, options)),
    downloadDir: (remoteDir, localDir, options = {}) =>
      guard("files.downloadDir", downloadDir(ctx, remoteDir, localDir, options)),
    fromHub: ((source: HubSource | HubBucketSource, dest: string, options: FromHubOptions = {}) =>
      isBucket(source)
        ? guard("files.fromHub", fromBucket(ctx, source, dest, options), { "hub.repo_type": "bucket" })
        : guard("files.fromHub", fromHub(ctx, source, dest, options), {
            "hub.repo_type": source?.repoType ?? "model"
          })) as Files["fromHub"],
    toHub: ((src: string, target: HubTarget | HubBucketTarget, options: ToHubOptions = {}) =>
      isBucket(target)
        ? guard("files.toHub", toBucket(ctx, src, target, options), { "hub.repo_type": "bucket" })
        : guard("files.toHub", toHub(ctx, src, target, options), {
            "hub.repo_type": target?.repoType ?? "model"
          })) as Files["toHub"]
  }
}

/** The public shape of a listed entry. */
export const toFileInfo = (entry: Protocol.FileEntry): FileInfo => ({
  name: entry.name,
  path: entry.path,
  type: entry.type,
  size: entry.size,
  mtimeMs: entry.mtime_ms,
  mode: Number.parseInt(entry.mode, 8),
  target: entry.target
})
