/**
 * The HTTP side of the wire protocol: one request builder and one error mapping for every route.
 * Providers hand the `Sandbox` module an endpoint; this turns it into typed calls.
 */

import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Protocol from "../Protocol.js"
import {
  AuthError,
  BadRequestError,
  CommandNotFoundError,
  ConnectionLostError,
  FileExistsError,
  FileNotFoundError,
  IsDirectoryError,
  type OperationError,
  ProcessNotFoundError,
  RequestTimeoutError,
  ResourceLimitError,
  ServerError,
  StdinError
} from "../SandboxError.js"
import * as DirectRead from "./directRead.js"

/** Where the server is and how to authenticate, as a provider describes it. */
export interface Target {
  readonly baseUrl: string
  /** The base URL as of now, read before every request; without it, `baseUrl` is used for all of them. */
  readonly currentBaseUrl?: Effect.Effect<string> | undefined
  readonly token: Redacted.Redacted<string>
  /** Extra headers resolved per request (a proxy's bearer may rotate). */
  readonly headers?: Effect.Effect<Record<string, string>> | undefined
  /** Adapts the HttpClient for this target. */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  /** File reads go over a bare socket, straight into their destination (`http:` only; see directRead.ts). */
  readonly directReads?: boolean | undefined
  /** Why the server ended, when the provider knows (see `Endpoint.exitReason`): it replaces a socket error. */
  readonly exitReason?: Effect.Effect<Option.Option<string>> | undefined
}

/** Client-side bounds. A command's own timeout is the server's business; these bound the transport. */
export interface Timeouts {
  /** A plain request/response exchange. */
  readonly request: Duration.Duration
  /** How long a stream may stay silent; the server pings every 15 s, so this sits well above that. */
  readonly streamIdle: Duration.Duration
}

export const defaultTimeouts: Timeouts = {
  request: Duration.seconds(60),
  streamIdle: Duration.seconds(70)
}

const decodeErrorBody = Schema.decodeUnknownOption(Protocol.ErrorBody)

/** The codes of the server's 503s for a bound it is at (see docs/protocol.md, "Limits"). */
const LIMIT_CODES: ReadonlySet<string> = new Set(["too_many_processes", "too_many_connections"])

/** Turns a non-2xx answer (its status and its JSON body, if any) into the error a user can act on. */
const failFromAnswer = (
  operation: string,
  path: string | undefined,
  status: number,
  json: Effect.Effect<unknown, unknown>,
  command?: string
): Effect.Effect<never, OperationError> =>
  json.pipe(
    Effect.map(decodeErrorBody),
    Effect.orElseSucceed(() => Option.none<Protocol.ErrorBody>()),
    Effect.flatMap((body): Effect.Effect<never, OperationError> => {
      const detail = Option.match(body, { onNone: () => `HTTP ${status}`, onSome: (b) => b.error })
      const code = Option.getOrUndefined(Option.flatMapNullable(body, (b) => b.code))
      if (status === 401 || status === 403) return Effect.fail(new AuthError({ operation, status }))
      if (status === 404 && path !== undefined && !detail.startsWith("no route")) {
        return Effect.fail(new FileNotFoundError({ path, operation }))
      }
      if (status === 409 && path !== undefined && (code === "is_a_directory" || code === "not_empty")) {
        return Effect.fail(new IsDirectoryError({ path, operation, detail }))
      }
      if (status === 409 && path !== undefined && code === "already_exists" && operation === "files.symlink") {
        return Effect.fail(new FileExistsError({ path, operation, detail }))
      }
      if (command !== undefined && (code === "command_not_found" || code === "permission_denied")) {
        return Effect.fail(new CommandNotFoundError({ command, detail }))
      }
      if (status === 503 && code !== undefined && LIMIT_CODES.has(code)) {
        return Effect.fail(new ResourceLimitError({ operation, code, detail }))
      }
      if (status >= 500) {
        // Our server explains its own failures; anything else (a proxy's 502, a dead tunnel) is transport.
        return Effect.fail(
          Option.isSome(body)
            ? new ServerError({ operation, status, code, detail })
            : new ConnectionLostError({ operation, detail: `HTTP ${status}` })
        )
      }
      return Effect.fail(new BadRequestError({ operation, status, code, detail }))
    })
  )

const failFromResponse = (
  operation: string,
  path: string | undefined,
  response: HttpClientResponse.HttpClientResponse,
  command?: string
) => failFromAnswer(operation, path, response.status, response.json, command)

const fromTransport = (operation: string) => (error: HttpClientError.HttpClientError) =>
  new ConnectionLostError({ operation, detail: error.message, cause: error })

/**
 * Fails with `onSilence` once `progress()` has not moved for `idle`; never succeeds. Raced against a
 * transfer, it bounds silence at no cost per chunk (a per-chunk timeout costs a fiber per pull).
 */
export const silenceBound = <E>(
  progress: () => number,
  idle: Duration.Duration,
  onSilence: () => E
): Effect.Effect<never, E> => {
  let seen = -1
  return Effect.suspend(() => {
    const now = progress()
    if (now === seen) return Effect.fail(onSilence())
    seen = now
    return Effect.void
  }).pipe(Effect.repeat(Schedule.spaced(idle)), Effect.zipRight(Effect.never))
}

/**
 * Splits NDJSON bytes into lines, each decoded once by `decode`. Lines are found in the bytes (a newline
 * byte never occurs inside a UTF-8 sequence), so a line split across reads is joined as bytes, not as
 * strings.
 */
const splitLines = <A>(decode: (line: Uint8Array) => Option.Option<A>) => {
  let partial: Array<Uint8Array> = []
  return (chunks: Chunk.Chunk<Uint8Array>): Chunk.Chunk<A> => {
    const decoded: Array<A> = []
    const take = (line: Uint8Array) => {
      const event = decode(line)
      if (Option.isSome(event)) decoded.push(event.value)
    }
    for (const chunk of chunks) {
      let start = 0
      let end = chunk.indexOf(10)
      while (end !== -1) {
        const piece = chunk.subarray(start, end)
        if (partial.length === 0) take(piece)
        else {
          partial.push(piece)
          take(Buffer.concat(partial))
          partial = []
        }
        start = end + 1
        end = chunk.indexOf(10, start)
      }
      if (start < chunk.length) partial.push(chunk.subarray(start))
    }
    return Chunk.unsafeFromArray(decoded)
  }
}

type OutputLine = typeof Protocol.StdoutEvent.Type | typeof Protocol.StderrEvent.Type

const OUTPUT_PREFIX = {
  stdout: Buffer.from('{"event":"stdout","data":"'),
  stderr: Buffer.from('{"event":"stderr","data":"')
}
const OUTPUT_PREFIX_LENGTH = OUTPUT_PREFIX.stdout.length

/**
 * The output event of a base64 stream, read straight from its bytes: the server writes these lines in
 * exactly this form, and they are nearly all of a large output. Parsing them as JSON costs more than
 * everything else a stream does (a 32 KiB chunk is a 43 KiB string). Anything else is `undefined`.
 */
export const base64OutputLine = (line: Uint8Array): OutputLine | undefined => {
  const end = line.length - 2 // the closing `"}`
  if (end < OUTPUT_PREFIX_LENGTH || line[end] !== 0x22 || line[end + 1] !== 0x7d) return undefined
  const bytes = Buffer.from(line.buffer, line.byteOffset, line.length)
  const event =
    bytes.compare(OUTPUT_PREFIX.stdout, 0, OUTPUT_PREFIX_LENGTH, 0, OUTPUT_PREFIX_LENGTH) === 0
      ? "stdout"
      : bytes.compare(OUTPUT_PREFIX.stderr, 0, OUTPUT_PREFIX_LENGTH, 0, OUTPUT_PREFIX_LENGTH) === 0
        ? "stderr"
        : undefined
  // A quote or backslash inside would be JSON escaping: not a plain base64 string, so parsed in full.
  if (event === undefined || bytes.indexOf(0x22, OUTPUT_PREFIX_LENGTH) !== end) return undefined
  const backslash = bytes.indexOf(0x5c, OUTPUT_PREFIX_LENGTH)
  if (backslash !== -1 && backslash < end) return undefined
  return { event, data: bytes.toString("latin1", OUTPUT_PREFIX_LENGTH, end) }
}

/** Decodes NDJSON lines of output events: base64 output read directly, every other line through `decodeLine`. */
const outputLines = <A>(decodeLine: (line: string) => Option.Option<A>) => {
  const decoder = new TextDecoder()
  return (line: Uint8Array): Option.Option<A | OutputLine> => {
    const output = base64OutputLine(line)
    return output !== undefined ? Option.some(output) : decodeLine(decoder.decode(line))
  }
}

/** The wire client of one sandbox. Every method is one protocol route. */
export interface WireClient {
  readonly timeouts: Timeouts
  readonly health: Effect.Effect<Protocol.HealthResponse, OperationError>
  readonly exec: (request: Protocol.ExecRequest) => Stream.Stream<Protocol.ExecEvent, OperationError>
  readonly spawn: (
    request: Protocol.ExecRequest & { readonly tag?: string | undefined; readonly buffer_bytes?: number | undefined }
  ) => Effect.Effect<Protocol.ProcessInfo, OperationError>
  readonly processes: Effect.Effect<ReadonlyArray<Protocol.ProcessInfo>, OperationError>
  /** Signals the process's group; false when it had already exited. */
  readonly kill: (id: string, signal: string) => Effect.Effect<boolean, OperationError>
  /**
   * Signals the command a request with idempotency key `key` started and spends the key, so that such
   * a request still on its way starts nothing; false when nothing was signalled.
   */
  readonly cancel: (key: string, signal: string) => Effect.Effect<boolean, OperationError>
  readonly wait: (id: string) => Effect.Effect<typeof Protocol.WaitResponse.Type, OperationError>
  readonly output: (id: string, follow: boolean) => Stream.Stream<Protocol.OutputEvent, OperationError>
  /**
   * Writes `data` as the stdin bytes of process `id` from `offset` (`eof`: then closes it); see
   * `POST /v1/processes/{id}/stdin`. A `stdin_gap` is a `BadRequestError` with that code; a process
   * without a pipe is `StdinError("NotPiped")`.
   */
  readonly writeStdin: (
    id: string,
    offset: number,
    data: Uint8Array,
    eof: boolean
  ) => Effect.Effect<Protocol.StdinResponse, OperationError>
  /**
   * Reattaches to a command (an exec's id): its output from these raw byte offsets on, then its exit.
   * A `dropped` event first means the bytes at those offsets are no longer buffered.
   */
  readonly resume: (
    id: string,
    offsets: { readonly stdout: number; readonly stderr: number }
  ) => Stream.Stream<Protocol.OutputEvent, OperationError>
  /** One process table entry (an exec's or a background process's), by id. */
  readonly info: (id: string) => Effect.Effect<Protocol.ProcessInfo, OperationError>
  /** Why the server ended, when the provider knows: no reattach can succeed then. */
  readonly serverExit: Effect.Effect<Option.Option<string>>
  /**
   * Opens a read of `[offset, offset + length)` of a file (the whole file by default): over a bare socket
   * when the target allows it (`directReads`), else through the HttpClient. The body fails when it
   * carries fewer bytes than announced: the file changed during the read. It has no idle bound of its
   * own: a reader adds {@link silenceBound} (it drains at once) or a per-pull timeout (it may be slow).
   */
  readonly openRead: (
    path: string,
    range?: { readonly offset?: number | undefined; readonly length?: number | undefined }
  ) => Effect.Effect<OpenRead, OperationError, Scope.Scope>
  /**
   * Writes a body. With `transfer`, it is one range (at `offset`) of that transfer, written to the
   * transfer's temp file until {@link commit}; without, it replaces the file at once (temp file, then
   * rename), or writes the file itself with `inPlace`. `truncateTo` then sets the size.
   */
  readonly write: (
    path: string,
    data: Uint8Array | HttpBody.HttpBody,
    options?: {
      readonly mode?: string | undefined
      readonly offset?: number | undefined
      readonly truncateTo?: number | undefined
      readonly transfer?: string | undefined
      readonly inPlace?: boolean | undefined
    }
  ) => Effect.Effect<typeof Protocol.WriteResponse.Type, OperationError>
  /** Renames a transfer's temp file (of `size` bytes) over `path`; `mode` as for {@link write}. */
  readonly commit: (
    path: string,
    transfer: string,
    options: { readonly size: number; readonly mode?: string | undefined }
  ) => Effect.Effect<typeof Protocol.WriteResponse.Type, OperationError>
  /** Removes a transfer's temp file; the server refuses the transfer's later ranges. */
  readonly abort: (path: string, transfer: string) => Effect.Effect<void, OperationError>
  readonly stat: (path: string) => Effect.Effect<Protocol.FileEntry, OperationError>
  readonly list: (path: string, recursive: boolean) => Effect.Effect<typeof Protocol.ListResponse.Type, OperationError>
  readonly remove: (path: string, recursive: boolean) => Effect.Effect<void, OperationError>
  readonly mkdir: (path: string) => Effect.Effect<void, OperationError>
  readonly rename: (from: string, to: string) => Effect.Effect<void, OperationError>
  readonly chmod: (path: string, mode: string) => Effect.Effect<void, OperationError>
  readonly symlink: (path: string, target: string, replace?: boolean) => Effect.Effect<void, OperationError>
}

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

const cutShort = (operation: string, path: string, received: number, length: number) =>
  new ConnectionLostError({
    operation,
    detail: `got ${received} of ${length} bytes of ${path}: the file changed during the read`
  })

const decodeEventLine = Schema.decodeUnknownOption(Schema.parseJson(Protocol.ExecEvent))

export const make = (target: Target, timeouts: Timeouts = defaultTimeouts) =>
  Effect.map(HttpClient.HttpClient, (http): WireClient => {
    const trim = (url: string) => url.replace(/\/+$/, "")
    const base = trim(target.baseUrl)
    // A moving target (a restarted tunnel) is read per request; a fixed one costs nothing more.
    const currentBase = target.currentBaseUrl === undefined ? undefined : Effect.map(target.currentBaseUrl, trim)
    const tokenHeader = { [Protocol.TOKEN_HEADER]: Redacted.value(target.token) }
    const extraHeaders = target.headers ?? Effect.succeed({})
    // Redirects are never followed: a redirect must not carry the sandbox token (or a bearer) elsewhere.
    const client = (target.transformClient ? target.transformClient(http) : http).pipe(HttpClient.followRedirects(0))

    // A dead server shows up as a refused or reset socket; when the provider knows why it died, that is
    // what the caller is told instead.
    const explainLost = (lost: ConnectionLostError): Effect.Effect<never, ConnectionLostError> =>
      target.exitReason === undefined
        ? Effect.fail(lost)
        : Effect.flatMap(target.exitReason, (reason) =>
            Effect.fail(
              Option.isSome(reason)
                ? new ConnectionLostError({ operation: lost.operation, detail: reason.value, cause: lost })
                : lost
            )
          )
    const lostTransport = (operation: string) => (error: HttpClientError.HttpClientError) =>
      explainLost(fromTransport(operation)(error))

    // The HttpClient records request headers in its spans: the sandbox token is redacted there, as the
    // bearer (`authorization`) already is.
    const sendTo = (url: string, request: HttpClientRequest.HttpClientRequest) =>
      Effect.flatMap(extraHeaders, (headers) =>
        client.execute(
          request.pipe(HttpClientRequest.prependUrl(url), HttpClientRequest.setHeaders({ ...headers, ...tokenHeader }))
        )
      )
    const send = (request: HttpClientRequest.HttpClientRequest) =>
      (currentBase === undefined
        ? sendTo(base, request)
        : Effect.flatMap(currentBase, (url) => sendTo(url, request))
      ).pipe(Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, Protocol.TOKEN_HEADER]))

    /** One bounded request/response exchange; `onOk` reads a 2xx answer. */
    const call = <A>(
      operation: string,
      path: string | undefined,
      request: HttpClientRequest.HttpClientRequest,
      onOk: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, unknown>,
      bound: Duration.Duration = timeouts.request
    ): Effect.Effect<A, OperationError> =>
      send(request).pipe(
        Effect.catchAll(lostTransport(operation)),
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300
            ? onOk(response).pipe(
                Effect.mapError(
                  (cause) =>
                    new ConnectionLostError({ operation, detail: "the answer was cut short or malformed", cause })
                )
              )
            : failFromResponse(operation, path, response)
        ),
        Effect.timeoutFail({
          duration: bound,
          onTimeout: () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(bound) })
        })
      )

    const json =
      <A, I>(schema: Schema.Schema<A, I>) =>
      (response: HttpClientResponse.HttpClientResponse) =>
        Effect.flatMap(response.json, Schema.decodeUnknown(schema))

    const health = call("health", undefined, HttpClientRequest.get("/health"), json(Protocol.HealthResponse))

    /** A streamed NDJSON answer, decoded line by line; unknown event types are skipped so the protocol can grow. */
    const ndjson = <A>(
      operation: string,
      request: HttpClientRequest.HttpClientRequest,
      decodeLine: (line: string) => Option.Option<A>,
      onError: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<never, OperationError>
    ): Stream.Stream<A | OutputLine, OperationError> =>
      Stream.unwrapScoped(
        send(request).pipe(
          Effect.catchAll(lostTransport(operation)),
          Effect.flatMap((response) => (response.status === 200 ? Effect.succeed(response.stream) : onError(response))),
          Effect.timeoutFail({
            duration: timeouts.request,
            onTimeout: () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(timeouts.request) })
          }),
          Effect.map((bytes) =>
            bytes.pipe(
              Stream.catchAll((e) => Stream.fromEffect(lostTransport(operation)(e))),
              Stream.timeoutFail(
                () =>
                  new ConnectionLostError({
                    operation,
                    detail: `the output stream was silent for ${Duration.format(timeouts.streamIdle)}`
                  }),
                timeouts.streamIdle
              ),
              Stream.mapChunks(splitLines(outputLines(decodeLine)))
            )
          )
        )
      )

    const exec = (body: Protocol.ExecRequest) => {
      const command = typeof body.cmd === "string" ? body.cmd : (body.cmd[0] ?? "")
      return ndjson(
        "exec",
        HttpClientRequest.post("/v1/exec").pipe(HttpClientRequest.bodyUnsafeJson(body)),
        decodeEventLine,
        (response) => failFromResponse("exec", undefined, response, command)
      )
    }

    /** Process routes answer 404 for an unknown id or pid. */
    const processCall = <A>(operation: string, id: string, effect: Effect.Effect<A, OperationError>) =>
      Effect.catchIf(
        effect,
        (error) => error._tag === "BadRequestError" && error.status === 404,
        () => Effect.fail(new ProcessNotFoundError({ id, operation }))
      )

    const spawn: WireClient["spawn"] = (body) => {
      const command = typeof body.cmd === "string" ? body.cmd : (body.cmd[0] ?? "")
      return send(HttpClientRequest.post("/v1/processes").pipe(HttpClientRequest.bodyUnsafeJson(body))).pipe(
        Effect.catchAll(lostTransport("spawn")),
        Effect.flatMap((response) =>
          response.status === 200
            ? json(Protocol.ProcessInfo)(response).pipe(
                Effect.mapError(
                  (cause) => new ConnectionLostError({ operation: "spawn", detail: "malformed answer", cause })
                )
              )
            : failFromResponse("spawn", undefined, response, command)
        ),
        Effect.timeoutFail({
          duration: timeouts.request,
          onTimeout: () =>
            new RequestTimeoutError({ operation: "spawn", timeoutMs: Duration.toMillis(timeouts.request) })
        })
      )
    }

    const processes: WireClient["processes"] = call(
      "processes",
      undefined,
      HttpClientRequest.get("/v1/processes"),
      json(Schema.Array(Protocol.ProcessInfo))
    )

    const kill: WireClient["kill"] = (id, signal) =>
      processCall(
        "kill",
        id,
        call(
          "kill",
          undefined,
          HttpClientRequest.del(`/v1/processes/${encodeURIComponent(id)}`).pipe(
            HttpClientRequest.setUrlParams({ signal })
          ),
          json(Protocol.KillResponse)
        )
      ).pipe(Effect.map((r) => r.killed))

    const cancel: WireClient["cancel"] = (key, signal) =>
      call(
        "cancel",
        undefined,
        HttpClientRequest.del("/v1/processes").pipe(HttpClientRequest.setUrlParams({ idempotency_key: key, signal })),
        json(Protocol.CancelResponse)
      ).pipe(Effect.map((r) => r.killed))

    // Streams and long polls go by POST: a quick tunnel's edge holds a GET's body until it ends
    // (cloudflared#1449), so a followed output would show nothing until the process exits. The server
    // takes the same query string on both methods (docs/protocol.md).
    const waitOnce = (id: string, seconds: number) =>
      processCall(
        "wait",
        id,
        call(
          "wait",
          undefined,
          HttpClientRequest.post(`/v1/processes/${encodeURIComponent(id)}/wait`).pipe(
            HttpClientRequest.setUrlParams({ timeout: String(seconds) })
          ),
          json(Protocol.WaitResponse)
        )
      )

    // Long waits are a series of bounded ones, each well inside the request timeout.
    const waitSlice = Math.max(1, Math.floor(Duration.toSeconds(timeouts.request) / 2))
    const wait: WireClient["wait"] = (id) =>
      waitOnce(id, waitSlice).pipe(
        Effect.map(Option.some),
        Effect.catchIf(
          (error) => error._tag === "BadRequestError" && error.status === 408,
          () => Effect.succeed(Option.none())
        ),
        Effect.repeat({ until: Option.isSome }),
        Effect.map((exit) => (exit as Option.Some<typeof Protocol.WaitResponse.Type>).value)
      )

    const decodeOutputLine = Schema.decodeUnknownOption(Schema.parseJson(Protocol.OutputEvent))
    /** A process's output (`…/output`, base64) with `params`, named `operation` in its errors. */
    const outputOf = (operation: string, id: string, params: Record<string, string>) =>
      ndjson(
        operation,
        HttpClientRequest.post(`/v1/processes/${encodeURIComponent(id)}/output`).pipe(
          HttpClientRequest.setUrlParams({ ...params, encoding: "base64" })
        ),
        decodeOutputLine,
        (response) => processCall(operation, id, failFromResponse(operation, undefined, response))
      )

    const output: WireClient["output"] = (id, follow) => outputOf("process.output", id, { follow: follow ? "1" : "0" })

    // The server may hold a stdin answer up to ~20 s while the command does not read (then it answers
    // with the partial offset): the bound leaves room for that on top of a plain request's.
    const stdinBound = Duration.sum(timeouts.request, Duration.seconds(30))
    const writeStdin: WireClient["writeStdin"] = (id, offset, data, eof) =>
      processCall(
        "process.stdin",
        id,
        call(
          "process.stdin",
          undefined,
          HttpClientRequest.post(`/v1/processes/${encodeURIComponent(id)}/stdin`).pipe(
            HttpClientRequest.setUrlParams({ offset: String(offset), eof: eof ? "1" : "0" }),
            HttpClientRequest.setBody(HttpBody.uint8Array(data, "application/octet-stream"))
          ),
          json(Protocol.StdinResponse),
          stdinBound
        )
      ).pipe(
        Effect.catchIf(
          (error) => error._tag === "BadRequestError" && error.code === "stdin_not_piped",
          () => Effect.fail(new StdinError({ id, reason: "NotPiped" }))
        )
      )

    const resume: WireClient["resume"] = (id, offsets) =>
      outputOf("exec", id, {
        follow: "1",
        stdout_offset: String(offsets.stdout),
        stderr_offset: String(offsets.stderr)
      })

    const info: WireClient["info"] = (id) =>
      processCall(
        "process",
        id,
        call(
          "process",
          undefined,
          HttpClientRequest.get(`/v1/processes/${encodeURIComponent(id)}`),
          json(Protocol.ProcessInfo)
        )
      )

    const pathParams = (path: string, extra: Record<string, string | undefined> = {}) =>
      HttpClientRequest.setUrlParams(
        Object.fromEntries(Object.entries({ path, ...extra }).filter(([, v]) => v !== undefined)) as Record<
          string,
          string
        >
      )

    const write: WireClient["write"] = (path, data, options = {}) => {
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
          operation,
          path,
          request(HttpBody.uint8Array(data, "application/octet-stream")),
          json(Protocol.WriteResponse)
        )
      }
      if (data._tag !== "Stream") return call(operation, path, request(data), json(Protocol.WriteResponse))
      // A streamed body may be produced slowly, so the bound is silence, not the request timeout: it fails
      // when no chunk has gone out (and then no answer has come) for `streamIdle`.
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
          timeouts.streamIdle,
          () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(timeouts.streamIdle) })
        )
        return Effect.raceFirst(
          call(operation, path, request(body), json(Protocol.WriteResponse), Duration.infinity),
          stalled
        )
      })
    }

    const openViaHttpClient: WireClient["openRead"] = (path, range = {}) => {
      const operation = "files.read"
      // Reads stay GET (HF's form) although a quick tunnel's edge holds a GET's body until it ends: a
      // read's answer has a Content-Length and ends as soon as its bytes are sent, so holding it costs one
      // range's transfer time, which parallel ranges overlap, and never a stall. POST is for answers that
      // end only when something happens in the sandbox (see `output` and `wait`).
      const request = HttpClientRequest.get("/v1/files/read").pipe(
        pathParams(path, { offset: range.offset?.toString(), length: range.length?.toString() })
      )
      return send(request).pipe(
        Effect.catchAll(lostTransport(operation)),
        Effect.flatMap((response) =>
          response.status === 200 ? Effect.succeed(response) : failFromResponse(operation, path, response)
        ),
        Effect.timeoutFail({
          duration: timeouts.request,
          onTimeout: () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(timeouts.request) })
        }),
        Effect.flatMap((response) =>
          Effect.map(readFacts(operation, response.headers), (facts): OpenRead => {
            let received = 0
            const complete = Effect.suspend(() =>
              received === facts.length ? Effect.void : Effect.fail(cutShort(operation, path, received, facts.length))
            )
            const body = response.stream.pipe(
              Stream.catchAll((e) => Stream.fromEffect(lostTransport(operation)(e))),
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
    const openDirect: WireClient["openRead"] = (path, range = {}) => {
      const operation = "files.read"
      const lost = (error: DirectRead.ExchangeError) => new ConnectionLostError({ operation, detail: error.detail })
      return Effect.gen(function* () {
        const url = new URL(currentBase === undefined ? base : yield* currentBase)
        const headers = { ...(yield* extraHeaders), ...tokenHeader }
        const query = new URLSearchParams({ path })
        if (range.offset !== undefined) query.set("offset", String(range.offset))
        if (range.length !== undefined) query.set("length", String(range.length))
        const target = `${url.pathname.replace(/\/+$/, "")}/v1/files/read?${query}`
        const exchange = yield* Effect.acquireRelease(
          Effect.sync(() => DirectRead.open(url, target, headers)),
          (exchange) => Effect.sync(exchange.close)
        )
        const head = yield* Effect.async<DirectRead.Head, ConnectionLostError>((resume) => {
          exchange.head((result) =>
            resume(result instanceof DirectRead.ExchangeError ? Effect.fail(lost(result)) : Effect.succeed(result))
          )
          return Effect.sync(exchange.close)
        }).pipe(
          Effect.catchAll(explainLost),
          Effect.timeoutFail({
            duration: timeouts.request,
            onTimeout: () => new RequestTimeoutError({ operation, timeoutMs: Duration.toMillis(timeouts.request) })
          })
        )
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
        return { ...facts, body, into: (destination, onBytes) => receive(destination, onBytes) }
      })
    }

    const openRead: WireClient["openRead"] =
      target.directReads === true && new URL(base).protocol === "http:" ? openDirect : openViaHttpClient

    // Link targets are asked for: the server leaves them out by default, for HF's client (Protocol.ts).
    const withTargets = { [Protocol.SYMLINK_TARGETS_PARAM]: "1" }

    const stat: WireClient["stat"] = (path) =>
      call(
        "files.stat",
        path,
        HttpClientRequest.get("/v1/files/stat").pipe(pathParams(path, withTargets)),
        json(Protocol.FileEntry)
      )

    const list: WireClient["list"] = (path, recursive) =>
      call(
        "files.list",
        path,
        HttpClientRequest.get("/v1/files/list").pipe(
          pathParams(path, { recursive: recursive ? "1" : undefined, ...withTargets })
        ),
        json(Protocol.ListResponse)
      )

    const remove: WireClient["remove"] = (path, recursive) =>
      call(
        "files.remove",
        path,
        HttpClientRequest.del("/v1/files/delete").pipe(pathParams(path, { recursive: recursive ? "1" : undefined })),
        json(Protocol.DeleteResponse)
      ).pipe(Effect.asVoid)

    const mkdir: WireClient["mkdir"] = (path) =>
      call(
        "files.mkdir",
        path,
        HttpClientRequest.post("/v1/files/mkdir").pipe(pathParams(path)),
        json(Protocol.MkdirResponse)
      ).pipe(Effect.asVoid)

    const rename: WireClient["rename"] = (from, to) =>
      call(
        "files.rename",
        from,
        HttpClientRequest.post("/v1/files/rename").pipe(HttpClientRequest.setUrlParams({ from, to })),
        (response) => response.json
      ).pipe(
        // A missing path is the source (the target's parents are created); a directory in the way is the target.
        Effect.mapError((error) =>
          error._tag === "IsDirectoryError"
            ? new IsDirectoryError({ path: to, operation: error.operation, detail: error.detail })
            : error
        ),
        Effect.asVoid
      )

    const chmod: WireClient["chmod"] = (path, mode) =>
      call(
        "files.chmod",
        path,
        HttpClientRequest.post("/v1/files/chmod").pipe(pathParams(path, { mode })),
        (response) => response.json
      ).pipe(Effect.asVoid)

    const symlink: WireClient["symlink"] = (path, target, replace) =>
      call(
        "files.symlink",
        path,
        HttpClientRequest.post("/v1/files/symlink").pipe(
          pathParams(path, { target, replace: replace ? "1" : undefined })
        ),
        (response) => response.json
      ).pipe(Effect.asVoid)

    const commit: WireClient["commit"] = (path, transfer, options) =>
      call(
        "files.write",
        path,
        HttpClientRequest.post("/v1/files/commit").pipe(
          pathParams(path, { transfer, size: options.size.toString(), mode: options.mode })
        ),
        json(Protocol.WriteResponse)
      )

    const abort: WireClient["abort"] = (path, transfer) =>
      call(
        "files.write",
        path,
        HttpClientRequest.post("/v1/files/abort").pipe(pathParams(path, { transfer })),
        (response) => response.json
      ).pipe(Effect.asVoid)

    return {
      timeouts,
      health,
      exec,
      spawn,
      processes,
      kill,
      cancel,
      wait,
      output,
      writeStdin,
      resume,
      info,
      serverExit: target.exitReason ?? Effect.succeed(Option.none()),
      openRead,
      write,
      commit,
      abort,
      stat,
      list,
      remove,
      mkdir,
      rename,
      chmod,
      symlink
    }
  })
