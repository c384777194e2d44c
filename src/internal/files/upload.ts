/**
 * Writes into the sandbox: bytes in parallel ranges, a stream as consecutive ranges, a local file in
 * ranges read straight from disk; every multi-range write as one transfer, committed once complete.
 */
import { randomBytes } from "node:crypto"
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as HttpBody from "@effect/platform/HttpBody"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { LocalFileError, type OperationError } from "../../SandboxError.js"
import type * as Wire from "../wire/client.js"
import { type Context, localFs } from "./context.js"
import { type Plan, rangesOf } from "./plan.js"

/** Read size of local files: large reads keep per-chunk overhead low; memory stays bounded by it. */
const LOCAL_CHUNK = 1024 * 1024

/** How long the release of a failed or interrupted transfer waits for the server to drop its temp file. */
const ABORT_BOUND = Duration.seconds(5)

/**
 * Runs `send` (the ranges of one transfer, each sent with the given transfer id) and then commits it: the
 * server renames the transfer's temp file over `path` only once all of it has arrived. When `send` or the
 * commit fails or is interrupted, the temp file is removed (best effort, bounded): the old file stays as
 * it was and nothing is left behind.
 */
export const transferred = (
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

/** Sends `bytes` as ranges in parallel; every range sets the final size, so no stale tail survives. */
export const writeBytes = (
  wire: Wire.WireClient,
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
export const writeStream = (
  wire: Wire.WireClient,
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
 * The first `size` bytes of a local file, read in place; a file shorter than that changed since it was
 * stat'ed (bytes beyond `size` are left, as a ranged upload leaves them).
 */
const readWhole = (
  fs: FileSystem.FileSystem,
  path: string,
  size: number,
  local: (detail: string) => LocalFileError
): Effect.Effect<Uint8Array, LocalFileError> =>
  Effect.scoped(
    Effect.flatMap(fs.open(path, { flag: "r" }), (file) => {
      const bytes = new Uint8Array(size)
      const from = (got: number): Effect.Effect<Uint8Array, PlatformError | LocalFileError> =>
        got === size
          ? Effect.succeed(bytes)
          : Effect.flatMap(file.read(bytes.subarray(got)), (n) =>
              Number(n) === 0 ? Effect.fail(local("it changed during the upload")) : from(got + Number(n))
            )
      return from(0)
    })
  ).pipe(
    Effect.catchTags({
      SystemError: (e) => Effect.fail(local(e.message)),
      BadArgument: (e) => Effect.fail(local(e.message))
    })
  )

/**
 * Uploads a local file in ranges read straight from disk. `known`: its size and mode from a tree walk
 * (else it is stat'ed, and counted into the progress's total).
 */
export const upload = (
  ctx: Context,
  operation: string,
  localPath: string,
  remotePath: string,
  mode: number | undefined,
  plan: Plan,
  known?: { readonly size: number; readonly mode: number },
  inPlace?: boolean
): Effect.Effect<void, OperationError> =>
  Effect.gen(function* () {
    const fs = yield* localFs(ctx, operation, localPath)
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
      ranges.length === 1 && info.size <= LOCAL_CHUNK
        ? // A file of one local read goes as bytes: a streamed body's pipeline and silence race cost more
          // client CPU than such a file's whole exchange. Memory stays bounded by one local read.
          Effect.flatMap(readWhole(fs, localPath, info.size, local), (bytes) => {
            plan.progress.add(bytes.length)
            return plan.slot(ctx.wire.write(remotePath, bytes, { mode: octal, inPlace }))
          })
        : ranges.length === 1
          ? plan.slot(ctx.wire.write(remotePath, body(0, info.size), { mode: octal, inPlace }))
          : transferred(ctx.wire, remotePath, octal, (transfer) =>
              Effect.forEach(
                ranges,
                ({ offset, length }) =>
                  plan.slot(
                    ctx.wire.write(remotePath, body(offset, length), { offset, truncateTo: info.size, transfer })
                  ),
                { concurrency: plan.parallelism, discard: true }
              ).pipe(Effect.as(info.size))
            )
    yield* sent.pipe(Effect.catchAll((error) => Effect.fail(localError ?? error)))
  })
