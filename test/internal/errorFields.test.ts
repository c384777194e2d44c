/**
 * Errors made from others: a copy keeps every field its schema has (a field added later too), and a
 * `StartError` met by something that starts nothing says what could not be done.
 */
import { assert, describe, it } from "@effect/vitest"
import { withFields } from "../../src/internal/errorFields.js"
import * as StartErrors from "../../src/internal/startError.js"
import { PoolError, StartError } from "../../src/SandboxError.js"

/** A `StartError` with every field set. */
const full = new StartError({
  provider: "hf-jobs",
  reason: "NameTaken",
  detail: "taken",
  stderrTail: "the server's last words",
  cause: new Error("the cause"),
  holder: { id: "687fb701029421ae5549d998", name: "web" },
  invalid: { option: "name", problem: '"web" is taken' }
})

describe("internal/errorFields and internal/startError", () => {
  it("withFields changes what it is given and keeps every other field of the schema", () => {
    const fields = Object.keys(StartError.fields).filter((key) => key !== "_tag")
    const copy = withFields(StartError, full, { detail: "said again" })
    assert.instanceOf(copy, StartError)
    for (const key of fields) {
      const expected = key === "detail" ? "said again" : (full as unknown as Record<string, unknown>)[key]
      assert.deepStrictEqual((copy as unknown as Record<string, unknown>)[key], expected, key)
    }
    // An unset field stays unset rather than becoming an own `undefined`.
    const bare = withFields(StartError, new StartError({ provider: "local", reason: "Timeout", detail: "d" }), {})
    assert.deepStrictEqual(
      Object.keys(bare).filter((key) => fields.includes(key)),
      ["provider", "reason", "detail"]
    )
  })

  it("withFields takes any error class made by Schema.TaggedError: a PoolError with its option changed", () => {
    const pool = new PoolError({
      pool: "p",
      reason: "InvalidOptions",
      option: "maxHosts",
      detail: "0 is too few",
      host: "h"
    })
    const copy = withFields(PoolError, pool, { option: undefined, detail: "invalid --max-hosts: 0 is too few" })
    assert.instanceOf(copy, PoolError)
    assert.isFalse("option" in copy)
    assert.strictEqual(copy.message, "Sandbox pool p (host h) (InvalidOptions): invalid --max-hosts: 0 is too few")
  })

  it("during keeps the error's fields and says what could not be done; an error already said so is kept", () => {
    const attached = StartErrors.during("attach to sandbox 687f", full)
    assert.strictEqual(attached.during, "attach to sandbox 687f")
    assert.deepStrictEqual(attached.holder, full.holder)
    assert.deepStrictEqual(attached.invalid, full.invalid)
    assert.strictEqual(attached.cause, full.cause)
    assert.isTrue(
      attached.message.startsWith("Could not attach to sandbox 687f on the hf-jobs provider (NameTaken): taken")
    )
    assert.strictEqual(StartErrors.during("list sandboxes", attached), attached)
    const other = new Error("not a StartError")
    assert.strictEqual(StartErrors.during("list sandboxes", other), other)
  })
})
