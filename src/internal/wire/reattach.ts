/**
 * Commands that survive a lost connection. An exec's stream is a series of attempts: the first is
 * `POST /v1/exec`; when its connection drops, the command keeps running in the sandbox and the next
 * attempt reattaches with `POST /v1/processes/{id}/output?follow=1&stdout_offset&stderr_offset`, from
 * the raw byte offsets already delivered downstream, so that no byte is lost or repeated. A connection
 * lost before the `start` event (no id yet) is retried with the same request: its idempotency key makes
 * the server reattach to the command it already started rather than run it again.
 */
import { randomBytes } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Protocol from "../../Protocol.js"
import { ConnectionLostError, type OperationError } from "../../SandboxError.js"
import type { WireClient } from "./client.js"

/** A command's events with output as raw bytes; `ping` only keeps the reattach schedule honest. */
export type CommandEvent =
  | { readonly event: "start"; readonly pid: number; readonly id: string | undefined }
  | { readonly event: "stdout" | "stderr"; readonly data: Uint8Array }
  | { readonly event: "ping" }
  | Protocol.ExitEvent

/** A fresh key for one exec: 128 random bits, in the server's alphabet. */
export const newIdempotencyKey = (): string => `hfs-${randomBytes(16).toString("hex")}`

/** How long the kill of an abandoned command, and the state query of a failed reattach, may take. */
const CLEANUP_BOUND = "5 seconds"

/**
 * Bytes per stream the server may send past what the client acknowledged: its default output buffer
 * (`buffer_bytes`), behind which it keeps what it sent. Whatever proxies and sockets hold when a
 * connection drops is then within what a resume finds, however large their buffers grow.
 */
const ACK_WINDOW = 8 * 1024 * 1024
/** Acknowledged every quarter window, so that a busy link seldom waits for an acknowledgement. */
const ACK_EVERY = ACK_WINDOW / 4

interface Ack {
  readonly id: string
  readonly stdout: number
  readonly stderr: number
}

interface State {
  id: string | undefined
  started: boolean
  exited: boolean
  unreachable: boolean
  /** The server answered the first exec request with an error: it started nothing. */
  refused: boolean
  /** Set with an error after which reattaching cannot help: the output, the record or the server is gone. */
  final: boolean
  attempts: number
  readonly offsets: { stdout: number; stderr: number }
  /** The offsets last handed to the acknowledging fiber. */
  readonly acked: { stdout: number; stderr: number }
}

/** One command's attempts: what every step of {@link run} reads and records. */
interface Run {
  readonly wire: WireClient
  readonly request: Protocol.ExecRequest
  readonly operation: string
  readonly state: State
  /** Where the acknowledging fiber runs: the run's own scope. */
  readonly scope: Scope.Scope
  /**
   * The newest offsets to acknowledge (a sliding queue of one: older ones are superseded); made, and its
   * fiber started, by the first acknowledgement (see {@link acknowledge}).
   */
  acks: Queue.Enqueue<Ack> | undefined
}

const makeRun = (wire: WireClient, request: Protocol.ExecRequest, operation: string, scope: Scope.Scope): Run => ({
  wire,
  request: { ...request, ack_window: request.ack_window ?? ACK_WINDOW },
  operation,
  scope,
  acks: undefined,
  state: {
    id: undefined,
    started: false,
    exited: false,
    unreachable: false,
    refused: false,
    final: false,
    attempts: 0,
    offsets: { stdout: 0, stderr: 0 },
    acked: { stdout: 0, stderr: 0 }
  }
})

/**
 * Hands the newest offsets to the acknowledging fiber, started in the run's scope by the first of them:
 * a command whose output stays under {@link ACK_EVERY} (nearly all) never forks it. Lost
 * acknowledgements cost nothing but a wait: a resume acknowledges its own offsets.
 */
const acknowledge = (run: Run, ack: Ack): Effect.Effect<void> =>
  Effect.suspend(() =>
    run.acks !== undefined
      ? run.acks.offer(ack)
      : Effect.flatMap(Queue.sliding<Ack>(1), (acks) => {
          run.acks = acks
          return Queue.take(acks).pipe(
            Effect.flatMap(({ id, ...offsets }) =>
              run.wire.ack(id, offsets).pipe(Effect.timeout(CLEANUP_BOUND), Effect.ignore)
            ),
            Effect.forever,
            Effect.forkIn(run.scope),
            Effect.zipRight(acks.offer(ack))
          )
        })
  )

/** Marks `error` as one after which reattaching cannot help. */
const final = (run: Run, error: ConnectionLostError) => {
  run.state.final = true
  return error
}

/**
 * Reads one event of an attempt into `state` (the command's id, the offsets delivered). A `dropped`
 * event means the bytes to resume at are gone: a final error, with the command's state as the sandbox
 * reports it (queried, bounded).
 */
const eventOf = (run: Run) => {
  const { wire, operation, state } = run
  const lostWithState = (detail: string, cause?: unknown) =>
    Effect.gen(function* () {
      const id = state.id!
      const known = yield* wire.info(id).pipe(Effect.timeout(CLEANUP_BOUND), Effect.option)
      const info = Option.getOrUndefined(known)
      const running = info?.running
      return final(
        run,
        new ConnectionLostError({
          operation,
          detail,
          cause,
          commandId: id,
          ...(running !== undefined ? { running } : {}),
          ...(running === false && info?.exit_code !== undefined ? { exitCode: info.exit_code } : {})
        })
      )
    })

  const toEvent = (
    event: Protocol.ExecEventLine | Protocol.OutputEventLine
  ): Effect.Effect<Option.Option<CommandEvent>, ConnectionLostError> => {
    switch (event.event) {
      case "start":
        if (state.started) return Effect.succeed(Option.none()) // a keyed retry starts over with it
        state.started = true
        state.id = event.id
        return Effect.succeed(Option.some({ event: "start", pid: event.pid, id: event.id }))
      case "stdout":
      case "stderr": {
        const data = Buffer.from(event.data, "base64")
        const { acked, offsets } = state
        offsets[event.event] += data.length
        const output = Option.some({ event: event.event, data })
        if (state.id === undefined || offsets[event.event] - acked[event.event] < ACK_EVERY) {
          return Effect.succeed(output)
        }
        acked.stdout = offsets.stdout
        acked.stderr = offsets.stderr
        return Effect.as(acknowledge(run, { id: state.id, ...offsets }), output)
      }
      case "exit":
        state.exited = true
        return Effect.succeed(Option.some(event))
      case "dropped":
        return Effect.flatMap(
          lostWithState(
            `the connection dropped and ${event.stdout} bytes of stdout and ${event.stderr} bytes of stderr ` +
              "fell out of the sandbox's output buffer before the client reattached"
          ),
          Effect.fail
        )
      default:
        return Effect.succeed(Option.some({ event: "ping" }))
    }
  }
  return toEvent
}

/** The command's output from the offsets delivered so far. */
const resume = (run: Run, id: string) =>
  run.wire.resume(id, { ...run.state.offsets }).pipe(
    Stream.catchTag("ProcessNotFoundError", () =>
      Stream.fail(
        final(
          run,
          new ConnectionLostError({
            operation: run.operation,
            detail:
              "the connection dropped and the sandbox no longer knows the command when the client " +
              "reattached (its record is kept SBX_EXEC_RETAIN seconds after it ends)",
            commandId: id
          })
        )
      )
    )
  )

// Before a retry: a server the provider knows to have exited will not come back.
const serverGone = (run: Run) =>
  Effect.flatMap(run.wire.serverExit, (reason) =>
    Option.isSome(reason)
      ? Effect.fail(
          final(
            run,
            run.wire.serverEnded({
              operation: run.operation,
              detail: reason.value,
              ...(run.state.id !== undefined ? { commandId: run.state.id, running: false } : {})
            })
          )
        )
      : Effect.void
  )

// An answer that is not a lost connection (the HF proxy's 503 for a job that is not running) from a
// sandbox the provider knows to have ended says only that; what the caller needs is that it ended.
const explained = (run: Run, error: OperationError): Effect.Effect<never, OperationError> => {
  const { state } = run
  // Only the first request's answer proves nothing started: a retry's may follow a lost first one.
  const answered = error._tag !== "ConnectionLostError" && error._tag !== "RequestTimeoutError"
  if (state.id === undefined && state.attempts === 1 && answered) state.refused = true
  return error._tag === "ConnectionLostError" || state.id === undefined || state.exited
    ? Effect.fail(error)
    : Effect.flatMap(run.wire.serverExit, (reason) =>
        Effect.fail(
          Option.isSome(reason)
            ? final(
                run,
                run.wire.serverEnded({
                  operation: run.operation,
                  detail: reason.value,
                  cause: error,
                  commandId: state.id!,
                  running: false
                })
              )
            : error
        )
      )
}

/**
 * How an attempt ends, however it was read (as a stream, or by {@link collect} in its own fiber): its
 * failure, if any, explained (see `explained`; the events' own failures are lost connections, which it
 * leaves be); an answer that ends without the command's exit status lost its connection: it never counts
 * as success.
 */
const settle = (run: Run, failure?: OperationError): Effect.Effect<void, OperationError> =>
  failure !== undefined
    ? explained(run, failure)
    : Effect.suspend(() =>
        run.state.exited
          ? Effect.void
          : Effect.fail(
              new ConnectionLostError({
                operation: run.operation,
                detail: "the output stream ended before the command's exit status arrived"
              })
            )
      )

/** One attempt: the exec itself, or a reattach once the command's id is known. */
const attempt = (run: Run): Stream.Stream<CommandEvent, OperationError> => {
  const toEvent = eventOf(run)
  return Stream.suspend(() => {
    const { state } = run
    const retry = state.attempts++ > 0
    type Line = Protocol.ExecEventLine | Protocol.OutputEventLine
    const sent: Stream.Stream<Line, OperationError> =
      state.id !== undefined ? resume(run, state.id) : run.wire.exec(run.request)
    const source: Stream.Stream<Line, OperationError> = retry
      ? Stream.concat(Stream.execute(serverGone(run)), sent)
      : sent
    return Stream.concat(
      source.pipe(
        Stream.mapEffect(toEvent),
        Stream.filterMap((event) => event),
        Stream.catchAll((error) => Stream.execute(settle(run, error)))
      ),
      Stream.execute(settle(run))
    )
  })
}

// A start without an id comes from a server that cannot reattach: the old behaviour (fail) holds.
const retryable = ({ state }: Run, error: OperationError) =>
  error._tag === "ConnectionLostError" && !state.final && (state.id !== undefined || !state.started)

const gaveUp = (run: Run, error: OperationError): OperationError => {
  const { operation, state } = run
  if (error._tag !== "ConnectionLostError" || !retryable(run, error)) return error
  const detail = `${error.detail}; reattaching failed until the reattach schedule ran out`
  state.unreachable = true
  if (state.id === undefined) {
    return new ConnectionLostError({
      operation,
      detail: `${detail} (the command may have started before its start event was lost)`,
      cause: error
    })
  }
  return final(run, new ConnectionLostError({ operation, detail, cause: error, commandId: state.id, running: true }))
}

// Unreachable for the whole schedule: a kill would not get through either, and the server's own
// reattach grace ends the command. Without an id (interrupted or cut off before the start event)
// the command may be running or its request still on its way: cancelling by key covers both.
// Built only when needed: nearly every command has exited.
const abandon = ({ wire, request, state }: Run) => {
  if (state.exited || state.unreachable || state.refused) return Effect.void
  const key = request.idempotency_key
  return (
    state.id !== undefined ? wire.kill(state.id, "KILL") : key === undefined ? Effect.void : wire.cancel(key, "KILL")
  ).pipe(Effect.interruptible, Effect.timeout(CLEANUP_BOUND), Effect.ignore)
}

/**
 * Runs `request` (which carries its `idempotency_key`) and reattaches on `schedule` whenever the
 * connection is lost. Fails with `ConnectionLostError` carrying the command's id and last known state
 * when the output fell out of the server's buffer, the record is gone, or the schedule runs out. A
 * stream that ends early (interrupted, failed, or not read to the end) kills the command it leaves
 * behind, bounded and best effort: a dropped connection no longer does that on the server's side.
 */
export const run = (
  wire: WireClient,
  request: Protocol.ExecRequest,
  operation: string,
  schedule: Schedule.Schedule<unknown>
): Stream.Stream<CommandEvent, OperationError> =>
  Stream.unwrapScoped(
    Effect.map(Effect.scope, (scope) => {
      const run = makeRun(wire, request, operation, scope)
      return attempts(run, schedule).pipe(Stream.ensuring(Effect.suspend(() => abandon(run))))
    })
  )

/**
 * The attempts of a command, retried on `schedule` while reattaching can help. With `failed`, the first
 * attempt was already made (by {@link collect}) and failed so: the schedule takes it as its first failure.
 */
const attempts = (
  run: Run,
  schedule: Schedule.Schedule<unknown>,
  failed?: OperationError
): Stream.Stream<CommandEvent, OperationError> => {
  let pending = failed
  const next = attempt(run)
  return Stream.suspend(() => {
    const error = pending
    pending = undefined
    return error === undefined ? next : Stream.fail(error)
  }).pipe(
    Stream.retry(
      Schedule.intersect(
        schedule,
        Schedule.recurWhile((error: OperationError) => retryable(run, error))
      )
    ),
    Stream.mapError((error) => gaveUp(run, error)),
    Stream.filter((event) => event.event !== "ping")
  )
}

/**
 * {@link run} for a caller that collects the command (`exec`): its events (pings left out) handed to
 * `onEvent` as they come. The first attempt is read by the calling fiber (`WireClient.execEach`), with
 * none of a stream's machinery, which costs several times the exchange itself for a short command;
 * should it fail, the attempts go on exactly as {@link run}'s would, from where it stopped.
 */
export const collect = (
  wire: WireClient,
  request: Protocol.ExecRequest,
  operation: string,
  schedule: Schedule.Schedule<unknown>,
  onEvent: (event: CommandEvent) => void
): Effect.Effect<void, OperationError> =>
  Effect.scoped(
    Effect.flatMap(Effect.scope, (scope) => {
      const run = makeRun(wire, request, operation, scope)
      const toEvent = eventOf(run)
      const take = (line: Protocol.ExecEventLine) =>
        Effect.map(toEvent(line), (event) => {
          if (Option.isSome(event) && event.value.event !== "ping") onEvent(event.value)
        })
      run.state.attempts++
      return Effect.matchEffect(
        wire.execEach(run.request, (lines) => Effect.forEach(lines, take, { discard: true })),
        { onFailure: (error) => settle(run, error), onSuccess: () => settle(run) }
      ).pipe(
        // An error no reattach can help with (a refusal, say) is the command's at once.
        Effect.catchAll((error) =>
          retryable(run, error)
            ? Stream.runForEach(attempts(run, schedule, error), (event) => Effect.sync(() => onEvent(event)))
            : Effect.fail(error)
        ),
        Effect.ensuring(Effect.suspend(() => abandon(run)))
      )
    })
  )

/**
 * Starts a background process with `request` (which carries its `idempotency_key`): a request whose
 * answer was lost is sent again on `schedule` (the key makes the server answer with the process it
 * already started), unless the provider knows the server exited. Interrupted, or out of retries, it
 * cancels by key whatever the request may have started, bounded and best effort.
 */
export const spawn = (
  wire: WireClient,
  request: Parameters<WireClient["spawn"]>[0] & { readonly idempotency_key: string },
  schedule: Schedule.Schedule<unknown>
): Effect.Effect<Protocol.ProcessInfoBody, OperationError> =>
  Effect.suspend(() => {
    let retry = false
    let exited = false
    const lost = (error: OperationError) =>
      !exited && (error._tag === "ConnectionLostError" || error._tag === "RequestTimeoutError")
    const serverGone = Effect.flatMap(wire.serverExit, (reason) => {
      if (Option.isNone(reason)) return Effect.void
      exited = true
      return Effect.fail(wire.serverEnded({ operation: "spawn", detail: reason.value }))
    })
    const attempt = Effect.suspend(() => {
      const sent = retry ? Effect.zipRight(serverGone, wire.spawn(request)) : wire.spawn(request)
      retry = true
      return sent
    })
    const cancel = wire
      .cancel(request.idempotency_key, "KILL")
      .pipe(Effect.interruptible, Effect.timeout(CLEANUP_BOUND), Effect.ignore)
    return attempt.pipe(
      Effect.retry({ schedule, while: lost }),
      Effect.tapError((error) => (lost(error) ? cancel : Effect.void)),
      Effect.onInterrupt(() => cancel)
    )
  })
