/**
 * The exec stream's fast path: base64 output lines are read straight from their bytes, and anything
 * that is not exactly such a line is left to the full JSON and Schema decoding.
 */
import { assert, describe, it } from "@effect/vitest"
import { base64OutputLine } from "../../../src/internal/wire/ndjson.js"

const line = (text: string) => new Uint8Array(Buffer.from(text, "latin1"))

describe("base64 output lines", () => {
  it("are read from their bytes, stdout and stderr alike", () => {
    assert.deepStrictEqual(base64OutputLine(line('{"event":"stdout","data":"aGVsbG8="}')), {
      event: "stdout",
      data: "aGVsbG8="
    })
    assert.deepStrictEqual(base64OutputLine(line('{"event":"stderr","data":""}')), { event: "stderr", data: "" })
    // A view into a larger buffer (as lines are split out of a chunk) reads only its own bytes.
    const chunk = Buffer.from('xx{"event":"stdout","data":"QQ=="}\nyy', "latin1")
    assert.deepStrictEqual(base64OutputLine(new Uint8Array(chunk.buffer, chunk.byteOffset + 2, 32)), {
      event: "stdout",
      data: "QQ=="
    })
  })

  it("leave every other line to the full decoder", () => {
    for (const other of [
      '{"event":"start","pid":12}',
      '{"event":"exit","exit_code":0,"signal":null,"timed_out":false,"duration_ms":3}',
      '{"data":"aGVsbG8=","event":"stdout"}', // another key order
      '{"event":"stdout","data":"a\\"b"}', // JSON escaping inside: text, not base64
      '{"event":"stdout","data":"a\\\\"}',
      '{"event":"stdout","data":"x", "more":"y"}',
      '{"event":"stdout","data":"aGVsbG8="', // cut short
      '{"event":"stdout","data":"',
      ""
    ]) {
      assert.isUndefined(base64OutputLine(line(other)), other)
    }
  })
})
