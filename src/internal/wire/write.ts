/**
 * `PUT /v1/files/write` and the transfer routes around it (`commit`, `abort`): a file written whole, or
 * in ranges into a transfer's temp file that is renamed into place once all of it has arrived.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import { type OperationError, RequestTimeoutError } from "../../SandboxError.js"
import { silenceBound } from "./silence.js"
import { call, json, pathParams, type Transport } from "./transport.js"

/** How a body is written: see {@link write}. */
export interface WriteOptions {
  readonly mode?: string | undefined
  readonly offset?: number | undefined
  readonly truncateTo?: number | undefined
  readonly transfer?: string | undefined
  readonly inPlace?: boolean | undefined
}

type WriteResponse = typeof Protocol.WriteResponse.Type

/**
 * Writes a body. With `transfer`, it is one range (at `offset`) of that transfer, written to the
 * transfer's temp file until {@link commit}; without, it replaces the file at once (temp file, then
 * rename), or writes the file itself with `inPlace`. `truncateTo` then sets the size.
 */
export const write = (
  transport: Transport,
  path: string,
  data: Uint8Array | HttpBody.HttpBody,
  options: WriteOptions = {}
): Effect.Effect<WriteResponse, OperationError> => {
  const operation = "files.write"
  const request = (body: HttpBody.HttpBody) =>
    HttpClientRequest.put("/v1/files/write").pipe(
      pathParams(path, {
        mode: options.mode,
        offset: options.offset?.toString(),
        truncate_to: options.truncateTo?.toString(),
        transfer: options.transfer,
        in_place: options.inPlace ? "1" : undefined
      }),
      HttpClientRequest.setBody(body)
    )
  if (data instanceof Uint8Array) {
    return call(
      transport,
      operation,
      path,
      request(HttpBody.uint8Array(data, "application/octet-stream")),
      json(Protocol.WriteResponse)
    )
  }
  if (data._tag !== "Stream") return call(transport, operation, path, request(data), json(Protocol.WriteResponse))
  // A streamed body may be produced slowly, so the bound is silence, not the request timeout: it fails
  // when no chunk has gone out (and then no answer has come) for `streamIdle`.
  const { streamIdle } = transport.timeouts
  return Effect.suspend(() => {
    let sent = 0
    const body = HttpBody.stream(
      data.stream.pipe(
        Stream.mapChunks((chunks) => {
          sent += 1
          return chunks
        })
      ),
      data.contentType,
      data.contentLength
    )
    const stalled = silenceBound(
      () => sent,
      streamIdle,
      () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(streamIdle) })
    )
    return Effect.raceFirst(
      call(transport, operation, path, request(body), json(Protocol.WriteResponse), Duration.infinity),
      stalled
    )
  })
}

/** Renames a transfer's temp file (of `size` bytes) over `path`; `mode` as for {@link write}. */
export const commit = (
  transport: Transport,
  path: string,
  transfer: string,
  options: { readonly size: number; readonly mode?: string | undefined }
): Effect.Effect<WriteResponse, OperationError> =>
  call(
    transport,
    "files.write",
    path,
    HttpClientRequest.post("/v1/files/commit").pipe(
      pathParams(path, { transfer, size: options.size.toString(), mode: options.mode })
    ),
    json(Protocol.WriteResponse)
  )

/** Removes a transfer's temp file; the server refuses the transfer's later ranges. */
export const abort = (transport: Transport, path: string, transfer: string): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.write",
    path,
    HttpClientRequest.post("/v1/files/abort").pipe(pathParams(path, { transfer })),
    (response) => response.json
  ).pipe(Effect.asVoid)
