/**
 * A command in a sandbox, as `exec`, `run` and `process logs` show it: its output as bytes on our stdout
 * and stderr (or, with `--json`, every event as a line), its exit code as ours, and this process's stdin
 * as its input.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as ReadInto from "../internal/wire/readInto.js"
import type * as Sandbox from "../Sandbox.js"
import { LocalFileError } from "../SandboxError.js"
import * as Output from "./output.js"
import * as Parse from "./parse.js"

/**
 * This process's stdin as a stream, read only as fast as the command in the sandbox takes it (the
 * library sends it in bounded parts): `tar c big | hf-sandbox exec -i ID -- tar x` holds about one part
 * in memory, whatever the size.
 */
export const stdinStream = (): Stream.Stream<Uint8Array, LocalFileError> =>
  ReadInto.fromFd(
    0,
    () => process.stdin,
    (cause) =>
      new LocalFileError({
        path: "<stdin>",
        operation: "exec -i",
        detail: cause instanceof Error ? cause.message : String(cause)
      })
  )

/** The exit code a finished command maps to: its own, 124 after its timeout, 128+N after signal N. */
const exitCodeOf = (exit: { exitCode: number | null; signal: number | null; timedOut: boolean }) =>
  exit.timedOut ? 124 : exit.signal !== null ? 128 + exit.signal : (exit.exitCode ?? 1)

/** Writes a command's events: its output as bytes to our stdout and stderr, or (--json) every event as a line. */
export const eventWriter = (mode: Output.Mode) => {
  const text = { Stdout: new TextDecoder(), Stderr: new TextDecoder() }
  return (event: Sandbox.ExecEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Start":
        return mode.json ? Output.json({ event: "start", pid: event.pid }) : Effect.void
      case "Stdout":
      case "Stderr":
        return mode.json
          ? Output.json({
              event: event._tag.toLowerCase(),
              data: text[event._tag].decode(event.data, { stream: true })
            })
          : Output.write(event._tag === "Stdout" ? "stdout" : "stderr", event.data)
      case "Exit":
        return mode.json
          ? Output.json({
              event: "exit",
              exitCode: event.exitCode,
              signal: event.signal,
              timedOut: event.timedOut,
              durationMs: event.durationMs
            })
          : Effect.void
    }
  }
}

/** Runs a command in a sandbox, its output streamed live to our stdout/stderr (or as NDJSON). */
export const streamCommand = <E>(
  sb: Sandbox.Sandbox,
  command: ReadonlyArray<string>,
  options: Omit<Sandbox.ExecOptions<E>, "maxOutputBytes">,
  mode: Output.Mode
) =>
  Effect.gen(function* () {
    let exit: Extract<Sandbox.ExecEvent, { _tag: "Exit" }> | undefined
    const write = eventWriter(mode)
    yield* sb.execStream(Parse.commandForm(command), options).pipe(
      // Nobody reads our stdout any more: ending the stream kills the remote command.
      Stream.interruptWhen(Output.stdoutClosed),
      Stream.runForEach((event) => {
        if (event._tag === "Exit") exit = event
        return write(event)
      })
    )
    // Cut short because our stdout was closed: the exit status of a process killed by SIGPIPE.
    if (exit === undefined) return 128 + 13
    const done = exit
    if (done.timedOut && options.timeout !== undefined) {
      yield* Output.note(
        mode,
        `hf-sandbox: the command timed out after ${Duration.format(Duration.decode(options.timeout))} and was killed (exit 124)`
      )
    }
    return exitCodeOf(done)
  })
