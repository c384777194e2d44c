/**
 * Running commands: `exec` and `execStream` (one stream of events, reattached after a dropped
 * connection, with stdin fed from a Stream when given one), and the request every command starts with.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Protocol from "../../Protocol.js"
import type { ExecEvent, ExecOptions, ExecResult, OutputEvent, ProcessExit, Sandbox } from "../../Sandbox.js"
import { BadRequestError, type InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import * as Validate from "../validate.js"
import * as Reattach from "../wire/reattach.js"
import * as Stdin from "../wire/stdin.js"
import { commandAttributes, exitAttributes } from "./attributes.js"
import { DEFAULT_MAX_OUTPUT, makeCapture } from "./capture.js"
import { alive, type Running } from "./running.js"

const decoder = new TextDecoder()

/** An output event; `text` is decoded only when asked for. */
export const outputEvent = (stream: "stdout" | "stderr", data: Uint8Array): OutputEvent => ({
  _tag: stream === "stdout" ? "Stdout" : "Stderr",
  data,
  get text() {
    return decoder.decode(data)
  }
})

/** How a command ended, from the server's snake_case fields (an exit event, a wait's answer). */
export const toExit = (e: {
  readonly exit_code: number | null
  readonly signal: number | null
  readonly timed_out: boolean
  readonly duration_ms: number
}) => ({
  exitCode: e.exit_code,
  signal: e.signal,
  timedOut: e.timed_out,
  durationMs: e.duration_ms
})

/** The request of a command; bad options fail here, naming the option, before anything is sent. */
export const execRequest = (
  defaultCwd: string | undefined,
  operation: string,
  command: string | ReadonlyArray<string>,
  execOptions: Omit<ExecOptions<unknown>, "stdin">,
  stdin: Stdin.Plan<unknown> = Stdin.plan(undefined)
): Effect.Effect<Protocol.ExecRequest, InvalidArgumentError> =>
  Validate.check(operation, () => buildExecRequest(defaultCwd, command, execOptions, stdin))
const buildExecRequest = (
  defaultCwd: string | undefined,
  command: string | ReadonlyArray<string>,
  execOptions: Omit<ExecOptions<unknown>, "stdin">,
  stdin: Stdin.Plan<unknown>
): Protocol.ExecRequest => {
  const env = execOptions.env
  Validate.env("env", env)
  const cwd = execOptions.cwd ?? defaultCwd
  const idempotencyKey = Validate.idempotencyKey("idempotencyKey", execOptions.idempotencyKey)
  return {
    cmd: typeof command === "string" ? command : [...command],
    ...(env ? { env: { ...env } } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
    ...(execOptions.timeout !== undefined
      ? { timeout: Validate.commandTimeoutMs("timeout", execOptions.timeout) / 1000 }
      : {}),
    ...stdin.inline,
    ...(stdin.source !== undefined ? { stdin_pipe: true } : {}),
    ...(idempotencyKey !== undefined ? { idempotency_key: idempotencyKey } : {})
  }
}

/**
 * A command's wire events, with its stdin fed from `source` once its start event names it; if the
 * source fails, the command is killed and the events fail with the source's error.
 */
const feedingStdin = <E>(
  { schedules, wire }: Running,
  operation: string,
  wireEvents: Stream.Stream<Reattach.CommandEvent, OperationError>,
  source: Stream.Stream<Uint8Array, E> | undefined
): Stream.Stream<Reattach.CommandEvent, OperationError | E> =>
  source === undefined
    ? wireEvents
    : Stream.unwrapScoped(
        Effect.gen(function* () {
          const failed = yield* Deferred.make<void, OperationError | E>()
          const scope = yield* Effect.scope
          const start = (id: string | undefined) =>
            id === undefined
              ? Effect.fail(
                  new BadRequestError({
                    operation,
                    status: 501,
                    code: "stdin_pipe_unsupported",
                    detail:
                      "this sandbox's server cannot stream stdin (its exec has no id); pass stdin as a string or bytes of at most 1 MiB"
                  })
                )
              : Stdin.makeWriter(wire, id, schedules.stdinRetry, 0)
                  .feed(source)
                  .pipe(
                    // Recorded, the failure ends the events (interruptWhen below), and the command's
                    // stream kills the command it gives up on (bounded, see Reattach.run).
                    Effect.catchAll((error) => Deferred.fail(failed, error).pipe(Effect.ignore)),
                    Effect.forkIn(scope),
                    Effect.asVoid
                  )
          const stdinFailed = Effect.flatMap(Deferred.poll(failed), (done) =>
            Option.isSome(done) ? done.value : Effect.void
          )
          return wireEvents.pipe(
            Stream.tap((event) => (event.event === "start" ? start(event.id) : Effect.void)),
            Stream.interruptWhen(Deferred.await(failed)),
            Stream.concat(Stream.execute(stdinFailed))
          )
        })
      )

/** A command's request as sent (keyed, its output in base64), and how its stdin goes. */
const prepare = <E>(
  running: Running,
  operation: string,
  command: string | ReadonlyArray<string>,
  execOptions: Omit<ExecOptions<E>, "maxOutputBytes">
) =>
  Effect.suspend(() => {
    const stdin = Stdin.plan(execOptions.stdin)
    return Effect.map(execRequest(running.cwd, operation, command, execOptions, stdin), (request) => ({
      request: {
        ...request,
        encoding: "base64" as const,
        idempotency_key: request.idempotency_key ?? Reattach.newIdempotencyKey()
      },
      stdin
    }))
  })

/** A prepared command's wire events, as a stream, its stdin fed from its source if it has one. */
const commandEvents = <E>(
  running: Running,
  operation: string,
  request: Protocol.ExecRequest,
  stdin: Stdin.Plan<E>
): Stream.Stream<Reattach.CommandEvent, OperationError | E> =>
  feedingStdin(
    running,
    operation,
    Reattach.run(running.wire, request, operation, running.schedules.reattach),
    stdin.source
  )

/** A command's events, without a span of its own (exec and execStream each have theirs). */
const events = <E>(
  running: Running,
  operation: string,
  command: string | ReadonlyArray<string>,
  execOptions: Omit<ExecOptions<E>, "maxOutputBytes">
): Stream.Stream<ExecEvent, OperationError | E> =>
  Stream.unwrap(
    alive(
      running,
      operation,
      prepare(running, operation, command, execOptions).pipe(
        Effect.map(({ request, stdin }) =>
          commandEvents(running, operation, request, stdin).pipe(
            Stream.filterMap((event): Option.Option<ExecEvent> => {
              switch (event.event) {
                case "start":
                  return Option.some({ _tag: "Start", pid: event.pid })
                case "stdout":
                case "stderr":
                  return Option.some(outputEvent(event.event, event.data))
                case "exit":
                  return Option.some({ _tag: "Exit", ...toExit(event) })
                default:
                  return Option.none()
              }
            }),
            Stream.tap((event) =>
              event._tag === "Exit" ? Effect.annotateCurrentSpan(exitAttributes(event)) : Effect.void
            )
          )
        )
      )
    )
  )

/** `sb.execStream`: a command's events, in a span of their own. */
export const execStream =
  (running: Running): Sandbox["execStream"] =>
  <E>(command: string | ReadonlyArray<string>, execOptions: Omit<ExecOptions<E>, "maxOutputBytes"> = {}) =>
    events(running, "execStream", command, execOptions).pipe(
      Stream.withSpan("Sandbox.execStream", {
        attributes: { ...running.attributes, ...commandAttributes(command, execOptions) }
      })
    )

/**
 * A command run to its end for `exec`, its events handed to `onEvent` as they come. Without a stdin
 * stream to feed, the events are read by this fiber (`Reattach.collect`): a stream's machinery costs
 * the client several times what the exchange itself does.
 */
const collect = <E>(
  running: Running,
  command: string | ReadonlyArray<string>,
  execOptions: Omit<ExecOptions<E>, "maxOutputBytes">,
  onEvent: (event: Reattach.CommandEvent) => void
): Effect.Effect<void, OperationError | E> =>
  alive(
    running,
    "exec",
    Effect.flatMap(prepare(running, "exec", command, execOptions), ({ request, stdin }) =>
      stdin.source === undefined
        ? Reattach.collect(running.wire, request, "exec", running.schedules.reattach, onEvent)
        : Stream.runForEach(commandEvents(running, "exec", request, stdin), (event) =>
            Effect.sync(() => onEvent(event))
          )
    )
  )

// exec is a command's events folded into a result: output kept as bytes up to the cap, decoded once at
// the end (so a character split across chunks decodes whole).
export const exec =
  (running: Running): Sandbox["exec"] =>
  <E>(command: string | ReadonlyArray<string>, execOptions: ExecOptions<E> = {}) => {
    const { maxOutputBytes, ...streamOptions } = execOptions
    const checkedLimit = Validate.check("exec", () =>
      maxOutputBytes === undefined ? DEFAULT_MAX_OUTPUT : Validate.positiveBytes("maxOutputBytes", maxOutputBytes)
    )
    return Effect.flatMap(checkedLimit, (limit) => {
      const stdout = makeCapture(limit)
      const stderr = makeCapture(limit)
      let exit: ProcessExit | undefined
      return collect(running, command, streamOptions, (event) => {
        switch (event.event) {
          case "stdout":
            return stdout.push(event.data)
          case "stderr":
            return stderr.push(event.data)
          case "exit":
            exit = toExit(event)
        }
      }).pipe(
        // The span says how the command ended whenever its exit came, as execStream's events have it say.
        Effect.ensuring(Effect.suspend(() => (exit ? Effect.annotateCurrentSpan(exitAttributes(exit)) : Effect.void))),
        Effect.map(
          (): ExecResult => ({
            exitCode: exit!.exitCode,
            signal: exit!.signal,
            timedOut: exit!.timedOut,
            stdout: stdout.text(),
            stderr: stderr.text(),
            stdoutBytes: stdout.bytes(),
            stderrBytes: stderr.bytes(),
            truncated: stdout.truncated || stderr.truncated,
            durationMs: exit!.durationMs
          })
        ),
        Effect.tap((result) => Effect.annotateCurrentSpan("exec.truncated", result.truncated)),
        Effect.withSpan("Sandbox.exec", {
          attributes: { ...running.attributes, ...commandAttributes(command, execOptions) }
        })
      )
    })
  }
