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
   * a temp file next to `localPath` that is renamed into place only when complete. The local file gets the
   * remote file's permission bits.
   */
  readonly download: (
    remotePath: string,
    localPath: string,
    options?: TransferOptions
  ) => Effect.Effect<void, OperationError>
  /**
   * Copies a local directory tree into the sandbox (merged into `remoteDir`): files in parallel, permission
   * bits kept, symlinks recreated as links with the same target and never followed. `onProgress` counts
   * the bytes of the whole tree. Sockets, fifos and devices are skipped.
   */
  readonly uploadDir: (
    localDir: string,
    remoteDir: string,
    options?: TransferOptions
  ) => Effect.Effect<void, OperationError>
  /**
   * {@link uploadDir} the other way: a sandbox tree to this machine, each file renamed into place when
   * complete. A directory in the tree that the sandbox cannot read fails the copy before anything is
   * written (`BadRequestError`, `permission_denied`), so a partial copy never passes for a whole one.
   */
  readonly downloadDir: (
    remoteDir: string,
    localDir: string,
    options?: TransferOptions
  ) => Effect.Effect<void, OperationError>
}
