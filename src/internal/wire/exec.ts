/**
 * `POST /v1/exec`: a command run to its end, its events streamed back as NDJSON.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as Chunk from "effect/Chunk"
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import type { OperationError } from "../../SandboxError.js"
import { failFromResponse } from "./errors.js"
import { eventDecoder, type OutputLine, splitLines, unpackEvents } from "./ndjson.js"
import { ndjson, ndjsonEach, type Transport } from "./transport.js"

const execEvents = unpackEvents(Protocol.ExecEventLine)<OperationError>()
const execLine = eventDecoder(Protocol.ExecEventLine)

/** The program a request runs, as a "command not found" names it. */
export const commandOf = (request: Protocol.ExecRequest): string =>
  typeof request.cmd === "string" ? request.cmd : (request.cmd[0] ?? "")

const post = (request: Protocol.ExecRequest) =>
  HttpClientRequest.post("/v1/exec").pipe(HttpClientRequest.bodyUnsafeJson(request))
const refused = (request: Protocol.ExecRequest) => (response: HttpClientResponse.HttpClientResponse) =>
  failFromResponse("exec", undefined, response, commandOf(request))

export const exec = (
  transport: Transport,
  request: Protocol.ExecRequest
): Stream.Stream<Protocol.ExecEventLine, OperationError> =>
  ndjson(transport, "exec", post(request), execEvents, refused(request))

/** {@link exec}'s events handed to `onEvents` as they are read, rather than streamed (see `ndjsonEach`). */
export const execEach = <E>(
  transport: Transport,
  request: Protocol.ExecRequest,
  onEvents: (events: Chunk.Chunk<Protocol.ExecEventLine | OutputLine>) => Effect.Effect<void, E>
): Effect.Effect<void, OperationError | E> =>
  ndjsonEach(transport, "exec", post(request), splitLines(execLine()), refused(request), onEvents)
