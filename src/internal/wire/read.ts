/**
 * `GET /v1/files/read`: a file, or a range of it, opened for reading — through the HttpClient, or over a
 * bare socket straight into its destination (see directRead.ts).
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import { ConnectionLostError, type OperationError } from "../../SandboxError.js"
import * as DirectRead from "./directRead.js"
import { cutShort, failFromAnswer, failFromResponse } from "./errors.js"
import { boundAnswer, lostTransport, pathParams, send, type Transport } from "./transport.js"

/**
 * An answered file read: the file's size when it was opened, and the requested bytes, to be taken once,
 * either as a stream or into memory.
 */
export interface OpenRead {
  readonly fileSize: number
  /** The file's permission bits. */
  readonly mode: number | undefined
  /** Bytes the body carries. */
  readonly length: number
  readonly body: Stream.Stream<Uint8Array, OperationError>
  /**
   * Takes the body into `destination` (`length` bytes), calling `onBytes` as bytes land. Fails when the
   * body is cut short: the file changed during the read.
   */
  readonly into: (destination: Uint8Array, onBytes: (n: number) => void) => Effect.Effect<void, OperationError>
}

/** The part of a file a read asks for: `[offset, offset + length)`, the whole file by default. */
export interface Range {
  readonly offset?: number | undefined
  readonly length?: number | undefined
}

/** Opens a read of `range` of the file at `path`. */
export type Open = (path: string, range?: Range) => Effect.Effect<OpenRead, OperationError, Scope.Scope>

/** A direct read's body is streamed in parts of this size, each received in place. */
const DIRECT_PART = 1024 * 1024

/** The facts a read answer announces in its headers; without them, a ranged reader cannot go on. */
const readFacts = (operation: string, headers: Readonly<Record<string, string | undefined>>) => {
  const length = Number(headers["content-length"])
  const fileSize = Number(headers[Protocol.FILE_SIZE_HEADER])
  if (!Number.isSafeInteger(length) || !Number.isSafeInteger(fileSize)) {
    return Effect.fail(
      new ConnectionLostError({ operation, detail: "the answer to a read did not announce its length" })
    )
  }
  const mode = Number.parseInt(headers[Protocol.FILE_MODE_HEADER] ?? "", 8)
  return Effect.succeed({ fileSize, length, mode: Number.isNaN(mode) ? undefined : mode })
}

/** `openRead` through the HttpClient. */
const openViaHttpClient =
  (transport: Transport): Open =>
  (path, range = {}) => {
    const operation = "files.read"
    // Reads stay GET (HF's form) although a quick tunnel's edge holds a GET's body until it ends: a
    // read's answer has a Content-Length and ends as soon as its bytes are sent, so holding it costs one
    // range's transfer time, which parallel ranges overlap, and never a stall. POST is for answers that
    // end only when something happens in the sandbox (see `output` and `wait`).
    const request = HttpClientRequest.get("/v1/files/read").pipe(
      pathParams(path, { offset: range.offset?.toString(), length: range.length?.toString() })
    )
    return send(transport, operation, request).pipe(
      Effect.flatMap((response) =>
        response.status === 200 ? Effect.succeed(response) : failFromResponse(operation, path, response)
      ),
      boundAnswer(transport, operation),
      Effect.flatMap((response) =>
        Effect.map(readFacts(operation, response.headers), (facts): OpenRead => {
          let received = 0
          const complete = Effect.suspend(() =>
            received === facts.length ? Effect.void : Effect.fail(cutShort(operation, path, received, facts.length))
          )
          const body = response.stream.pipe(
            Stream.catchAll((e) => Stream.fromEffect(lostTransport(transport, operation)(e))),
            Stream.mapChunks((chunks) => {
              for (const chunk of chunks) received += chunk.length
              return chunks
            }),
            Stream.concat(Stream.execute(complete))
          )
          const into: OpenRead["into"] = (destination, onBytes) => {
            let offset = 0
            return Stream.runForEachChunk(body, (chunks) =>
              Effect.sync(() => {
                for (const chunk of chunks) {
                  destination.set(chunk, offset)
                  offset += chunk.length
                  onBytes(chunk.length)
                }
              })
            )
          }
          return { ...facts, body, into }
        })
      )
    )
  }

/** `openRead` over a bare socket: the body lands where it goes with no copy (see directRead.ts). */
const openDirect =
  (transport: Transport): Open =>
  (path, range = {}) => {
    const operation = "files.read"
    const lost = (error: DirectRead.ExchangeError) => new ConnectionLostError({ operation, detail: error.detail })
    return Effect.gen(function* () {
      const url = new URL(yield* transport.currentBase)
      const headers = yield* transport.headers
      const query = new URLSearchParams({ path })
      if (range.offset !== undefined) query.set("offset", String(range.offset))
      if (range.length !== undefined) query.set("length", String(range.length))
      const target = `${url.pathname.replace(/\/+$/, "")}${transport.route("/v1/files/read")}?${query}`
      const exchange = yield* Effect.acquireRelease(
        Effect.sync(() => DirectRead.open(url, target, headers)),
        (exchange) => Effect.sync(exchange.close)
      )
      const head = yield* Effect.async<DirectRead.Head, ConnectionLostError>((resume) => {
        exchange.head((result) =>
          resume(result instanceof DirectRead.ExchangeError ? Effect.fail(lost(result)) : Effect.succeed(result))
        )
        return Effect.sync(exchange.close)
      }).pipe(Effect.catchAll(transport.explainLost), boundAnswer(transport, operation))
      if (head.status !== 200) {
        const json = Effect.async<unknown>((resume) => {
          DirectRead.errorBody(exchange, head, (body) => resume(Effect.succeed(body)))
          return Effect.sync(exchange.close)
        })
        return yield* failFromAnswer(operation, path, head.status, json)
      }
      const facts = yield* readFacts(operation, head.headers)
      let received = 0
      /** Fills `part` with the body's next bytes. */
      const receive = (part: Uint8Array, onBytes: (n: number) => void) =>
        Effect.async<void, ConnectionLostError>((resume) => {
          exchange.receive(
            part,
            (n) => {
              received += n
              onBytes(n)
            },
            (error) =>
              resume(
                error === undefined
                  ? Effect.void
                  : Effect.fail(error.endedEarly ? cutShort(operation, path, received, facts.length) : lost(error))
              )
          )
          return Effect.sync(exchange.close)
        })
      const body = Stream.repeatEffectOption(
        Effect.suspend(() => {
          if (received >= facts.length) return Effect.fail(Option.none())
          const part = new Uint8Array(Math.min(DIRECT_PART, facts.length - received))
          return receive(part, () => {}).pipe(Effect.as(part), Effect.mapError(Option.some))
        })
      )
      return { ...facts, body, into: (destination, onBytes) => receive(destination, onBytes) } satisfies OpenRead
    })
  }

/**
 * Opens reads over a bare socket when the target allows it (`directReads`, `http:` only), else through
 * the HttpClient.
 */
export const openRead = (transport: Transport): Open =>
  transport.target.directReads === true && new URL(transport.base).protocol === "http:"
    ? openDirect(transport)
    : openViaHttpClient(transport)
