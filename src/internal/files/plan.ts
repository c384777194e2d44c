/**
 * How one top-level transfer runs: its checked options (parallelism, range size, mode), its request
 * slots, its progress, and the attributes of its span.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import {
  DEFAULT_PARALLELISM,
  DEFAULT_RANGE_SIZE,
  MIN_RANGE_SIZE,
  type TransferOptions,
  type TransferProgress
} from "../../Files.js"
import { InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import * as Validate from "../validate.js"
import type { Context } from "./context.js"

const MAX_PARALLELISM = 64

/** Counts bytes for a transfer's progress callback (and its span). */
export interface Progress {
  readonly add: (bytes: number) => void
  readonly grow: (total: number) => void
  /** Bytes moved so far. */
  readonly bytes: () => number
}

/** How one top-level transfer runs its requests: at most `parallelism` at once, in ranges of `rangeSize`. */
export interface Plan {
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
export const traced = <A, E, R>(plan: Plan, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.annotateCurrentSpan({ "files.parallelism": plan.parallelism, "files.range_size": plan.rangeSize }).pipe(
    Effect.zipRight(effect),
    Effect.ensuring(Effect.suspend(() => Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())))
  )

/** A mode must be an integer 0–0o7777: `(1.5).toString(8)` is "1.4", which the server would take. */
export const checkMode = (operation: string, mode: unknown): Effect.Effect<number, InvalidArgumentError> =>
  Validate.check(operation, () => Validate.mode("mode", mode))

/**
 * The plan of one top-level transfer, its options checked (`mode` too, when given: a transfer that
 * would fail at its end on a bad mode fails before it starts).
 */
export const makePlan = (
  operation: string,
  options: TransferOptions & { readonly mode?: number | undefined },
  total: number | undefined
): Effect.Effect<Plan, InvalidArgumentError> =>
  options.mode === undefined
    ? checkedPlan(operation, options, total)
    : Effect.zipRight(checkMode(operation, options.mode), checkedPlan(operation, options, total))

/** The plan, once the mode (if any) is checked. */
const checkedPlan = (
  operation: string,
  options: TransferOptions,
  total: number | undefined
): Effect.Effect<Plan, InvalidArgumentError> => {
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
export const annotateTree = (count: number, total: number, plan: Plan) =>
  Effect.annotateCurrentSpan({
    "files.count": count,
    "files.total_bytes": total,
    "files.parallelism": plan.parallelism,
    "files.range_size": plan.rangeSize
  })

/** `[offset, length)` pieces of a file of `size` bytes; an empty file is one empty piece. */
export const rangesOf = (size: number, rangeSize: number, from = 0) => {
  const ranges: Array<{ readonly offset: number; readonly length: number }> = []
  for (let offset = from; offset < size; offset += rangeSize) {
    ranges.push({ offset, length: Math.min(rangeSize, size - offset) })
  }
  return ranges.length === 0 ? [{ offset: from, length: 0 }] : ranges
}

/** Runs `use` with the plan of a top-level transfer, in the transfer's span (see {@link traced}). */
export const withPlan = <A>(
  { guard }: Context,
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
