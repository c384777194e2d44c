/**
 * Background processes: `spawn`, `processes`, `process`, and the handle on one process (`wait`,
 * `stdin`, `kill`, `output`).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Protocol from "../../Protocol.js"
import type { ExecEvent, Process, ProcessInfo, Sandbox, SpawnOptions } from "../../Sandbox.js"
import { type OperationError, ProcessNotFoundError } from "../../SandboxError.js"
import * as Validate from "../validate.js"
import * as Reattach from "../wire/reattach.js"
import * as Stdin from "../wire/stdin.js"
import { commandAttributes, exitAttributes } from "./attributes.js"
import { execRequest, outputEvent, toExit } from "./exec.js"
import { guard, guardStream, type Running } from "./running.js"
import { waitForOutput } from "./waitForOutput.js"

const encoder = new TextEncoder()

/**
 * `writer`: the stdin writer of a process this client started (it knows the offset); a handle found by
 * id asks the server. `stdinFailed`: the failure of the Stream feeding its stdin, which `wait` reports.
 */
const processHandle = <E = never>(
  running: Running,
  info: Protocol.ProcessInfoBody,
  writer: Stdin.Writer = Stdin.makeWriter(running.wire, info.id, running.schedules.stdinRetry),
  stdinFailed?: Deferred.Deferred<void, OperationError | E>
): Process<E> => {
  const output = outputOf(running, info.id)
  return handle(running, info, writer, output, stdinFailed)
}

/** The output stream of process `id`: what the sandbox holds, then (with `follow`) live output. */
const outputOf =
  (running: Running, id: string): Process["output"] =>
  (outputOptions = {}) =>
    guardStream(
      running,
      "process.output",
      running.wire.output(id, outputOptions.follow ?? false).pipe(
        Stream.filterMap((event): Option.Option<ExecEvent> => {
          switch (event.event) {
            case "stdout":
            case "stderr":
              return Option.some(outputEvent(event.event, Buffer.from(event.data, "base64")))
            case "exit":
              return Option.some({ _tag: "Exit", ...toExit(event) })
            default:
              return Option.none()
          }
        })
      ),
      { "process.id": id, "process.follow": outputOptions.follow ?? false }
    )

const handle = <E>(
  running: Running,
  info: Protocol.ProcessInfoBody,
  writer: Stdin.Writer,
  output: Process["output"],
  stdinFailed: Deferred.Deferred<void, OperationError | E> | undefined
): Process<E> => ({
  id: info.id,
  pid: info.pid,
  wait: guard(
    running,
    "process.wait",
    Effect.map(running.wire.wait(info.id), toExit).pipe(
      Effect.tap(() =>
        stdinFailed === undefined
          ? Effect.void
          : Effect.flatMap(Deferred.poll(stdinFailed), (done) => (Option.isSome(done) ? done.value : Effect.void))
      ),
      Effect.tap((exit) => Effect.annotateCurrentSpan(exitAttributes(exit)))
    ),
    { "process.id": info.id }
  ),
  stdin: {
    write: (data) =>
      guard(running, "process.stdin.write", writer.write(typeof data === "string" ? encoder.encode(data) : data), {
        "process.id": info.id
      }),
    close: () => guard(running, "process.stdin.close", writer.close, { "process.id": info.id })
  },
  kill: (signal = "SIGKILL") =>
    guard(
      running,
      "process.kill",
      running.wire.kill(info.id, typeof signal === "number" ? String(signal) : signal.slice(3)),
      {
        "process.id": info.id,
        "process.signal": String(signal)
      }
    ),
  output,
  waitForOutput: waitForOutput(info.id, output)
})

export const spawn =
  (running: Running): Sandbox["spawn"] =>
  <E>(command: string | ReadonlyArray<string>, spawnOptions: SpawnOptions<E> = {}) => {
    const { tag, bufferBytes, stdin: input, ...rest } = spawnOptions
    return guard(
      running,
      "spawn",
      Effect.gen(function* () {
        const stdin = Stdin.plan(input === "pipe" ? undefined : input)
        const piped = input === "pipe" || stdin.source !== undefined
        const request = yield* execRequest(running.cwd, "spawn", command, rest, stdin)
        if (bufferBytes !== undefined) {
          yield* Validate.check("spawn", () => Validate.bufferBytes("bufferBytes", bufferBytes))
        }
        const info = yield* Reattach.spawn(
          running.wire,
          {
            ...request,
            idempotency_key: request.idempotency_key ?? Reattach.newIdempotencyKey(),
            ...(piped ? { stdin_pipe: true } : {}),
            ...(tag !== undefined ? { tag } : {}),
            ...(bufferBytes !== undefined ? { buffer_bytes: bufferBytes } : {})
          },
          running.schedules.reattach
        )
        yield* Effect.annotateCurrentSpan("process.id", info.id)
        const writer = Stdin.makeWriter(running.wire, info.id, running.schedules.stdinRetry, piped ? 0 : undefined)
        if (stdin.source === undefined) return processHandle<E>(running, info, writer)
        // The feed outlives this call (at most the sandbox): `wait` reports its failure.
        const failed = yield* Deferred.make<void, OperationError | E>()
        yield* writer.feed(stdin.source).pipe(
          Effect.catchAll((error) =>
            Deferred.fail(failed, error).pipe(Effect.zipRight(running.wire.kill(info.id, "KILL")), Effect.ignore)
          ),
          Effect.forkIn(running.scope)
        )
        return processHandle<E>(running, info, writer, failed)
      }),
      commandAttributes(command, rest)
    )
  }

export const processes = (running: Running): Sandbox["processes"] =>
  guard(
    running,
    "processes",
    Effect.map(running.wire.processes, (list) =>
      list.map(
        (p): ProcessInfo => ({
          id: p.id,
          pid: p.pid,
          tag: p.tag ?? undefined,
          startedAtMs: p.started_at_ms,
          running: p.running ?? true,
          exitCode: p.exit_code ?? null,
          signal: p.signal ?? null
        })
      )
    )
  )

export const process =
  (running: Running): Sandbox["process"] =>
  (idOrPid) =>
    guard(
      running,
      "process",
      Effect.flatMap(running.wire.processes, (list) => {
        const found = list.find((p) => (typeof idOrPid === "number" ? p.pid === idOrPid : p.id === idOrPid))
        return found === undefined
          ? Effect.fail(new ProcessNotFoundError({ id: String(idOrPid), operation: "process" }))
          : Effect.succeed(processHandle(running, found))
      }),
      { "process.id": String(idOrPid) }
    )
