/**
 * The process routes (`/v1/processes…`): background processes and the commands of `POST /v1/exec` by
 * id — start, list, signal, wait, follow their output, feed their stdin.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import { ConnectionLostError, type OperationError, StdinError } from "../../SandboxError.js"
import { failFromResponse, processCall } from "./errors.js"
import { commandOf } from "./exec.js"
import { unpackEvents } from "./ndjson.js"
import { boundAnswer, call, json, ndjson, send, type Transport } from "./transport.js"

/** A spawn's request: an exec's, with the process's tag and output buffer. */
export type SpawnRequest = Protocol.ExecRequest & {
  readonly tag?: string | undefined
  readonly buffer_bytes?: number | undefined
}

const processPath = (id: string, route = "") => `/v1/processes/${encodeURIComponent(id)}${route}`

export const spawn = (
  transport: Transport,
  request: SpawnRequest
): Effect.Effect<Protocol.ProcessInfoBody, OperationError> =>
  send(
    transport,
    "spawn",
    HttpClientRequest.post("/v1/processes").pipe(HttpClientRequest.bodyUnsafeJson(request))
  ).pipe(
    Effect.flatMap((response) =>
      response.status === 200
        ? json(Protocol.ProcessInfoBody)(response).pipe(
            Effect.mapError(
              (cause) => new ConnectionLostError({ operation: "spawn", detail: "malformed answer", cause })
            )
          )
        : failFromResponse("spawn", undefined, response, commandOf(request))
    ),
    boundAnswer(transport, "spawn")
  )

export const processes = (
  transport: Transport
): Effect.Effect<ReadonlyArray<Protocol.ProcessInfoBody>, OperationError> =>
  call(
    transport,
    "processes",
    undefined,
    HttpClientRequest.get("/v1/processes"),
    json(Schema.Array(Protocol.ProcessInfoBody))
  )

/** Signals the process's group; false when it had already exited. */
export const kill = (transport: Transport, id: string, signal: string): Effect.Effect<boolean, OperationError> =>
  processCall(
    "kill",
    id,
    call(
      transport,
      "kill",
      undefined,
      HttpClientRequest.del(processPath(id)).pipe(HttpClientRequest.setUrlParams({ signal })),
      json(Protocol.KillResponse)
    )
  ).pipe(Effect.map((r) => r.killed))

/** Tells the server the client holds command `id`'s output up to these raw byte offsets. */
export const ack = (
  transport: Transport,
  id: string,
  offsets: { readonly stdout: number; readonly stderr: number }
): Effect.Effect<Protocol.AckResponse, OperationError> =>
  processCall(
    "exec",
    id,
    call(
      transport,
      "exec",
      undefined,
      HttpClientRequest.post(processPath(id, "/ack")).pipe(
        HttpClientRequest.setUrlParams({ stdout_offset: String(offsets.stdout), stderr_offset: String(offsets.stderr) })
      ),
      json(Protocol.AckResponse)
    )
  )

/** Signals the command a request with idempotency key `key` started, and spends the key. */
export const cancel = (transport: Transport, key: string, signal: string): Effect.Effect<boolean, OperationError> =>
  call(
    transport,
    "cancel",
    undefined,
    HttpClientRequest.del("/v1/processes").pipe(HttpClientRequest.setUrlParams({ idempotency_key: key, signal })),
    json(Protocol.CancelResponse)
  ).pipe(Effect.map((r) => r.killed))

// Streams and long polls go by POST: a quick tunnel's edge holds a GET's body until it ends
// (cloudflared#1449), so a followed output would show nothing until the process exits. The server
// takes the same query string on both methods (docs/protocol.md).
const waitOnce = (transport: Transport, id: string, seconds: number) =>
  processCall(
    "wait",
    id,
    call(
      transport,
      "wait",
      undefined,
      HttpClientRequest.post(processPath(id, "/wait")).pipe(
        HttpClientRequest.setUrlParams({ timeout: String(seconds) })
      ),
      json(Protocol.WaitResponse)
    )
  )

/** Waits for a process's exit: long waits are a series of bounded ones, each well inside the request timeout. */
export const wait = (
  transport: Transport,
  id: string
): Effect.Effect<typeof Protocol.WaitResponse.Type, OperationError> => {
  const waitSlice = Math.max(1, Math.floor(Duration.toSeconds(transport.timeouts.request) / 2))
  return waitOnce(transport, id, waitSlice).pipe(
    Effect.map(Option.some),
    Effect.catchIf(
      (error) => error._tag === "BadRequestError" && error.status === 408,
      () => Effect.succeed(Option.none())
    ),
    Effect.repeat({ until: Option.isSome }),
    Effect.map((exit) => (exit as Option.Some<typeof Protocol.WaitResponse.Type>).value)
  )
}

const outputEvents = unpackEvents(Protocol.OutputEventLine)<OperationError>()

/** A process's output (`…/output`, base64) with `params`, named `operation` in its errors. */
const outputOf = (
  transport: Transport,
  operation: string,
  id: string,
  params: Record<string, string>
): Stream.Stream<Protocol.OutputEventLine, OperationError> =>
  ndjson(
    transport,
    operation,
    HttpClientRequest.post(processPath(id, "/output")).pipe(
      HttpClientRequest.setUrlParams({ ...params, encoding: "base64" })
    ),
    outputEvents,
    (response) => processCall(operation, id, failFromResponse(operation, undefined, response))
  )

export const output = (transport: Transport, id: string, follow: boolean) =>
  outputOf(transport, "process.output", id, { follow: follow ? "1" : "0" })

/** Reattaches to a command (an exec's id): its output from these raw byte offsets on, then its exit. */
export const resume = (
  transport: Transport,
  id: string,
  offsets: { readonly stdout: number; readonly stderr: number }
) =>
  outputOf(transport, "exec", id, {
    follow: "1",
    stdout_offset: String(offsets.stdout),
    stderr_offset: String(offsets.stderr)
  })

/** One process table entry (an exec's or a background process's), by id. */
export const info = (transport: Transport, id: string): Effect.Effect<Protocol.ProcessInfoBody, OperationError> =>
  processCall(
    "process",
    id,
    call(transport, "process", undefined, HttpClientRequest.get(processPath(id)), json(Protocol.ProcessInfoBody))
  )

/** Writes `data` as the stdin bytes of process `id` from `offset` (`eof`: then closes it). */
export const writeStdin = (
  transport: Transport,
  id: string,
  offset: number,
  data: Uint8Array,
  eof: boolean
): Effect.Effect<Protocol.StdinResponse, OperationError> =>
  processCall(
    "process.stdin",
    id,
    call(
      transport,
      "process.stdin",
      undefined,
      HttpClientRequest.post(processPath(id, "/stdin")).pipe(
        HttpClientRequest.setUrlParams({ offset: String(offset), eof: eof ? "1" : "0" }),
        HttpClientRequest.setBody(HttpBody.uint8Array(data, "application/octet-stream"))
      ),
      json(Protocol.StdinResponse),
      // The server may hold a stdin answer up to ~20 s while the command does not read (then it answers
      // with the partial offset): the bound leaves room for that on top of a plain request's.
      Duration.sum(transport.timeouts.request, Duration.seconds(30))
    )
  ).pipe(
    Effect.catchIf(
      (error) => error._tag === "BadRequestError" && error.code === "stdin_not_piped",
      () => Effect.fail(new StdinError({ id, reason: "NotPiped" }))
    )
  )
