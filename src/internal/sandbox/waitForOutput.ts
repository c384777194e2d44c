/**
 * `process.waitForOutput`: follows a process's output until a pattern appears on one of its streams,
 * with a bound, and says what it saw when the pattern never came.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { ExecEvent, OutputMatch, Process, WaitForOutputOptions } from "../../Sandbox.js"
import { OutputWaitError } from "../../SandboxError.js"
import * as Validate from "../validate.js"

/** How much of each stream a pattern is tested against (a match may span chunks, not megabytes). */
const WINDOW = 64 * 1024
/** How much output an error shows. */
const TAIL = 2_000

const DEFAULT_TIMEOUT = Duration.minutes(2)

const describe = (pattern: string | RegExp) => (typeof pattern === "string" ? JSON.stringify(pattern) : String(pattern))

/** The first match of `pattern` in `text`, if any. */
const matcher =
  (pattern: string | RegExp) =>
  (text: string): Omit<OutputMatch, "stream"> | undefined => {
    if (typeof pattern === "string") return text.includes(pattern) ? { text: pattern, groups: [] } : undefined
    // A global or sticky RegExp keeps its position between calls: every test starts from the beginning.
    pattern.lastIndex = 0
    const found = pattern.exec(text)
    return found === null ? undefined : { text: found[0], groups: found.slice(1) }
  }

/** The end of a process's output (both streams, in order), for an error; empty if it cannot be read. */
export const tailOf = (process: Pick<Process<unknown>, "output">): Effect.Effect<string> =>
  process.output().pipe(
    Stream.runFold("", (text, event) =>
      event._tag === "Stdout" || event._tag === "Stderr" ? (text + event.text).slice(-TAIL) : text
    ),
    Effect.map((text) => text.trimEnd()),
    Effect.orElseSucceed(() => "")
  )

/** How a process ended, in words. */
export const exitDetail = (exit: { readonly exitCode: number | null; readonly signal: number | null }) =>
  exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.exitCode}`

/** `waitForOutput` of the process `id` whose output stream is `output`. */
export const waitForOutput =
  (id: string, output: Process<unknown>["output"]): Process<unknown>["waitForOutput"] =>
  (pattern, options: WaitForOutputOptions = {}) =>
    Effect.gen(function* () {
      const timeout = yield* Validate.check("waitForOutput", () =>
        options.timeout === undefined ? DEFAULT_TIMEOUT : Validate.positiveDuration("timeout", options.timeout)
      )
      const test = matcher(pattern)
      const seen = { stdout: "", stderr: "" }
      const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
      let tail = ""
      let exit: Extract<ExecEvent, { _tag: "Exit" }> | undefined
      const scan = (event: ExecEvent): Option.Option<OutputMatch> => {
        if (event._tag === "Exit") exit = event
        if (event._tag !== "Stdout" && event._tag !== "Stderr") return Option.none()
        const stream = event._tag === "Stdout" ? "stdout" : "stderr"
        const text = decoders[stream].decode(event.data, { stream: true })
        seen[stream] = (seen[stream] + text).slice(-WINDOW)
        tail = (tail + text).slice(-TAIL)
        const found = test(seen[stream])
        return found === undefined ? Option.none() : Option.some({ stream, ...found })
      }
      const failure = (reason: "Timeout" | "Exited", detail: string) =>
        new OutputWaitError({ id, pattern: describe(pattern), reason, detail, tail: tail.trimEnd() })
      const found = yield* output({ follow: true }).pipe(
        Stream.filterMap(scan),
        Stream.runHead,
        Effect.timeoutFail({ duration: timeout, onTimeout: () => failure("Timeout", Duration.format(timeout)) })
      )
      if (Option.isSome(found)) return found.value
      return yield* failure("Exited", exit === undefined ? "its output ended" : exitDetail(exit))
    })
