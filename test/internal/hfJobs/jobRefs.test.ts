/**
 * The small pure pieces behind job logs, ids and labels: the time bounds of one pass over a log stream
 * (on the TestClock), the parsing of `[namespace/]id`, and the Hub's label rule.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as JobLabels from "../../../src/internal/hfJobs/jobLabels.js"
import * as JobRef from "../../../src/internal/hfJobs/jobRef.js"
import { boundedPass } from "../../../src/internal/hfJobs/logs.js"

/** Elements that arrive after the given delays (each from the previous one), then a stream that never ends. */
const arriving = (delays: ReadonlyArray<number>) =>
  Stream.fromIterable(delays.map((ms, i) => [ms, i] as const)).pipe(
    Stream.mapEffect(([ms, i]) => Effect.as(Effect.sleep(Duration.millis(ms)), `line ${i}`)),
    Stream.concat(Stream.never)
  )

describe("boundedPass", () => {
  it.effect("the first element may take up to firstByte; then a gap longer than the quiet window ends the pass", () =>
    Effect.gen(function* () {
      const fiber = yield* boundedPass(arriving([8_000, 100, 4_000, 6_000]), Duration.seconds(30), () =>
        Option.some(Duration.seconds(5))
      ).pipe(Stream.runCollect, Effect.fork)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(Chunk.toArray(yield* Fiber.join(fiber)), ["line 0", "line 1", "line 2"])
    })
  )

  it.effect("no first element within firstByte: the pass ends empty", () =>
    Effect.gen(function* () {
      const fiber = yield* boundedPass(arriving([31_000]), Duration.seconds(30), () =>
        Option.some(Duration.seconds(5))
      ).pipe(Stream.runCollect, Effect.fork)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(Chunk.toArray(yield* Fiber.join(fiber)), [])
    })
  )

  it.effect("a quiet bound of None waits as long as it takes; the bound is asked before each element", () =>
    Effect.gen(function* () {
      let bounded = true
      const fiber = yield* boundedPass(arriving([10, 60_000, 60_000, 10]), Duration.seconds(30), () =>
        bounded ? Option.none() : Option.some(Duration.seconds(1))
      ).pipe(
        Stream.tap((line) =>
          Effect.sync(() => {
            if (line === "line 1") bounded = false
          })
        ),
        Stream.runCollect,
        Effect.fork
      )
      yield* TestClock.adjust("300 seconds")
      assert.deepStrictEqual(Chunk.toArray(yield* Fiber.join(fiber)), ["line 0", "line 1"])
    })
  )
})

describe("job references", () => {
  const id = "687fb701029421ae5549d998"

  it("an id, or namespace/id; a namespace given apart must agree", () => {
    assert.deepStrictEqual(JobRef.parse(id), Either.right({ namespace: undefined, id }))
    assert.deepStrictEqual(JobRef.parse(`alice/${id}`), Either.right({ namespace: "alice", id }))
    assert.deepStrictEqual(JobRef.parse(id, "acme"), Either.right({ namespace: "acme", id }))
    assert.deepStrictEqual(JobRef.parse(`acme/${id}`, "acme"), Either.right({ namespace: "acme", id }))
    assert.isTrue(Either.isLeft(JobRef.parse(`acme/${id}`, "alice")))
  })

  it("anything that could make another Hub path is refused", () => {
    for (const bad of [
      "../../x",
      "x",
      "",
      `${id}/cancel`,
      `alice/${id}/cancel`,
      `../${id}`,
      `./${id}`,
      `a..b/${id}`,
      `-alice/${id}`,
      `/${id}`,
      `${id}?x=1`,
      id.toUpperCase(),
      `${id}0`
    ]) {
      assert.isTrue(Either.isLeft(JobRef.parse(bad)), bad)
    }
    assert.isTrue(Either.isLeft(JobRef.parse(id, "../x")))
  })
})

describe("job labels", () => {
  it("keys of 1-100 and values of 0-100 characters of [A-Za-z0-9._-]", () => {
    assert.isUndefined(JobLabels.problem({ "team.ml": "a-b_c.1", empty: "", ["k".repeat(100)]: "v".repeat(100) }))
    for (const bad of [{ "": "v" }, { "a b": "v" }, { k: "a/b" }, { ["k".repeat(101)]: "v" }, { k: "v".repeat(101) }]) {
      assert.isString(JobLabels.problem(bad), JSON.stringify(bad))
    }
  })
})
