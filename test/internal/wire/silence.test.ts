/**
 * Silence bounds (on the TestClock): a stream, or a read loop, fails once one read has waited `idle`
 * for its next chunk; the reader's own time between reads does not count; its fibers end with it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import { boundSilence, drainBounded } from "../../../src/internal/wire/silence.js"

const IDLE = Duration.minutes(1)
const silent = () => "silent" as const
const bounded = boundSilence(IDLE, silent)

/** Elements that arrive after the given delays (each from the previous one), then a stream that never ends. */
const arriving = (delays: ReadonlyArray<number>) =>
  Stream.fromIterable(delays.map((s, i) => [s, i] as const)).pipe(
    Stream.mapEffect(([s, i]) => Effect.as(Effect.sleep(Duration.seconds(s)), i)),
    Stream.concat(Stream.never)
  )

/** Runs `effect` supervised, and then the fibers it left running (none, when it cleans up after itself). */
const leftRunning = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const supervisor = yield* Supervisor.track
    const exit = yield* Effect.exit(Effect.supervised(effect, supervisor))
    return { exit, running: (yield* supervisor.value).length }
  })

describe("boundSilence", () => {
  it.effect("a read that waits idle fails with the silence error, not before", () =>
    Effect.gen(function* () {
      const fiber = yield* arriving([50, 59]).pipe(bounded, Stream.runCollect, Effect.fork)
      yield* TestClock.adjust("109 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.await(fiber), Exit.fail("silent" as const))
    })
  )

  it.effect("the consumer's time between reads does not count", () =>
    Effect.gen(function* () {
      const fiber = yield* Stream.make(1, 2, 3).pipe(
        Stream.rechunk(1),
        bounded,
        Stream.tap(() => Effect.sleep("5 minutes")),
        Stream.runCollect,
        Effect.fork
      )
      yield* TestClock.adjust("15 minutes")
      assert.deepStrictEqual(Chunk.toArray(yield* Fiber.join(fiber)), [1, 2, 3])
    })
  )

  it.effect("a chunk whose read was interrupted goes to the next read", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.gen(function* () {
        const pull = yield* Stream.toPull(bounded(arriving([30, 20])))
        const first = yield* Effect.timeout(pull, "10 seconds").pipe(Effect.option)
        // The chunk comes in while no read waits for it.
        yield* Effect.sleep("30 seconds")
        const second = yield* pull
        const third = yield* pull
        return [first, ...second, ...third]
      }).pipe(Effect.scoped, Effect.fork)
      yield* TestClock.adjust("70 seconds")
      assert.deepStrictEqual(yield* Fiber.join(fiber), [Option.none(), 0, 1])
    })
  )

  it.effect("its fibers end with the stream: done, failed or interrupted", () =>
    Effect.gen(function* () {
      const done = yield* leftRunning(Stream.runCollect(bounded(Stream.make(1, 2, 3))))
      assert.isTrue(Exit.isSuccess(done.exit))
      assert.strictEqual(done.running, 0)

      const failing = yield* Effect.fork(leftRunning(Stream.runDrain(bounded(Stream.never))))
      yield* TestClock.adjust(IDLE)
      const failed = yield* Fiber.join(failing)
      assert.deepStrictEqual(failed.exit, Exit.fail("silent" as const))
      assert.strictEqual(failed.running, 0)

      const interrupted = yield* leftRunning(
        Stream.runDrain(bounded(Stream.never)).pipe(
          Effect.timeout("10 seconds"),
          Effect.fork,
          Effect.tap(() => TestClock.adjust("10 seconds")),
          Effect.flatMap(Fiber.join)
        )
      )
      assert.isTrue(Exit.isFailure(interrupted.exit))
      assert.strictEqual(interrupted.running, 0)
    })
  )
})

describe("drainBounded", () => {
  const drain = <A>(stream: Stream.Stream<A>, onChunk: (chunk: Chunk.Chunk<A>) => Effect.Effect<void>) =>
    Effect.scoped(Effect.flatMap(Stream.toPull(stream), (pull) => drainBounded(pull, IDLE, silent, onChunk)))

  it.effect("reads to the end, and fails once a read waits idle", () =>
    Effect.gen(function* () {
      const seen: Array<number> = []
      const fiber = yield* Effect.fork(drain(arriving([50, 59]), (chunk) => Effect.sync(() => seen.push(...chunk))))
      yield* TestClock.adjust("168 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      assert.deepStrictEqual(seen, [0, 1])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.await(fiber), Exit.fail("silent" as const))

      const ended = yield* leftRunning(drain(Stream.make(1, 2, 3), () => Effect.void))
      assert.isTrue(Exit.isSuccess(ended.exit))
      assert.strictEqual(ended.running, 0)
    })
  )

  it.effect("the time spent on a chunk does not count", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(drain(Stream.rechunk(Stream.make(1, 2, 3), 1), () => Effect.sleep("5 minutes")))
      yield* TestClock.adjust("15 minutes")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
    })
  )
})
