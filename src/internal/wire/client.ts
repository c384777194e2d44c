/**
 * The wire client of one sandbox: every protocol route as a typed call. Providers hand the `Sandbox`
 * module an endpoint ({@link Target}); this turns it into a {@link WireClient}, composed from the rooms
 * of this directory: `transport` (the HttpClient configured once), `errors`, `ndjson`, `exec`,
 * `processes`, `read` (with `directRead`), `write` and `entries`.
 */
import type * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import * as Protocol from "../../Protocol.js"
import type { ConnectionLostError, OperationError } from "../../SandboxError.js"
import * as Entries from "./entries.js"
import * as Exec from "./exec.js"
import * as Metrics from "./metrics.js"
import * as Ports from "./ports.js"
import * as Processes from "./processes.js"
import * as Read from "./read.js"
import * as Transport from "./transport.js"
import * as Write from "./write.js"

export type { OpenRead } from "./read.js"
export { defaultTimeouts, type Target, type Timeouts } from "./transport.js"

/** The wire client of one sandbox. Every method is one protocol route. */
export interface WireClient {
  readonly timeouts: Transport.Timeouts
  readonly health: Effect.Effect<Protocol.HealthResponse, OperationError>
  readonly exec: (request: Protocol.ExecRequest) => Stream.Stream<Protocol.ExecEventLine, OperationError>
  /**
   * {@link exec} read to its end by the calling fiber, each read's events handed to `onEvents`, with the
   * same bounds. For a caller that folds the events: far cheaper than a stream.
   */
  readonly execEach: <E>(
    request: Protocol.ExecRequest,
    onEvents: (events: Chunk.Chunk<Protocol.ExecEventLine>) => Effect.Effect<void, E>
  ) => Effect.Effect<void, OperationError | E>
  readonly spawn: (request: Processes.SpawnRequest) => Effect.Effect<Protocol.ProcessInfoBody, OperationError>
  readonly processes: Effect.Effect<ReadonlyArray<Protocol.ProcessInfoBody>, OperationError>
  /** Signals the process's group; false when it had already exited. */
  readonly kill: (id: string, signal: string) => Effect.Effect<boolean, OperationError>
  /**
   * Signals the command a request with idempotency key `key` started and spends the key, so that such
   * a request still on its way starts nothing; false when nothing was signalled.
   */
  readonly cancel: (key: string, signal: string) => Effect.Effect<boolean, OperationError>
  readonly wait: (id: string) => Effect.Effect<typeof Protocol.WaitResponse.Type, OperationError>
  readonly output: (id: string, follow: boolean) => Stream.Stream<Protocol.OutputEventLine, OperationError>
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
  ) => Stream.Stream<Protocol.OutputEventLine, OperationError>
  /** Tells the server the client holds a command's output up to these raw byte offsets (see `ack_window`). */
  readonly ack: (
    id: string,
    offsets: { readonly stdout: number; readonly stderr: number }
  ) => Effect.Effect<Protocol.AckResponse, OperationError>
  /** One process table entry (an exec's or a background process's), by id. */
  readonly info: (id: string) => Effect.Effect<Protocol.ProcessInfoBody, OperationError>
  /** Why the server ended, when the provider knows: no reattach can succeed then. */
  readonly serverExit: Effect.Effect<Option.Option<string>>
  /** The error of a connection lost because the server ended (see `serverExit`), naming a pool host. */
  readonly serverEnded: (fields: Parameters<typeof Transport.serverEnded>[1]) => ConnectionLostError
  /**
   * Opens a read of `[offset, offset + length)` of a file (the whole file by default): over a bare socket
   * when the target allows it (`directReads`), else through the HttpClient. The body fails when it
   * carries fewer bytes than announced: the file changed during the read. It has no idle bound of its
   * own: a reader adds `silenceBound` (it drains at once) or a per-pull timeout (it may be slow).
   */
  readonly openRead: Read.Open
  /**
   * Writes a body. With `transfer`, it is one range (at `offset`) of that transfer, written to the
   * transfer's temp file until {@link commit}; without, it replaces the file at once (temp file, then
   * rename), or writes the file itself with `inPlace`. `truncateTo` then sets the size.
   */
  readonly write: (
    path: string,
    data: Uint8Array | HttpBody.HttpBody,
    options?: Write.WriteOptions
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
  /** The server's resource samples, one per `interval`, until the stream is ended. */
  readonly metrics: (interval: Duration.Duration) => Stream.Stream<Protocol.MetricsLine, OperationError>
  readonly symlink: (path: string, target: string, replace?: boolean) => Effect.Effect<void, OperationError>
  /** Whether something listens on the port in the sandbox now. */
  readonly portStatus: (port: number) => Effect.Effect<Protocol.PortStatus, OperationError>
  /** The port's quick tunnel URL once up; `undefined` while it is still starting (ask again). */
  readonly portTunnel: (port: number) => Effect.Effect<string | undefined, OperationError>
  /** Where requests go now, and the headers they carry (the endpoint's and the sandbox token). */
  readonly origin: Effect.Effect<{
    readonly baseUrl: string
    readonly headers: Readonly<Record<string, string>>
    /** The path of a route (`/v1/…`) for this sandbox (a pooled one's is under its host's `/v1/sandboxes/{id}`). */
    readonly route: (path: string) => string
  }>
}

/** The wire client of `target`, bounded by `timeouts`, over the HttpClient of the context. */
export const make = (
  target: Transport.Target,
  timeouts: Transport.Timeouts = Transport.defaultTimeouts
): Effect.Effect<WireClient, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (http) => compose(Transport.make(target, timeouts, http)))

/** Every route over one transport. */
const compose = (transport: Transport.Transport): WireClient => ({
  timeouts: transport.timeouts,
  health: Transport.call(
    transport,
    "health",
    undefined,
    HttpClientRequest.get("/health"),
    Transport.json(Protocol.HealthResponse)
  ),
  exec: (request) => Exec.exec(transport, request),
  execEach: (request, onEvents) => Exec.execEach(transport, request, onEvents),
  spawn: (request) => Processes.spawn(transport, request),
  processes: Processes.processes(transport),
  kill: (id, signal) => Processes.kill(transport, id, signal),
  cancel: (key, signal) => Processes.cancel(transport, key, signal),
  wait: (id) => Processes.wait(transport, id),
  output: (id, follow) => Processes.output(transport, id, follow),
  writeStdin: (id, offset, data, eof) => Processes.writeStdin(transport, id, offset, data, eof),
  resume: (id, offsets) => Processes.resume(transport, id, offsets),
  ack: (id, offsets) => Processes.ack(transport, id, offsets),
  info: (id) => Processes.info(transport, id),
  serverExit: transport.target.exitReason ?? Effect.succeed(Option.none()),
  serverEnded: (fields) => Transport.serverEnded(transport.target, fields),
  openRead: Read.openRead(transport),
  write: (path, data, options) => Write.write(transport, path, data, options),
  commit: (path, transfer, options) => Write.commit(transport, path, transfer, options),
  abort: (path, transfer) => Write.abort(transport, path, transfer),
  stat: (path) => Entries.stat(transport, path),
  list: (path, recursive) => Entries.list(transport, path, recursive),
  remove: (path, recursive) => Entries.remove(transport, path, recursive),
  mkdir: (path) => Entries.mkdir(transport, path),
  rename: (from, to) => Entries.rename(transport, from, to),
  chmod: (path, mode) => Entries.chmod(transport, path, mode),
  symlink: (path, target, replace) => Entries.symlink(transport, path, target, replace),
  portStatus: (port) => Ports.status(transport, port),
  portTunnel: (port) => Ports.tunnel(transport, port),
  metrics: (interval) => Metrics.metrics(transport, interval),
  origin: Transport.origin(transport)
})
