/**
 * The files API of a sandbox on top of the wire client: ranged, parallel transfers with progress, and
 * whole-tree copies.
 */

import { randomBytes } from "node:crypto"
import type { Dirent } from "node:fs"
import * as NodeFs from "node:fs/promises"
import { dirname, join, posix } from "node:path"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as HttpBody from "@effect/platform/HttpBody"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  DEFAULT_PARALLELISM,
  DEFAULT_RANGE_SIZE,
  type DownloadDirOptions,
  type FileInfo,
  type Files,
  MIN_RANGE_SIZE,
  type TransferOptions,
  type TransferProgress,
  type TreeCopy,
  type UploadDirOptions
} from "../Files.js"
import type * as Protocol from "../Protocol.js"
import {
  BadRequestError,
  ConnectionLostError,
  InvalidArgumentError,
  LocalFileError,
  type OperationError,
  type TerminatedError
} from "../SandboxError.js"
import * as Wire from "./client.js"
import * as LocalTree from "./localTree.js"
import * as Validate from "./validate.js"

const KiB = 1024
const MiB = 1024 * KiB
const MAX_PARALLELISM = 64
/** Read size of local files: large reads keep per-chunk overhead low; memory stays bounded by it. */
const LOCAL_CHUNK = MiB

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** What the files API needs from its sandbox. */
export interface Context {
  readonly wire: Wire.WireClient
  /** The provider's default range for reads into memory (see `SandboxProvider.Endpoint`). */
  readonly readRangeSize?: number | undefined
  readonly fileSystem: Option.Option<FileSystem.FileSystem>
  /** Runs an operation in its span (with extra attributes), failing at once when the sandbox is terminated. */
  readonly guard: <A, E, R>(
    operation: string,
    effect: Effect.Effect<A, E, R>,
    attributes?: Record<string, unknown>
  ) => Effect.Effect<A, E | TerminatedError, R>
  /** {@link guard} for a stream: its span lasts as long as the stream runs. */
  readonly guardStream: <A, E, R>(
    operation: string,
    stream: Stream.Stream<A, E, R>,
    attributes?: Record<string, unknown>
  ) => Stream.Stream<A, E | TerminatedError, R>
}

/** Counts bytes for a transfer's progress callback (and its span). */
interface Progress {
  readonly add: (bytes: number) => void
  readonly grow: (total: number) => void
  /** Bytes moved so far. */
  readonly bytes: () => number
}

/** How one top-level transfer runs its requests: at most `parallelism` at once, in ranges of `rangeSize`. */
interface Plan {
  readonly parallelism: number
  readonly rangeSize: number
  /** Takes one of the transfer's request slots for the effect. */
  readonly slot: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Takes a slot until the scope closes, or until the returned effect gives it back earlier. */
  readonly hold: Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
  readonly progress: Progress
}

const makeProgress = (
  onProgress: ((progress: TransferProgress) => void) | undefined,
  total: number | undefined
): Progress => {
  let bytes = 0
  let known = total
  return {
    add: (n) => {
      bytes += n
      if (onProgress !== undefined && n > 0) onProgress({ bytes, total: known })
    },
    grow: (n) => {
      known = (known ?? 0) + n
    },
    bytes: () => bytes
  }
}

/** Span attributes of a transfer: how it ran, then (even when it failed) how many bytes it moved. */
const traced = <A, E, R>(plan: Plan, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.annotateCurrentSpan({ "files.parallelism": plan.parallelism, "files.range_size": plan.rangeSize }).pipe(
    Effect.zipRight(effect),
    Effect.ensuring(Effect.suspend(() => Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())))
  )

/** A mode must be an integer 0–0o7777: `(1.5).toString(8)` is "1.4", which the server would take. */
const checkMode = (operation: string, mode: unknown): Effect.Effect<number, InvalidArgumentError> =>
  Validate.check(operation, () => Validate.mode("mode", mode))

const makePlan = (
  operation: string,
  options: TransferOptions & { readonly mode?: number | undefined },
  total: number | undefined
): Effect.Effect<Plan, InvalidArgumentError> => {
  if (options.mode !== undefined)
    return Effect.zipRight(
      checkMode(operation, options.mode),
      makePlan(operation, { ...options, mode: undefined }, total)
    )
  const parallelism = options.parallelism ?? DEFAULT_PARALLELISM
  const rangeSize = options.rangeSize ?? DEFAULT_RANGE_SIZE
  if (!Number.isSafeInteger(parallelism) || parallelism < 1 || parallelism > MAX_PARALLELISM) {
    return Effect.fail(
      new InvalidArgumentError({
        operation,
        argument: "parallelism",
        detail: `${parallelism} is not a whole number from 1 to ${MAX_PARALLELISM}`
      })
    )
  }
  if (!Number.isSafeInteger(rangeSize) || rangeSize < MIN_RANGE_SIZE) {
    return Effect.fail(
      new InvalidArgumentError({
        operation,
        argument: "rangeSize",
        detail: `${rangeSize} is not a whole number of bytes of at least ${MIN_RANGE_SIZE} (64 KiB)`
      })
    )
  }
  return Effect.map(Effect.makeSemaphore(parallelism), (semaphore) => ({
    parallelism,
    rangeSize,
    slot: semaphore.withPermits(1),
    hold: Effect.acquireRelease(
      Effect.map(semaphore.take(1), () => {
        let held = true
        return Effect.suspend(() => {
          if (!held) return Effect.void
          held = false
          return semaphore.release(1)
        })
      }),
      (giveBack) => giveBack
    ),
    progress: makeProgress(options.onProgress, total)
  }))
}

/** The span attributes of a tree copy. */
const annotateTree = (count: number, total: number, plan: Plan) =>
  Effect.annotateCurrentSpan({
    "files.count": count,
    "files.total_bytes": total,
    "files.parallelism": plan.parallelism,
    "files.range_size": plan.rangeSize
  })

/** `[offset, length)` pieces of a file of `size` bytes; an empty file is one empty piece. */
const rangesOf = (size: number, rangeSize: number, from = 0) => {
  const ranges: Array<{ readonly offset: number; readonly length: number }> = []
  for (let offset = from; offset < size; offset += rangeSize) {
    ranges.push({ offset, length: Math.min(rangeSize, size - offset) })
  }
  return ranges.length === 0 ? [{ offset: from, length: 0 }] : ranges
}

const changed = (operation: string, path: string) =>
  new ConnectionLostError({ operation, detail: `${path} changed size during the transfer; read it again` })

/** A local tree entry, found without following symlinks. */
interface LocalEntry {
  /** Path relative to the tree's root, with `/` separators. */
  readonly name: string
  readonly type: "file" | "dir" | "symlink"
  readonly size: number
  readonly mode: number
  readonly target?: string | undefined
}

const walkLocal = async (root: string): Promise<Array<LocalEntry>> => {
  const entries: Array<LocalEntry> = []
  const visit = async (relative: string): Promise<void> => {
    const dirents: Array<Dirent> = await NodeFs.readdir(join(root, relative), { withFileTypes: true })
    dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const dirent of dirents) {
      const name = relative === "" ? dirent.name : `${relative}/${dirent.name}`
      const path = join(root, name)
      const info = await NodeFs.lstat(path)
      const mode = info.mode & 0o7777
      if (info.isSymbolicLink()) {
        entries.push({ name, type: "symlink", size: 0, mode, target: await NodeFs.readlink(path) })
      } else if (info.isDirectory()) {
        entries.push({ name, type: "dir", size: 0, mode })
        await visit(name)
      } else if (info.isFile()) {
        entries.push({ name, type: "file", size: info.size, mode })
      }
      // Sockets, fifos and devices have no meaning in a copy: skipped, like `cp -r` without `-a` would not.
    }
  }
  await visit("")
  return entries
}

/** A name from a remote listing must stay inside the tree it was listed from. */
const isSafeRelative = (name: string) =>
  name !== "" &&
  !name.startsWith("/") &&
  !name.includes("\0") &&
  name.split("/").every((part) => part !== "" && part !== "." && part !== "..")

/** How long the release of a failed or interrupted transfer waits for the server to drop its temp file. */
const ABORT_BOUND = Duration.seconds(5)

/**
 * Runs `send` (the ranges of one transfer, each sent with the given transfer id) and then commits it: the
 * server renames the transfer's temp file over `path` only once all of it has arrived. When `send` or the
 * commit fails or is interrupted, the temp file is removed (best effort, bounded): the old file stays as
 * it was and nothing is left behind.
 */
const transferred = (
  wire: Wire.WireClient,
  path: string,
  mode: string | undefined,
  send: (transfer: string) => Effect.Effect<number, OperationError>
): Effect.Effect<void, OperationError> => {
  const transfer = randomBytes(12).toString("hex")
  return send(transfer).pipe(
    Effect.flatMap((size) => wire.commit(path, transfer, { size, mode })),
    Effect.onExit((exit) =>
      Exit.isSuccess(exit) ? Effect.void : wire.abort(path, transfer).pipe(Effect.timeout(ABORT_BOUND), Effect.ignore)
    ),
    Effect.asVoid
  )
}

/** The files API of one sandbox. */
export const make = ({ wire, fileSystem, guard, guardStream, readRangeSize }: Context): Files => {
  const localFs = (operation: string, path: string) =>
    Option.match(fileSystem, {
      onNone: () =>
        Effect.fail(
          new LocalFileError({
            path,
            operation,
            detail: "no FileSystem service: provide one, e.g. NodeContext.layer from @effect/platform-node"
          })
        ),
      onSome: Effect.succeed
    })

  /** Sends `bytes` as ranges in parallel; every range sets the final size, so no stale tail survives. */
  const writeBytes = (
    path: string,
    bytes: Uint8Array,
    mode: number | undefined,
    inPlace: boolean | undefined,
    plan: Plan
  ): Effect.Effect<void, OperationError> => {
    const octal = mode?.toString(8)
    if (bytes.length <= plan.rangeSize) {
      return plan.slot(wire.write(path, bytes, { mode: octal, inPlace })).pipe(
        Effect.tap(() => plan.progress.add(bytes.length)),
        Effect.asVoid
      )
    }
    return transferred(wire, path, octal, (transfer) =>
      Effect.forEach(
        rangesOf(bytes.length, plan.rangeSize),
        ({ offset, length }) =>
          plan
            .slot(
              wire.write(path, bytes.subarray(offset, offset + length), {
                offset,
                truncateTo: bytes.length,
                transfer
              })
            )
            .pipe(Effect.tap(() => plan.progress.add(length))),
        { concurrency: plan.parallelism, discard: true }
      ).pipe(Effect.as(bytes.length))
    )
  }

  /**
   * Sends a stream as consecutive ranges, each one request streamed as it is produced: the first
   * truncates the file, the next ones append at their offset. Memory stays at one chunk.
   */
  const writeStream = (
    path: string,
    source: Stream.Stream<Uint8Array, OperationError>,
    mode: number | undefined,
    plan: Plan
  ): Effect.Effect<void, OperationError> =>
    Effect.scoped(
      Effect.gen(function* () {
        const pull = yield* Stream.toPull(source)
        // Pieces pulled but not sent yet (the rest of a chunk that crossed a range's end).
        const pending: Array<Uint8Array> = []
        let ended = false
        // Bytes taken into ranges: the stream's length, once it has ended.
        let total = 0
        // A failure of the source stays its own error, not the transport's that it cut short.
        let sourceError: OperationError | undefined
        const next: Effect.Effect<Option.Option<Uint8Array>> = Effect.suspend(() => {
          const piece = pending.shift()
          if (piece !== undefined) return Effect.succeed(Option.some(piece))
          if (ended) return Effect.succeed(Option.none())
          // Pull once more, then answer from what arrived (empty pieces are dropped: they carry nothing).
          return pull.pipe(
            Effect.tap((chunk) =>
              Effect.sync(() => {
                for (const piece of chunk) if (piece.length > 0) pending.push(piece)
              })
            ),
            Effect.catchAll((end) =>
              Effect.sync(() => {
                ended = true
                if (Option.isSome(end)) sourceError = end.value
              })
            ),
            Effect.zipRight(next)
          )
        })
        const rangeBody = (size: number) => {
          let room = size
          return Stream.repeatEffectOption(
            Effect.suspend(() => {
              if (room === 0) return Effect.fail(Option.none())
              return next.pipe(
                Effect.flatMap(
                  Option.match({
                    onNone: () =>
                      sourceError === undefined ? Effect.fail(Option.none()) : Effect.fail(Option.some(sourceError)),
                    onSome: (piece) => {
                      if (piece.length > room) {
                        pending.unshift(piece.subarray(room))
                        piece = piece.subarray(0, room)
                      }
                      room -= piece.length
                      total += piece.length
                      plan.progress.add(piece.length)
                      return Effect.succeed(piece)
                    }
                  })
                )
              )
            })
          )
        }
        const hasMore = Effect.map(next, (piece) => {
          if (Option.isSome(piece)) pending.unshift(piece.value)
          return Option.isSome(piece)
        })
        const send = (transfer: string, offset: number): Effect.Effect<number, OperationError> =>
          wire
            .write(path, HttpBody.stream(rangeBody(plan.rangeSize), "application/octet-stream"), {
              offset,
              transfer
            })
            .pipe(
              Effect.catchAll((error) => Effect.fail(sourceError ?? error)),
              // The source may fail in the pull that looks for more, after a range that ended full.
              Effect.zipRight(Effect.suspend(() => (sourceError ? Effect.fail(sourceError) : hasMore))),
              Effect.flatMap((more) =>
                sourceError
                  ? Effect.fail(sourceError)
                  : more
                    ? send(transfer, offset + plan.rangeSize)
                    : Effect.succeed(total)
              )
            )
        yield* transferred(wire, path, mode?.toString(8), (transfer) => send(transfer, 0))
      })
    )

  /**
   * Reads a file as ranges: the first answer tells the file's size, then the other ranges run in
   * parallel. `sink` learns the first answer, then takes each answer's bytes at its offset, counting
   * them as they arrive. A size that differs between answers means the file changed during the read.
   */
  const readRanges = <E>(
    operation: string,
    path: string,
    plan: Plan,
    sink: (
      first: Wire.OpenRead
    ) => Effect.Effect<
      (
        offset: number,
        answer: Wire.OpenRead,
        count: (bytes: number) => void
      ) => Effect.Effect<void, OperationError | E>,
      OperationError | E
    >
  ): Effect.Effect<Wire.OpenRead, OperationError | E> =>
    Effect.scoped(
      Effect.gen(function* () {
        // The first range keeps its slot until its body is drained, like every other range.
        const giveBack = yield* plan.hold
        const first = yield* wire.openRead(path, { offset: 0, length: plan.rangeSize })
        // A short first answer is a file that shrank between its open and its read.
        if (first.length !== Math.min(plan.rangeSize, first.fileSize))
          return yield* Effect.fail(changed(operation, path))
        plan.progress.grow(first.fileSize)
        const take = yield* sink(first)
        let moved = 0
        const count = (n: number) => {
          moved += n
          plan.progress.add(n)
        }
        const rest = first.fileSize > first.length ? rangesOf(first.fileSize, plan.rangeSize, first.length) : []
        const readRest = Effect.forEach(
          rest,
          ({ offset, length }) =>
            plan.slot(
              Effect.scoped(
                Effect.gen(function* () {
                  const answer = yield* wire.openRead(path, { offset, length })
                  if (answer.fileSize !== first.fileSize || answer.length !== length) {
                    return yield* Effect.fail(changed(operation, path))
                  }
                  yield* take(offset, answer, count)
                })
              )
            ),
          { concurrency: plan.parallelism, discard: true }
        )
        const idle = wire.timeouts.streamIdle
        yield* Effect.raceFirst(
          Effect.all([take(0, first, count).pipe(Effect.ensuring(giveBack)), readRest], {
            concurrency: "unbounded",
            discard: true
          }),
          Wire.silenceBound(
            () => moved,
            idle,
            () => new ConnectionLostError({ operation, detail: `no data for ${Duration.format(idle)}` })
          )
        )
        return first
      })
    )

  const readBytes = (path: string, plan: Plan): Effect.Effect<Uint8Array, OperationError> =>
    Effect.suspend(() => {
      let out = new Uint8Array(0)
      return readRanges("files.read", path, plan, (first) =>
        Effect.sync(() => {
          out = new Uint8Array(first.fileSize)
          return (offset, answer, count) => answer.into(out.subarray(offset, offset + answer.length), count)
        })
      ).pipe(Effect.map(() => out))
    })

  const upload = (
    operation: string,
    localPath: string,
    remotePath: string,
    mode: number | undefined,
    plan: Plan,
    known?: { readonly size: number; readonly mode: number },
    inPlace?: boolean
  ): Effect.Effect<void, OperationError> =>
    Effect.gen(function* () {
      const fs = yield* localFs(operation, localPath)
      const local = (detail: string) => new LocalFileError({ path: localPath, operation, detail })
      const info =
        known ??
        (yield* fs.stat(localPath).pipe(
          Effect.mapError((e) => local(e.message)),
          Effect.flatMap((stat) =>
            stat.type === "File"
              ? Effect.succeed({ size: Number(stat.size), mode: stat.mode & 0o7777 })
              : Effect.fail(
                  local(
                    stat.type === "Directory" ? "it is a directory (copy a tree with uploadDir)" : "not a regular file"
                  )
                )
          )
        ))
      if (known === undefined) plan.progress.grow(info.size)
      const octal = (mode ?? info.mode).toString(8)
      // A local failure inside a request body stays its own error, not the transport's it cut short.
      let localError: LocalFileError | undefined
      const body = (offset: number, length: number) => {
        let got = 0
        const exact = Effect.suspend(() =>
          got === length ? Effect.void : Effect.fail(local("it changed during the upload"))
        )
        return HttpBody.stream(
          fs.stream(localPath, { offset, bytesToRead: length, chunkSize: LOCAL_CHUNK }).pipe(
            Stream.mapError((e) => local(e.message)),
            Stream.mapChunks((chunks) => {
              let n = 0
              for (const chunk of chunks) n += chunk.length
              got += n
              plan.progress.add(n)
              return chunks
            }),
            Stream.concat(Stream.execute(exact)),
            Stream.tapError((error) =>
              Effect.sync(() => {
                localError = error
              })
            )
          ),
          "application/octet-stream",
          length
        )
      }
      const ranges = rangesOf(info.size, plan.rangeSize)
      const sent =
        ranges.length === 1
          ? plan.slot(wire.write(remotePath, body(0, info.size), { mode: octal, inPlace }))
          : transferred(wire, remotePath, octal, (transfer) =>
              Effect.forEach(
                ranges,
                ({ offset, length }) =>
                  plan.slot(wire.write(remotePath, body(offset, length), { offset, truncateTo: info.size, transfer })),
                { concurrency: plan.parallelism, discard: true }
              ).pipe(Effect.as(info.size))
            )
      yield* sent.pipe(Effect.catchAll((error) => Effect.fail(localError ?? error)))
    })

  /**
   * Downloads one file to a temp file beside `localPath`, renamed over it when complete. `inTree`: the
   * parent is a directory a tree copy has checked (else it is the caller's, created as given).
   */
  const download = (
    operation: string,
    remotePath: string,
    localPath: string,
    plan: Plan,
    modes: { readonly preserve: boolean; readonly umask: number },
    inTree = false
  ): Effect.Effect<void, OperationError> =>
    Effect.gen(function* () {
      const fs = yield* localFs(operation, localPath)
      const local = (detail: string) => new LocalFileError({ path: localPath, operation, detail })
      const partial = `${localPath}.${randomBytes(6).toString("hex")}.part`
      const transfer = Effect.gen(function* () {
        if (!inTree) {
          yield* fs
            .makeDirectory(dirname(localPath), { recursive: true })
            .pipe(Effect.mapError((e) => local(e.message)))
        }
        const first = yield* readRanges(operation, remotePath, plan, (first) =>
          // Sized up front, so that every range writes at its own offset through its own handle. Created
          // exclusively ("wx"), so that nothing already at that name, a link least of all, is written to.
          fs.writeFile(partial, new Uint8Array(0), { flag: "wx" }).pipe(
            Effect.zipRight(fs.truncate(partial, first.fileSize)),
            Effect.mapError((e) => local(e.message)),
            Effect.as((offset: number, answer: Wire.OpenRead, count: (bytes: number) => void) =>
              Effect.scoped(
                Effect.gen(function* () {
                  const file = yield* fs.open(partial, { flag: "r+" })
                  yield* file.seek(offset, "start")
                  yield* Stream.runForEachChunk(answer.body, (chunks) => {
                    for (const chunk of chunks) count(chunk.length)
                    return file.writeAll(
                      chunks.length === 1 ? Chunk.unsafeHead(chunks) : Buffer.concat(Array.from(chunks))
                    )
                  })
                })
              ).pipe(
                Effect.catchTags({
                  SystemError: (e) => Effect.fail(local(e.message)),
                  BadArgument: (e) => Effect.fail(local(e.message))
                })
              )
            )
          )
        )
        if (first.mode !== undefined) {
          yield* fs
            .chmod(partial, LocalTree.tamedMode(first.mode, modes.preserve, modes.umask))
            .pipe(Effect.mapError((e) => local(e.message)))
        }
        yield* LocalTree.placeOver(operation, partial, localPath, "a file")
      })
      yield* transfer.pipe(
        Effect.onExit((exit) => (Exit.isFailure(exit) ? fs.remove(partial).pipe(Effect.ignore) : Effect.void))
      )
    })

  const uploadDir = (localDir: string, remoteDir: string, options: UploadDirOptions) =>
    Effect.gen(function* () {
      const operation = "files.uploadDir"
      yield* localFs(operation, localDir)
      const links = yield* LocalTree.checkLinks(operation, options.links, "keep")
      const walked = yield* Effect.tryPromise({
        try: () => walkLocal(localDir),
        catch: (e) =>
          new LocalFileError({ path: localDir, operation, detail: e instanceof Error ? e.message : String(e) })
      })
      const { outside, left } = yield* LocalTree.selectLinks(operation, localDir, walked, links, "upload")
      const entries = walked.filter((e) => !left.has(e.name))
      yield* Effect.annotateCurrentSpan("files.skipped_links", outside.length)
      const total = entries.reduce((sum, e) => sum + e.size, 0)
      const plan = yield* makePlan(operation, options, total)
      yield* annotateTree(entries.length, total, plan)
      const remote = (name: string) => posix.join(remoteDir, name)
      const dirs = entries.filter((e) => e.type === "dir")
      // Directories first (empty ones too), files next, links after the files (so that nothing is ever
      // written through one), and directory modes last (so that a read-only directory is filled first).
      yield* plan.slot(wire.mkdir(remoteDir))
      yield* Effect.forEach(dirs, (d) => plan.slot(wire.mkdir(remote(d.name))), {
        concurrency: plan.parallelism,
        discard: true
      })
      yield* Effect.forEach(
        entries.filter((e) => e.type === "file"),
        (f) => upload(operation, join(localDir, f.name), remote(f.name), undefined, plan, f),
        { concurrency: plan.parallelism, discard: true }
      )
      yield* Effect.forEach(
        entries.filter((e) => e.type === "symlink"),
        // A merge, like `cp -r`: what the tree copy brings replaces what was there.
        (l) => plan.slot(wire.symlink(remote(l.name), l.target ?? "", true)),
        { concurrency: plan.parallelism, discard: true }
      )
      yield* Effect.forEach(dirs, (d) => plan.slot(wire.chmod(remote(d.name), d.mode.toString(8))), {
        concurrency: plan.parallelism,
        discard: true
      })
      yield* Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())
      return { skippedLinks: outside } satisfies TreeCopy
    })

  const downloadDir = (remoteDir: string, localDir: string, options: DownloadDirOptions) =>
    Effect.gen(function* () {
      const operation = "files.downloadDir"
      const fs = yield* localFs(operation, localDir)
      const local = (path: string) => (e: { readonly message: string }) =>
        new LocalFileError({ path, operation, detail: e.message })
      const links = yield* LocalTree.checkLinks(operation, options.links, "skip")
      const preserve = yield* LocalTree.checkPreserveModes(operation, options.preserveModes)
      const modes = { preserve, umask: LocalTree.currentUmask() }
      const { entries, skipped = [] } = yield* wire.list(remoteDir, true)
      // A partial copy must not pass for a whole one.
      const unreadable = skipped[0]
      if (unreadable !== undefined) {
        return yield* Effect.fail(
          new BadRequestError({
            operation,
            status: 400,
            code: unreadable.code,
            detail: `cannot copy ${remoteDir}: ${unreadable.error}${skipped.length > 1 ? ` (and ${skipped.length - 1} more)` : ""}`
          })
        )
      }
      const unsafe = entries.find((e) => !isSafeRelative(e.name))
      if (unsafe !== undefined) {
        return yield* Effect.fail(
          new ConnectionLostError({
            operation,
            detail: `the sandbox listed an entry outside ${remoteDir}: ${unsafe.name}`
          })
        )
      }
      const { outside, left } = yield* LocalTree.selectLinks(operation, localDir, entries, links, "download")
      const total = entries.reduce((sum, e) => sum + (e.type === "file" ? e.size : 0), 0)
      const plan = yield* makePlan(operation, options, total)
      yield* annotateTree(entries.length, total, plan)
      yield* Effect.annotateCurrentSpan("files.skipped_links", outside.length)
      // Sizes are known from the listing: the ranged reads must not count them again.
      const filePlan: Plan = { ...plan, progress: { ...plan.progress, grow: () => {} } }
      const dirs = entries.filter((e) => e.type === "dir")
      const localOf = (e: Protocol.FileEntry) => LocalTree.localPath(localDir, e.name)
      // `localDir` is the caller's and followed as given; nothing below it is.
      yield* fs.makeDirectory(localDir, { recursive: true }).pipe(Effect.mapError(local(localDir)))
      // Every directory on the way to what is written, checked (and made) one at a time, before the
      // parallel file copies, so that two of them never replace the same entry at once.
      const needed = new Set<string>()
      for (const e of entries) {
        const parts = e.type === "dir" ? e.name.split("/") : LocalTree.parentParts(e.name)
        for (let i = 1; i <= parts.length; i++) needed.add(parts.slice(0, i).join("/"))
      }
      yield* Effect.forEach([...needed].sort(), (name) => LocalTree.ensureDir(operation, localDir, name.split("/")), {
        discard: true
      })
      yield* Effect.forEach(
        entries.filter((e) => e.type === "file"),
        (f) => download(operation, f.path, localOf(f), filePlan, modes, true),
        { concurrency: plan.parallelism, discard: true }
      )
      // Links last, one at a time, each renamed over what is there (never a directory): nothing is
      // written through a link, and nothing is written after one is made but directory modes.
      yield* Effect.forEach(
        entries.filter((e) => e.type === "symlink" && !left.has(e.name)),
        (l) => {
          const path = localOf(l)
          return LocalTree.placeLink(operation, `${path}.${randomBytes(6).toString("hex")}.part`, l.target ?? "", path)
        },
        { discard: true }
      )
      // Deepest first, so that a read-only directory is filled before it closes; through handles opened
      // without following a link.
      yield* Effect.forEach(
        [...dirs].reverse(),
        (d) =>
          LocalTree.chmodDir(
            operation,
            localOf(d),
            LocalTree.tamedMode(Number.parseInt(d.mode, 8), preserve, modes.umask)
          ),
        { discard: true }
      )
      yield* Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())
      return { skippedLinks: outside } satisfies TreeCopy
    })

  const withPlan = <A>(
    operation: string,
    options: TransferOptions,
    total: number | undefined,
    use: (plan: Plan) => Effect.Effect<A, OperationError>,
    attributes?: Record<string, unknown>
  ) =>
    guard(
      operation,
      Effect.flatMap(makePlan(operation, options, total), (plan) => traced(plan, use(plan))),
      attributes
    )

  return {
    write: (path, data, options = {}) => {
      const bytes = typeof data === "string" ? encoder.encode(data) : data
      return withPlan(
        "files.write",
        options,
        bytes instanceof Uint8Array ? bytes.length : undefined,
        (plan) =>
          bytes instanceof Uint8Array
            ? writeBytes(path, bytes, options.mode, options.inPlace, plan)
            : writeStream(path, bytes, options.mode, plan),
        { "files.streamed": !(bytes instanceof Uint8Array) }
      )
    },
    read: (path, options = {}) =>
      withPlan("files.read", { ...options, rangeSize: options.rangeSize ?? readRangeSize }, undefined, (plan) =>
        readBytes(path, plan)
      ),
    readText: (path) =>
      withPlan("files.readText", { rangeSize: readRangeSize }, undefined, (plan) =>
        Effect.map(readBytes(path, plan), (b) => decoder.decode(b))
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
    readStream: (path) =>
      guardStream(
        "files.readStream",
        Stream.unwrapScoped(
          Effect.map(wire.openRead(path), (answer) => {
            let bytes = 0
            const idle = wire.timeouts.streamIdle
            return answer.body.pipe(
              // The consumer may be slow: only the time spent waiting for bytes counts, checked per ~1 MiB.
              Stream.rechunk(16),
              Stream.timeoutFail(
                () =>
                  new ConnectionLostError({
                    operation: "files.readStream",
                    detail: `no data for ${Duration.format(idle)}`
                  }),
                idle
              ),
              Stream.mapChunksEffect((chunks) => {
                for (const chunk of chunks) bytes += chunk.length
                return Effect.as(Effect.annotateCurrentSpan("files.bytes", bytes), chunks)
              })
            )
          })
        )
      ),
    upload: (localPath, remotePath, options = {}) =>
      withPlan("files.upload", options, undefined, (plan) =>
        upload("files.upload", localPath, remotePath, options.mode, plan, undefined, options.inPlace)
      ),
    download: (remotePath, localPath, options = {}) =>
      withPlan("files.download", options, undefined, (plan) =>
        Effect.flatMap(LocalTree.checkPreserveModes("files.download", options.preserveModes), (preserve) =>
          download("files.download", remotePath, localPath, plan, { preserve, umask: LocalTree.currentUmask() })
        )
      ),
    uploadDir: (localDir, remoteDir, options = {}) => guard("files.uploadDir", uploadDir(localDir, remoteDir, options)),
    downloadDir: (remoteDir, localDir, options = {}) =>
      guard("files.downloadDir", downloadDir(remoteDir, localDir, options))
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
