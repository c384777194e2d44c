/**
 * The files API of a sandbox (`sb.files`): what it offers and the options of its transfers.
 *
 * Large transfers are split into ranged requests of at most `rangeSize` bytes (8 MiB by default), so
 * they pass tunnels and proxies that cap request bodies, and run `parallelism` of them at once (8 by
 * default), because one TCP stream through a long round trip carries only a few MiB/s.
 *
 * @since 0.1.0
 */

import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type * as Stream from "effect/Stream"
import type { OperationError } from "./SandboxError.js"

/**
 * Requests a transfer keeps in flight by default.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PARALLELISM = 8

/**
 * Largest request body of a transfer by default (8 MiB): well under the ~100 MB that tunnels and
 * proxies accept.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_RANGE_SIZE = 8 * 1024 * 1024

/**
 * The smallest `rangeSize` a transfer takes (64 KiB).
 *
 * @since 0.1.0
 * @category constants
 */
export const MIN_RANGE_SIZE = 64 * 1024

/**
 * A file-system entry.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileInfo {
  /** The entry's name; in a recursive listing, its path relative to the listed directory. */
  readonly name: string
  readonly path: string
  readonly type: "file" | "dir" | "symlink"
  readonly size: number
  readonly mtimeMs: number
  /** Permission bits, e.g. `0o644`. */
  readonly mode: number
  /** Where a symlink points. */
  readonly target?: string | undefined
}

/**
 * How far a transfer has got: bytes done out of `total` (`undefined` when a stream's length is unknown).
 *
 * @since 0.1.0
 * @category models
 */
export interface TransferProgress {
  readonly bytes: number
  readonly total: number | undefined
}

/**
 * Options shared by the transfers (`write`, `read`, `upload`, `download` and the directory copies).
 *
 * @since 0.1.0
 * @category models
 */
export interface TransferOptions {
  /** Requests in flight at once. Default 8; 1 sends everything over one stream. */
  readonly parallelism?: number | undefined
  /** Largest body of one request, in bytes. Default 8 MiB; at least 64 KiB. */
  readonly rangeSize?: number | undefined
  /** Called as bytes move, for progress bars. It must not throw. */
  readonly onProgress?: ((progress: TransferProgress) => void) | undefined
}

/**
 * Options of `write` and `upload`.
 *
 * @since 0.2.0
 * @category models
 */
export interface WriteOptions extends TransferOptions {
  /** Permission bits, like `0o755`. */
  readonly mode?: number | undefined
  /**
   * Write a content that fits in one request (`rangeSize`) into the file itself rather than replacing it
   * through a temp file: hard links and the file's inode are kept, but a cut request leaves a partial
   * file. Larger writes are always atomic.
   */
  readonly inPlace?: boolean | undefined
}

/**
 * What a tree copy does with a symlink whose target is absolute or leads out of the copied tree
 * (followed through the tree's own links, so `d/up/..` with `d/up -> ..` leads out): `"skip"` leaves
 * it out and reports it in {@link TreeCopy.skippedLinks}, `"refuse"` fails the copy before anything is
 * written (`LocalFileError` naming the link), `"keep"` recreates it as it is. Links that stay inside the
 * tree are always recreated. A link is never followed by the copy itself, whatever the policy.
 *
 * @since 0.2.0
 * @category models
 */
export type LinkPolicy = "skip" | "refuse" | "keep"

/**
 * Options of `download`.
 *
 * @since 0.2.0
 * @category models
 */
export interface DownloadOptions extends TransferOptions {
  /**
   * Give downloaded files (and directories) the sandbox's permission bits exactly, setuid, setgid and
   * sticky included, regardless of the umask. By default those three bits are dropped and the umask is
   * applied, as for a file this user creates, so that a sandbox cannot plant a setuid or world-writable
   * file on this machine.
   */
  readonly preserveModes?: boolean | undefined
}

/**
 * Options of `downloadDir`.
 *
 * @since 0.2.0
 * @category models
 */
export interface DownloadDirOptions extends DownloadOptions {
  /** What to do with links that are absolute or lead out of the tree. Default `"skip"`: a sandbox is untrusted. */
  readonly links?: LinkPolicy | undefined
}

/**
 * Options of `uploadDir`.
 *
 * @since 0.2.0
 * @category models
 */
export interface UploadDirOptions extends TransferOptions {
  /**
   * What to do with local links that are absolute or lead out of the tree. Default `"keep"`: the link's
   * text is sent, never what it points to, and it lands in the sandbox, not on this machine.
   */
  readonly links?: LinkPolicy | undefined
}

/**
 * A symlink a tree copy left out (see {@link LinkPolicy}).
 *
 * @since 0.2.0
 * @category models
 */
export interface SkippedLink {
  /** The link's path relative to the copied tree. */
  readonly name: string
  readonly target: string
}

/**
 * What a tree copy did beyond copying: the links it left out, sorted by name.
 *
 * @since 0.2.0
 * @category models
 */
export interface TreeCopy {
  readonly skippedLinks: ReadonlyArray<SkippedLink>
}

/**
 * A repo on the Hugging Face Hub, and what of it a Hub transfer moves.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubSource {
  /** `namespace/name`, e.g. `"openai-community/gpt2"` (a canonical model may have no namespace). */
  readonly repo: string
  /** Default `"model"`. */
  readonly repoType?: "model" | "dataset" | "space" | undefined
  /** A file or folder in the repo; default the whole repo. */
  readonly path?: string | undefined
  /** A branch, tag or commit; default `"main"`. */
  readonly revision?: string | undefined
}

/**
 * How far a Hub transfer has got: the file it is on and the bytes of the whole transfer so far.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubProgress extends TransferProgress {
  /** The path in the repo (or the bucket) of the file being moved. */
  readonly file: string
}

/**
 * Options of `fromHub`.
 *
 * @since 0.2.0
 * @category models
 */
export interface FromHubOptions {
  /**
   * The HF token the transfer uses (it reaches only the transfer's own process, as its environment).
   * Default: the provider's token (on HF Jobs, the layer's credential; locally, the token
   * `huggingface_hub` would find: `HF_TOKEN`, the token file, …); none for a public repo is fine.
   */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Called as bytes arrive in the sandbox. It must not throw. */
  readonly onProgress?: ((progress: HubProgress) => void) | undefined
}

/**
 * What `fromHub` wrote.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubDownload {
  /** The commit the files were served from (the Hub's `X-Repo-Commit`), when the Hub said. */
  readonly commit: string | undefined
  /** The absolute paths written in the sandbox, in the order they were fetched. */
  readonly files: ReadonlyArray<string>
  readonly bytes: number
}

/**
 * Where `toHub` commits: a repo, and the path in it.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubTarget {
  /** `namespace/name`; the token must be able to write it. */
  readonly repo: string
  /** Default `"model"`. */
  readonly repoType?: "model" | "dataset" | "space" | undefined
  /**
   * For a folder, the folder in the repo it lands in (default the root). For a file, its path in the repo
   * (default its name at the root; a path ending with `/` is a folder it goes into).
   */
  readonly path?: string | undefined
  /** The branch to commit to; default `"main"`. */
  readonly revision?: string | undefined
  /** The commit's summary; default `"Upload with hf-sandbox"`. */
  readonly message?: string | undefined
}

/**
 * Where `toHub` puts files in a Storage Bucket (`hf://buckets/<bucket>/<path>`). Buckets store files
 * through Xet, which only the `hf` CLI speaks: the upload runs the image's `hf` (see {@link Files.toHub}).
 *
 * @since 0.2.0
 * @category models
 */
export interface HubBucketTarget {
  /** `namespace/name` of the bucket; the token must be able to write it. */
  readonly bucket: string
  /**
   * For a folder, the prefix in the bucket it is synced to (default the root). For a file, its path in
   * the bucket (default its name at the root; a path ending with `/` is a folder it goes into).
   */
  readonly path?: string | undefined
}

/**
 * What `fromHub` reads from a Storage Bucket: a file (`path` names it), or a folder (`path` empty, the
 * whole bucket, or ending with `/`). Like a bucket upload it runs the image's `hf` CLI.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubBucketSource {
  /** `namespace/name` of the bucket; the token must be able to read it. */
  readonly bucket: string
  readonly path?: string | undefined
}

/**
 * What `fromHub` from a bucket did.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubBucketDownload {
  readonly bucket: string
  /** What was read: `hf://buckets/<bucket>/<path>`. */
  readonly source: string
  /** Whether a folder was synced (`hf buckets sync`) rather than one file copied (`hf buckets cp`). */
  readonly folder: boolean
  /** What `hf` printed on stdout. */
  readonly output: string
}

/**
 * What `toHub` to a bucket did.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubBucketUpload {
  readonly bucket: string
  /** Where the files went: `hf://buckets/<bucket>/<path>`. */
  readonly destination: string
  /** Whether a folder was synced (`hf buckets sync`) rather than one file copied (`hf buckets cp`). */
  readonly folder: boolean
  /** What `hf` printed on stdout (its own summary; buckets have no commits). */
  readonly output: string
}

/**
 * Options of `toHub`.
 *
 * @since 0.2.0
 * @category models
 */
export interface ToHubOptions {
  /** As {@link FromHubOptions.token}; it must be able to write the repo. */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Called as files are read into the commit. It must not throw. */
  readonly onProgress?: ((progress: HubProgress) => void) | undefined
}

/**
 * The commit `toHub` made.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubUpload {
  /** The new commit's id. */
  readonly commit: string
  readonly commitUrl: string
  /** The paths in the repo it wrote. */
  readonly files: ReadonlyArray<string>
  readonly bytes: number
}

/**
 * Files inside the sandbox. Relative paths resolve against the sandbox's home directory.
 *
 * @since 0.1.0
 * @category models
 */
export interface Files {
  /**
   * Creates or replaces a file (parent directories are created), atomically: the new content goes to a
   * temp file beside it (`.<name>.hf-sandbox-<id>.part`) that is renamed over it only when complete, so
   * a failed or interrupted write leaves the old file byte for byte and no temp file. `mode` like
   * `0o755`; without it, a replaced file keeps its mode. Bytes larger than `rangeSize` are sent as
   * parallel ranges. A `Stream` is sent as it is produced, one range after the other, with bounded
   * memory; if it fails, the write fails with the stream's error. See {@link WriteOptions.inPlace}.
   */
  readonly write: (
    path: string,
    data: string | Uint8Array | Stream.Stream<Uint8Array, OperationError>,
    options?: WriteOptions
  ) => Effect.Effect<void, OperationError>
  /**
   * The file's bytes; a large file is fetched as parallel ranges. A file whose size changes during the
   * read fails the read (`ConnectionLostError`), never a mixed result.
   */
  readonly read: (path: string, options?: TransferOptions) => Effect.Effect<Uint8Array, OperationError>
  /** The file as UTF-8 text (invalid sequences become U+FFFD). */
  readonly readText: (path: string) => Effect.Effect<string, OperationError>
  /** The entry at `path`, without following a symlink. */
  readonly stat: (path: string) => Effect.Effect<FileInfo, OperationError>
  /** Whether `path` exists (false only when it is not found). */
  readonly exists: (path: string) => Effect.Effect<boolean, OperationError>
  /**
   * The entries of a directory, sorted by name. With `recursive`, the whole tree below it, depth first
   * (a directory comes right before its contents), each `name` relative to `path`; symlinks are listed,
   * never followed, and a directory the sandbox cannot read is listed but not descended into.
   */
  readonly list: (
    path: string,
    options?: { readonly recursive?: boolean | undefined }
  ) => Effect.Effect<ReadonlyArray<FileInfo>, OperationError>
  /** Removes a file, or a directory (a non-empty one needs `recursive`). */
  readonly remove: (
    path: string,
    options?: { readonly recursive?: boolean | undefined }
  ) => Effect.Effect<void, OperationError>
  /** Creates a directory and its parents; an existing directory is fine. */
  readonly mkdir: (path: string) => Effect.Effect<void, OperationError>
  /** Moves a file or directory (the target's parent directories are created). */
  readonly rename: (from: string, to: string) => Effect.Effect<void, OperationError>
  /** Sets permission bits, e.g. `0o755`. */
  readonly chmod: (path: string, mode: number) => Effect.Effect<void, OperationError>
  /**
   * Creates a symlink at `path` pointing to `target`, taken as it is; an existing symlink is replaced.
   * An existing file is replaced only with `{ replace: true }` (else `FileExistsError`), a directory never
   * (`IsDirectoryError`).
   */
  readonly symlink: (
    path: string,
    target: string,
    options?: { readonly replace?: boolean | undefined }
  ) => Effect.Effect<void, OperationError>
  /** The file's bytes as they arrive, over one stream, with bounded memory. */
  readonly readStream: (path: string) => Stream.Stream<Uint8Array, OperationError>
  /**
   * Copies a local file into the sandbox with bounded memory, as parallel ranges when it is large, into a
   * temp file beside `remotePath` that is renamed over it only when complete (as {@link write}). The
   * remote file keeps the local file's permission bits unless `mode` says otherwise.
   */
  readonly upload: (
    localPath: string,
    remotePath: string,
    options?: WriteOptions
  ) => Effect.Effect<void, OperationError>
  /**
   * Copies a sandbox file to this machine with bounded memory, as parallel ranges when it is large, into
   * a temp file next to `localPath` that is renamed into place only when complete (a symlink at
   * `localPath` is replaced, never written through). The local file gets the remote file's permission
   * bits without setuid, setgid and sticky, masked by the umask, unless {@link DownloadOptions.preserveModes}.
   */
  readonly download: (
    remotePath: string,
    localPath: string,
    options?: DownloadOptions
  ) => Effect.Effect<void, OperationError>
  /**
   * Copies a local directory tree into the sandbox (merged into `remoteDir`): files in parallel, permission
   * bits kept, symlinks recreated as links with the same target and never followed (see
   * {@link UploadDirOptions.links}). `onProgress` counts the bytes of the whole tree. Sockets, fifos and
   * devices are skipped.
   */
  readonly uploadDir: (
    localDir: string,
    remoteDir: string,
    options?: UploadDirOptions
  ) => Effect.Effect<TreeCopy, OperationError>
  /**
   * {@link uploadDir} the other way: a sandbox tree to this machine, each file renamed into place when
   * complete. A directory in the tree that the sandbox cannot read fails the copy before anything is
   * written (`BadRequestError`, `permission_denied`), so a partial copy never passes for a whole one.
   *
   * Nothing it writes resolves outside `localDir`: no symlink below `localDir` is ever followed. A local
   * file or symlink where the tree has something else is replaced (the link itself, not what it points
   * to); a local directory is merged into where the tree has a directory, and refused where it has a
   * file or link (`LocalFileError` naming it: remove it or copy elsewhere). Links that lead out of the
   * tree are skipped by default ({@link DownloadDirOptions.links}); modes are tamed as in {@link download}.
   */
  readonly downloadDir: (
    remoteDir: string,
    localDir: string,
    options?: DownloadDirOptions
  ) => Effect.Effect<TreeCopy, OperationError>
  /**
   * Downloads a file or a folder of a Hub repo straight into the sandbox: the sandbox fetches it (the
   * bytes never pass through this machine), with the HF token given only to that one command, through
   * its environment (never its argv, the job's environment, logs or spans). A single file lands at
   * `dest` (inside it, under its own name, when `dest` is a directory or ends with `/`); a folder's tree
   * lands below `dest`. Each file is written atomically (an interrupted transfer leaves the old file and
   * no temp file); 5xx and 429 answers are retried a bounded number of times, and a download cut mid-way
   * resumes from the bytes it has; each file is checked against the Hub's size and digest. The Hub is the
   * provider's (on HF Jobs its `endpoint`, locally `HF_ENDPOINT` or huggingface.co). Fails with
   * `HubTransferError` (`Unauthorized`, `NotFound`, …). Needs `python3` in the sandbox, as the server does.
   *
   * With a {@link HubBucketSource} (`{ bucket, path }`) it reads a Storage Bucket instead, by running the
   * image's `hf` CLI as {@link toHub} does for a bucket (`hf buckets cp` for a file, `hf buckets sync` for a
   * folder: a `path` that is empty or ends with `/`). Its `onProgress` counts the bytes found in `dest`
   * while `hf` writes them, out of the total of the files that will move (`hf buckets sync --dry-run`'s
   * plan; files already there at the same size are skipped and not counted), and ends at the total.
   *
   * @since 0.2.0
   */
  readonly fromHub: {
    (source: HubSource, dest: string, options?: FromHubOptions): Effect.Effect<HubDownload, OperationError>
    (source: HubBucketSource, dest: string, options?: FromHubOptions): Effect.Effect<HubBucketDownload, OperationError>
  }
  /**
   * Commits a sandbox file or directory tree (symlinks skipped) to a Hub repo in ONE commit, from inside
   * the sandbox, with the token handled as in {@link fromHub}. Files go base64 in the commit (the Hub's
   * "regular" files), except those the Hub wants in LFS (10 MB and more, or matched by the repo's LFS
   * rules): they are streamed from disk to the LFS storage first (the LFS batch API, basic or multipart
   * as the Hub answers, as `huggingface_hub` does without Xet; an object the Hub has already is not sent
   * again; the storage gets no token), and the same commit points to them. The commit body (the regular
   * files) is built in the sandbox's memory.
   *
   * With a {@link HubBucketTarget} (`{ bucket, path }`) it uploads to a Storage Bucket instead, by running
   * the image's `hf` CLI in the sandbox (`hf buckets cp` for a file, `hf buckets sync` for a folder): bucket
   * storage speaks Xet, which only `huggingface_hub` implements. The token reaches `hf` as `HF_TOKEN` in its
   * environment only, and `HF_ENDPOINT` names the provider's Hub. Without `hf`, or with one older than
   * `huggingface_hub` 1.5.0 (the first with buckets), it fails having moved nothing with a
   * `HubTransferError` (`Unsupported`) that says what to install. `onProgress` gives the total before any
   * byte moves (the file's size, or the sizes of the files `hf buckets sync --dry-run` plans to upload) and
   * counts bytes only once `hf` has put them in the bucket: a file at its end, a folder's plan part by part
   * (parts of at least 256 MiB, at most about 16 of them), since `hf` reports nothing while it uploads.
   *
   * @since 0.2.0
   */
  readonly toHub: {
    (src: string, target: HubTarget, options?: ToHubOptions): Effect.Effect<HubUpload, OperationError>
    (src: string, target: HubBucketTarget, options?: ToHubOptions): Effect.Effect<HubBucketUpload, OperationError>
  }
}
