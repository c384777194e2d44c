/**
 * What `exec` keeps of a command's output: each stream's bytes up to a cap, decoded once at the end.
 */

/** The default cap of `exec`'s captured output, per stream. */
export const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024

const decoder = new TextDecoder()

/** Collects one stream's bytes up to a cap; the text is decoded once, whole. */
export const makeCapture = (limit: number) => {
  const parts: Array<Uint8Array> = []
  let bytes = 0
  let truncated = false
  let whole: Uint8Array | undefined
  return {
    push(data: Uint8Array) {
      if (truncated) return
      const room = limit - bytes
      parts.push(data.length <= room ? data : data.subarray(0, room))
      bytes += Math.min(data.length, room)
      truncated = data.length > room
    },
    bytes: () => {
      if (whole === undefined) {
        // One copy: Buffer.concat's result wrapped in a Uint8Array would be copied a second time.
        whole = new Uint8Array(bytes)
        let at = 0
        for (const part of parts) {
          whole.set(part, at)
          at += part.length
        }
      }
      return whole
    },
    // A cut in the middle of a character leaves U+FFFD at the end: dropped, the cap is in bytes.
    text() {
      const text = decoder.decode(this.bytes())
      return truncated ? text.replace(/\uFFFD$/, "") : text
    },
    get truncated() {
      return truncated
    }
  }
}
