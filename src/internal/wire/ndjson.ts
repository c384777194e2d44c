/**
 * NDJSON event streams (`/v1/exec`, `…/output`) decoded as a Channel, in the manner of
 * `@effect/platform`'s `Ndjson`: bytes in, decoded events out. Lines are found in the bytes (a newline
 * byte never occurs inside a UTF-8 sequence), so a line split across reads is joined as bytes, not as
 * strings; and the base64 output lines, nearly all of a large output, skip JSON parsing entirely.
 */
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Protocol from "../../Protocol.js"

/** An output event as a base64 stream carries it. */
export type OutputLine = typeof Protocol.StdoutEvent.Type | typeof Protocol.StderrEvent.Type

const OUTPUT_PREFIX = {
  stdout: Buffer.from('{"event":"stdout","data":"'),
  stderr: Buffer.from('{"event":"stderr","data":"')
}
const OUTPUT_PREFIX_LENGTH = OUTPUT_PREFIX.stdout.length

/**
 * The output event of a base64 stream, read straight from its bytes: the server writes these lines in
 * exactly this form, and they are nearly all of a large output. Parsing them as JSON costs more than
 * everything else a stream does (a 32 KiB chunk is a 43 KiB string). Anything else is `undefined`.
 */
export const base64OutputLine = (line: Uint8Array): OutputLine | undefined => {
  const end = line.length - 2 // the closing `"}`
  if (end < OUTPUT_PREFIX_LENGTH || line[end] !== 0x22 || line[end + 1] !== 0x7d) return undefined
  const bytes = Buffer.from(line.buffer, line.byteOffset, line.length)
  const event =
    bytes.compare(OUTPUT_PREFIX.stdout, 0, OUTPUT_PREFIX_LENGTH, 0, OUTPUT_PREFIX_LENGTH) === 0
      ? "stdout"
      : bytes.compare(OUTPUT_PREFIX.stderr, 0, OUTPUT_PREFIX_LENGTH, 0, OUTPUT_PREFIX_LENGTH) === 0
        ? "stderr"
        : undefined
  // A quote or backslash inside would be JSON escaping: not a plain base64 string, so parsed in full.
  if (event === undefined || bytes.indexOf(0x22, OUTPUT_PREFIX_LENGTH) !== end) return undefined
  const backslash = bytes.indexOf(0x5c, OUTPUT_PREFIX_LENGTH)
  if (backslash !== -1 && backslash < end) return undefined
  return { event, data: bytes.toString("latin1", OUTPUT_PREFIX_LENGTH, end) }
}

/**
 * Splits NDJSON bytes into lines, each decoded once by `decode` (a line it gives none for is skipped).
 * Stateful: one per stream.
 */
export const splitLines = <A>(decode: (line: Uint8Array) => Option.Option<A>) => {
  let partial: Array<Uint8Array> = []
  return (chunks: Chunk.Chunk<Uint8Array>): Chunk.Chunk<A> => {
    const decoded: Array<A> = []
    const take = (line: Uint8Array) => {
      const event = decode(line)
      if (Option.isSome(event)) decoded.push(event.value)
    }
    for (const chunk of chunks) {
      let start = 0
      let end = chunk.indexOf(10)
      while (end !== -1) {
        const piece = chunk.subarray(start, end)
        if (partial.length === 0) take(piece)
        else {
          partial.push(piece)
          take(Buffer.concat(partial))
          partial = []
        }
        start = end + 1
        end = chunk.indexOf(10, start)
      }
      if (start < chunk.length) partial.push(chunk.subarray(start))
    }
    return Chunk.unsafeFromArray(decoded)
  }
}

/** A channel from NDJSON bytes to the lines `decode` gives a value for. */
export const unpack = <A, IE = never, Done = unknown>(
  decode: (line: Uint8Array) => Option.Option<A>
): Channel.Channel<Chunk.Chunk<A>, Chunk.Chunk<Uint8Array>, IE, IE, Done, Done> =>
  Channel.suspend(() => {
    const split = splitLines(decode)
    const loop: Channel.Channel<Chunk.Chunk<A>, Chunk.Chunk<Uint8Array>, IE, IE, Done, Done> = Channel.readWithCause({
      onInput: (input: Chunk.Chunk<Uint8Array>) => {
        const lines = split(input)
        return Chunk.isEmpty(lines) ? loop : Channel.zipRight(Channel.write(lines), loop)
      },
      onFailure: Channel.failCause,
      onDone: Channel.succeed
    })
    return loop
  })

/**
 * A channel from NDJSON bytes to the events of `schema`: base64 output lines read directly, every other
 * line decoded as JSON. A line `schema` does not know (a newer server's event type) is skipped, so the
 * protocol can grow.
 */
export const unpackEvents = <A, I>(schema: Schema.Schema<A, I>) => {
  const decoderOf = eventDecoder(schema)
  return <IE = never, Done = unknown>(): Channel.Channel<
    Chunk.Chunk<A | OutputLine>,
    Chunk.Chunk<Uint8Array>,
    IE,
    IE,
    Done,
    Done
  > => Channel.suspend(() => unpack(decoderOf()))
}

/**
 * The line decoder of {@link unpackEvents}, for a caller that splits the bytes itself
 * ({@link splitLines}): a fresh one per stream.
 */
export const eventDecoder = <A, I>(schema: Schema.Schema<A, I>) => {
  const decodeLine = Schema.decodeUnknownOption(Schema.parseJson(schema))
  return (): ((line: Uint8Array) => Option.Option<A | OutputLine>) => {
    const decoder = new TextDecoder()
    return (line) => {
      const output = base64OutputLine(line)
      return output !== undefined ? Option.some(output) : decodeLine(decoder.decode(line))
    }
  }
}
