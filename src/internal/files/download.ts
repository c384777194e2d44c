/**
 * Reads from the sandbox: a file's ranges in parallel into memory or into a local file (renamed into
 * place once complete), or as a stream.
 */
import { randomBytes } from "node:crypto"
import { dirname } from "node:path"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { ConnectionLostError, LocalFileError, type OperationError } from "../../SandboxError.js"
import type * as Wire from "../wire/client.js"
import { boundSilence, silenceBound } from "../wire/silence.js"
import { type Context, localFs } from "./context.js"
import * as LocalTree from "./localTree.js"
import { type Plan, rangesOf } from "./plan.js"

/** The largest file a download takes into memory before writing it (one range, one local write). */
const SMALL_FILE = 1024 * 1024

/** A file whose size differs between two answers of one read. */
const changed = (operation: string, path: string) =>
  new ConnectionLostError({ operation, detail: `${path} changed size during the transfer; read it again` })

/**
 * Reads a file as ranges: the first answer tells the file's size, then the other ranges run in
 * parallel. `sink` learns the first answer, then takes each answer's bytes at its offset, counting
 * them as they arrive. A size that differs between answers means the file changed during the read.
 */
export const readRanges = <E>(
  wire: Wire.WireClient,
  operation: string,
  path: string,
  plan: Plan,
  sink: (
    first: Wire.OpenRead
  ) => Effect.Effect<
    (offset: number, answer: Wire.OpenRead, count: (bytes: number) => void) => Effect.Effect<void, OperationError | E>,
    OperationError | E
  >
): Effect.Effect<Wire.OpenRead, OperationError | E> =>
  Effect.scoped(
    Effect.gen(function* () {
      // The first range keeps its slot until its body is drained, like every other range.
      const giveBack = yield* plan.hold
      const first = yield* wire.openRead(path, { offset: 0, length: plan.rangeSize })
      // A short first answer is a file that shrank between its open and its read.
      if (first.length !== Math.min(plan.rangeSize, first.fileSize)) return yield* Effect.fail(changed(operation, path))
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
        // One range alone needs no fibers of its own: its slot goes back with the scope, just after.
        rest.length === 0
          ? take(0, first, count)
          : Effect.all([take(0, first, count).pipe(Effect.ensuring(giveBack)), readRest], {
              concurrency: "unbounded",
              discard: true
            }),
        silenceBound(
          () => moved,
          idle,
          () => new ConnectionLostError({ operation, detail: `no data for ${Duration.format(idle)}` })
        )
      )
      return first
    })
  )

/** A whole file into memory, in parallel ranges. */
export const readBytes = (wire: Wire.WireClient, path: string, plan: Plan): Effect.Effect<Uint8Array, OperationError> =>
  Effect.suspend(() => {
    let out = new Uint8Array(0)
    return readRanges(wire, "files.read", path, plan, (first) =>
      Effect.sync(() => {
        out = new Uint8Array(first.fileSize)
        return (offset, answer, count) => answer.into(out.subarray(offset, offset + answer.length), count)
      })
    ).pipe(Effect.map(() => out))
  })

/**
 * Downloads one file to a temp file beside `localPath`, renamed over it when complete. `inTree`: the
 * parent is a directory a tree copy has checked (else it is the caller's, created as given).
 */
export const download = (
  ctx: Context,
  operation: string,
  remotePath: string,
  localPath: string,
  plan: Plan,
  modes: { readonly preserve: boolean; readonly umask: number },
  inTree = false
): Effect.Effect<void, OperationError> =>
  Effect.gen(function* () {
    const fs = yield* localFs(ctx, operation, localPath)
    const local = (detail: string) => new LocalFileError({ path: localPath, operation, detail })
    const partial = `${localPath}.${randomBytes(6).toString("hex")}.part`
    const transfer = Effect.gen(function* () {
      if (!inTree) {
        yield* fs.makeDirectory(dirname(localPath), { recursive: true }).pipe(Effect.mapError((e) => local(e.message)))
      }
      // Sized up front, so that every range writes at its own offset through its own handle. Created
      // exclusively ("wx"), so that nothing already at that name, a link least of all, is written to.
      const sized = (first: Wire.OpenRead) =>
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
      // A file of one small range is taken into memory and written at once (exclusively too): one open,
      // write and close instead of a sized file reopened for its range and fed from the body's stream.
      // Modes within the umask need no chmod: the file is created with them (its creation applies the
      // umask, which they already leave out).
      let modeSet = false
      const whole = (_offset: number, answer: Wire.OpenRead, count: (bytes: number) => void) => {
        const bytes = new Uint8Array(answer.length)
        const mode =
          answer.mode === undefined || modes.preserve ? undefined : LocalTree.tamedMode(answer.mode, false, modes.umask)
        return Effect.zipRight(
          answer.into(bytes, count),
          fs.writeFile(partial, bytes, mode === undefined ? { flag: "wx" } : { flag: "wx", mode }).pipe(
            Effect.mapError((e) => local(e.message)),
            Effect.tap(() => {
              modeSet = mode !== undefined
            })
          )
        )
      }
      const first = yield* readRanges(ctx.wire, operation, remotePath, plan, (first) =>
        first.length === first.fileSize && first.fileSize <= SMALL_FILE ? Effect.succeed(whole) : sized(first)
      )
      if (first.mode !== undefined && !modeSet) {
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

/**
 * A file as a stream, as fast as its consumer takes it: only the time spent waiting for bytes counts
 * against the idle bound.
 */
export const readStream = (wire: Wire.WireClient, path: string): Stream.Stream<Uint8Array, OperationError> =>
  Stream.unwrapScoped(
    Effect.zipWith(wire.openRead(path), Effect.option(Effect.currentSpan), (answer, span) => {
      let bytes = 0
      const idle = wire.timeouts.streamIdle
      return answer.body.pipe(
        boundSilence(
          idle,
          () =>
            new ConnectionLostError({ operation: "files.readStream", detail: `no data for ${Duration.format(idle)}` })
        ),
        // The span's count is set in place rather than by an effect per chunk: unrechunked, an HTTP body
        // comes in thousands of small chunks.
        Stream.mapChunks((chunks) => {
          for (const chunk of chunks) bytes += chunk.length
          if (Option.isSome(span)) span.value.attribute("files.bytes", bytes)
          return chunks
        })
      )
    })
  )
