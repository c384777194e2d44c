/**
 * `POST /v1/exec`: a command run to its end, its events streamed back as NDJSON.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import type { OperationError } from "../../SandboxError.js"
import { failFromResponse } from "./errors.js"
import { unpackEvents } from "./ndjson.js"
import { ndjson, type Transport } from "./transport.js"

const execEvents = unpackEvents(Protocol.ExecEventLine)<OperationError>()

/** The program a request runs, as a "command not found" names it. */
export const commandOf = (request: Protocol.ExecRequest): string =>
  typeof request.cmd === "string" ? request.cmd : (request.cmd[0] ?? "")

export const exec = (
  transport: Transport,
  request: Protocol.ExecRequest
): Stream.Stream<Protocol.ExecEventLine, OperationError> =>
  ndjson(
    transport,
    "exec",
    HttpClientRequest.post("/v1/exec").pipe(HttpClientRequest.bodyUnsafeJson(request)),
    execEvents,
    (response) => failFromResponse("exec", undefined, response, commandOf(request))
  )
