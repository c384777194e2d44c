/**
 * The wire protocol between the client and the in-sandbox server (`rpc-server/sbx_server`).
 *
 * One Schema per request, response and event. The prose version, with examples, is
 * `docs/protocol.md`; the server and this module must agree with it.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The protocol generation this client speaks: ours (HF's sbx-server reports no protocol number), its v1
 * routes plus extensions (docs/protocol.md).
 *
 * @since 0.1.0
 * @category constants
 */
export const PROTOCOL_VERSION = 2

/**
 * Header that carries the sandbox token.
 *
 * @since 0.1.0
 * @category constants
 */
export const TOKEN_HEADER = "x-sandbox-token"

/**
 * Header of a file read's answer that carries the whole file's size, so that a ranged read learns it
 * without a second request.
 *
 * @since 0.1.0
 * @category constants
 */
export const FILE_SIZE_HEADER = "x-file-size"

/**
 * Header of a file read's answer that carries the file's permission bits, in octal.
 *
 * @since 0.1.0
 * @category constants
 */
export const FILE_MODE_HEADER = "x-file-mode"

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

/**
 * `GET /health`. Without a token only `status` is present.
 *
 * @since 0.1.0
 * @category health
 */
export const HealthResponse = Schema.Struct({
  status: Schema.Literal("ok"),
  version: Schema.optional(Schema.String),
  protocol: Schema.optional(Schema.Number),
  uptime_ms: Schema.optional(Schema.Number),
  mode: Schema.optional(Schema.String),
  auth: Schema.optional(Schema.Boolean),
  /** A host's (`mode: "host"`) capacity, and how many sandboxes it holds now. @since 0.2.0 */
  capacity: Schema.optional(Schema.Number),
  sandboxes: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category health
 */
export type HealthResponse = typeof HealthResponse.Type

/**
 * The one line the server prints on stdout once it listens.
 *
 * @since 0.1.0
 * @category server
 */
export const ListeningLine = Schema.Struct({
  event: Schema.Literal("listening"),
  host: Schema.String,
  port: Schema.Number,
  pid: Schema.Number,
  version: Schema.String,
  protocol: Schema.Number
})

/**
 * @since 0.1.0
 * @category server
 */
export type ListeningLine = typeof ListeningLine.Type

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * Every error answer has this body. `code` is an hf-sandbox extension; HF's server sends only `error`.
 *
 * @since 0.1.0
 * @category errors
 */
export const ErrorBody = Schema.Struct({
  error: Schema.String,
  code: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category errors
 */
export type ErrorBody = typeof ErrorBody.Type

// ---------------------------------------------------------------------------
// Exec
// ---------------------------------------------------------------------------

/**
 * `POST /v1/exec`. A string `cmd` runs through `/bin/sh -c`; a list is exec'd directly.
 *
 * @since 0.1.0
 * @category exec
 */
export const ExecRequest = Schema.Struct({
  cmd: Schema.Union(Schema.String, Schema.Array(Schema.String)),
  shell: Schema.optional(Schema.Boolean),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  cwd: Schema.optional(Schema.String),
  timeout: Schema.optional(Schema.Number),
  stdin: Schema.optional(Schema.String),
  stdin_b64: Schema.optional(Schema.String),
  /**
   * The command's stdin is a pipe written through `POST /v1/processes/{id}/stdin` (after the `stdin` /
   * `stdin_b64` bytes, if any) and closed by `eof=1` or the command's end. @since 0.2.0
   */
  stdin_pipe: Schema.optional(Schema.Boolean),
  encoding: Schema.optional(Schema.Literal("utf-8", "base64")),
  /** 1–128 of `[A-Za-z0-9._:-]`: a retry with the same key reattaches to the command instead of running it again. */
  idempotency_key: Schema.optional(Schema.String),
  /**
   * Bytes per stream a reader may send past the offsets the client acknowledged
   * (`POST /v1/processes/{id}/ack`), at most `buffer_bytes`: what a dropped connection loses in proxy and
   * socket buffers stays within what the server keeps, so a resume always finds it. @since 0.2.0
   */
  ack_window: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category exec
 */
export type ExecRequest = typeof ExecRequest.Type

/**
 * @since 0.1.0
 * @category exec
 */
export const StartEvent = Schema.Struct({
  event: Schema.Literal("start"),
  pid: Schema.Number,
  /** The command's id in the process table (`e-N`), for `/v1/processes/{id}/…`; HF's server sends none. */
  id: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category exec
 */
export const StdoutEvent = Schema.Struct({ event: Schema.Literal("stdout"), data: Schema.String })

/**
 * @since 0.1.0
 * @category exec
 */
export const StderrEvent = Schema.Struct({ event: Schema.Literal("stderr"), data: Schema.String })

/**
 * @since 0.1.0
 * @category exec
 */
export const PingEvent = Schema.Struct({ event: Schema.Literal("ping") })

/**
 * @since 0.1.0
 * @category exec
 */
export const ExitEvent = Schema.Struct({
  event: Schema.Literal("exit"),
  exit_code: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.Number),
  timed_out: Schema.Boolean,
  duration_ms: Schema.Number
})

/**
 * @since 0.1.0
 * @category exec
 */
export type ExitEvent = typeof ExitEvent.Type

/**
 * One line of the NDJSON exec stream. Unknown event types are not part of this union: clients skip them.
 * (The event a user of `Sandbox` sees is `Sandbox.ExecEvent`.)
 *
 * @since 0.2.0
 * @category exec
 */
export const ExecEventLine = Schema.Union(StartEvent, StdoutEvent, StderrEvent, PingEvent, ExitEvent)

/**
 * @since 0.2.0
 * @category exec
 */
export type ExecEventLine = typeof ExecEventLine.Type

/**
 * The old name of {@link ExecEventLine}: `Sandbox.ExecEvent` is the event a user sees.
 *
 * @since 0.1.0
 * @category exec
 * @deprecated Use {@link ExecEventLine}: `Sandbox.ExecEvent` is the event a user sees.
 */
export const ExecEvent = ExecEventLine

/**
 * The old name of {@link ExecEventLine}: `Sandbox.ExecEvent` is the event a user sees.
 *
 * @since 0.1.0
 * @category exec
 * @deprecated Use {@link ExecEventLine}: `Sandbox.ExecEvent` is the event a user sees.
 */
export type ExecEvent = ExecEventLine

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/**
 * Query parameter of `stat` and `list` (`1`) that adds `target` to symlink entries. Without it, entries
 * carry exactly the keys of HF's `FileEntry`, whose Python client rejects any other key.
 *
 * @since 0.2.0
 * @category constants
 */
export const SYMLINK_TARGETS_PARAM = "symlink_targets"

/**
 * A file-system entry as `stat` and `list` report it (`lstat`: symlinks are not followed). `target`, a
 * symlink's raw link text, is there only when the request asked with {@link SYMLINK_TARGETS_PARAM}.
 *
 * @since 0.1.0
 * @category files
 */
export const FileEntry = Schema.Struct({
  name: Schema.String,
  path: Schema.String,
  type: Schema.Literal("file", "dir", "symlink"),
  size: Schema.Number,
  mtime_ms: Schema.Number,
  mode: Schema.String,
  target: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category files
 */
export type FileEntry = typeof FileEntry.Type

/**
 * A directory that `GET /v1/files/list?recursive=1` listed but could not descend into (or an entry
 * it could not stat): `name` is relative to the listed directory, `code` as in {@link ErrorBody}.
 *
 * @since 0.1.0
 * @category files
 */
export const SkippedEntry = Schema.Struct({
  name: Schema.String,
  path: Schema.String,
  error: Schema.String,
  code: Schema.String
})

/**
 * `GET /v1/files/list`. With `recursive=1`, entry names are relative paths (`sub/a.txt`) and
 * `skipped` lists what could not be read (always present then, possibly empty).
 *
 * @since 0.1.0
 * @category files
 */
export const ListResponse = Schema.Struct({
  entries: Schema.Array(FileEntry),
  skipped: Schema.optional(Schema.Array(SkippedEntry))
})

/**
 * `PUT /v1/files/write`.
 *
 * @since 0.1.0
 * @category files
 */
export const WriteResponse = Schema.Struct({ path: Schema.String, size: Schema.Number })

/**
 * `DELETE /v1/files/delete`.
 *
 * @since 0.1.0
 * @category files
 */
export const DeleteResponse = Schema.Struct({ deleted: Schema.String })

/**
 * `POST /v1/files/mkdir`.
 *
 * @since 0.1.0
 * @category files
 */
export const MkdirResponse = Schema.Struct({ created: Schema.String })

/**
 * `POST /v1/files/symlink` (hf-sandbox extension).
 *
 * @since 0.1.0
 * @category files
 */
export const SymlinkResponse = Schema.Struct({ path: Schema.String, target: Schema.String })

// ---------------------------------------------------------------------------
// Legacy prototype endpoints (buffered JSON)
// ---------------------------------------------------------------------------

/**
 * `POST /exec` of the original prototype.
 *
 * @since 0.1.0
 * @category legacy
 */
export const LegacyExecRequest = Schema.Struct({
  cmd: Schema.Union(Schema.Array(Schema.String), Schema.String),
  workdir: Schema.optional(Schema.String),
  stdin: Schema.optional(Schema.String),
  timeout: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category legacy
 */
export const LegacyExecResponse = Schema.Struct({
  rc: Schema.Number,
  stdout: Schema.String,
  stderr: Schema.String,
  timed_out: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category legacy
 */
export const LegacyWriteRequest = Schema.Struct({ path: Schema.String, content_b64: Schema.String })

/**
 * @since 0.1.0
 * @category legacy
 */
export const LegacyWriteResponse = Schema.Struct({ ok: Schema.Literal(true) })

/**
 * @since 0.1.0
 * @category legacy
 */
export const LegacyReadRequest = Schema.Struct({ path: Schema.String })

/**
 * @since 0.1.0
 * @category legacy
 */
export const LegacyReadResponse = Schema.Struct({ content_b64: Schema.String })

// ---------------------------------------------------------------------------
// Background processes (hf-sandbox extension)
// ---------------------------------------------------------------------------

/**
 * A background process as `POST /v1/processes` and `GET /v1/processes` report it. (The process a user
 * of `Sandbox` sees is `Sandbox.ProcessInfo`.)
 *
 * @since 0.2.0
 * @category processes
 */
export const ProcessInfoBody = Schema.Struct({
  id: Schema.String,
  pid: Schema.Number,
  cmd: Schema.Unknown,
  tag: Schema.optional(Schema.NullOr(Schema.String)),
  started_at_ms: Schema.Number,
  running: Schema.optional(Schema.Boolean),
  exit_code: Schema.optional(Schema.NullOr(Schema.Number)),
  signal: Schema.optional(Schema.NullOr(Schema.Number)),
  /** `"exec"` for a command of `POST /v1/exec`, `"process"` for a background process. */
  kind: Schema.optional(Schema.String),
  /** Set when a spawn's `idempotency_key` named a process that already existed: nothing new was started. */
  existing: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.2.0
 * @category processes
 */
export type ProcessInfoBody = typeof ProcessInfoBody.Type

/**
 * The old name of {@link ProcessInfoBody}: `Sandbox.ProcessInfo` is the process a user sees.
 *
 * @since 0.1.0
 * @category processes
 * @deprecated Use {@link ProcessInfoBody}: `Sandbox.ProcessInfo` is the process a user sees.
 */
export const ProcessInfo = ProcessInfoBody

/**
 * The old name of {@link ProcessInfoBody}: `Sandbox.ProcessInfo` is the process a user sees.
 *
 * @since 0.1.0
 * @category processes
 * @deprecated Use {@link ProcessInfoBody}: `Sandbox.ProcessInfo` is the process a user sees.
 */
export type ProcessInfo = ProcessInfoBody

/**
 * `DELETE /v1/processes/{id}`.
 *
 * @since 0.1.0
 * @category processes
 */
export const KillResponse = Schema.Struct({ id: Schema.String, killed: Schema.Boolean })

/**
 * `DELETE /v1/processes?idempotency_key=K`: the command that key started (`id` null when no request
 * with it had arrived); either way the key is spent.
 *
 * @since 0.2.0
 * @category processes
 */
export const CancelResponse = Schema.Struct({ id: Schema.NullOr(Schema.String), killed: Schema.Boolean })

/**
 * `POST /v1/processes/{id}/wait` (or GET): the exit event without its `event` field.
 *
 * @since 0.1.0
 * @category processes
 */
export const WaitResponse = Schema.Struct({
  exit_code: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.Number),
  timed_out: Schema.Boolean,
  duration_ms: Schema.Number
})

/**
 * In a process's output stream: bytes lost from the front of its ring buffer.
 *
 * @since 0.1.0
 * @category processes
 */
export const DroppedEvent = Schema.Struct({
  event: Schema.Literal("dropped"),
  stdout: Schema.Number,
  stderr: Schema.Number
})

/**
 * One line of a process's NDJSON output stream. (The event a user of `Sandbox` sees is
 * `Sandbox.OutputEvent`.)
 *
 * @since 0.2.0
 * @category processes
 */
export const OutputEventLine = Schema.Union(DroppedEvent, StdoutEvent, StderrEvent, PingEvent, ExitEvent)

/**
 * @since 0.2.0
 * @category processes
 */
export type OutputEventLine = typeof OutputEventLine.Type

/**
 * The old name of {@link OutputEventLine}: `Sandbox.OutputEvent` is the event a user sees.
 *
 * @since 0.1.0
 * @category processes
 * @deprecated Use {@link OutputEventLine}: `Sandbox.OutputEvent` is the event a user sees.
 */
export const OutputEvent = OutputEventLine

/**
 * The old name of {@link OutputEventLine}: `Sandbox.OutputEvent` is the event a user sees.
 *
 * @since 0.1.0
 * @category processes
 * @deprecated Use {@link OutputEventLine}: `Sandbox.OutputEvent` is the event a user sees.
 */
export type OutputEvent = OutputEventLine

// ---------------------------------------------------------------------------
// Streamed stdin
// ---------------------------------------------------------------------------

/**
 * The largest body the server takes on `POST /v1/processes/{id}/stdin` (16 MiB).
 *
 * @since 0.2.0
 * @category stdin
 */
export const STDIN_BODY_MAX = 16 * 1024 * 1024

/**
 * `POST /v1/processes/{id}/stdin?offset=N&eof=0|1`: `offset` is the number of stdin bytes written so far
 * (the next request starts there); `closed` says the pipe is closed (by `eof=1`, the command's end, or its
 * reader going away): nothing more will be written.
 *
 * @since 0.2.0
 * @category stdin
 */
export const StdinResponse = Schema.Struct({ id: Schema.String, offset: Schema.Number, closed: Schema.Boolean })

/**
 * @since 0.2.0
 * @category stdin
 */
export type StdinResponse = typeof StdinResponse.Type

/**
 * `POST /v1/processes/{id}/ack?stdout_offset=N&stderr_offset=M`: the offsets acknowledged so far (the
 * furthest of every acknowledgement and resume).
 *
 * @since 0.2.0
 * @category exec
 */
export const AckResponse = Schema.Struct({
  id: Schema.String,
  stdout_offset: Schema.Number,
  stderr_offset: Schema.Number
})

/**
 * @since 0.2.0
 * @category exec
 */
export type AckResponse = typeof AckResponse.Type

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/**
 * One GPU of a {@link MetricsLine}: utilisation in percent, memory in bytes.
 *
 * @since 0.2.0
 * @category metrics
 */
export const GpuMetricsLine = Schema.Struct({
  utilization: Schema.Number,
  memory_used_bytes: Schema.Number,
  memory_total_bytes: Schema.Number
})

/**
 * One resource sample, in the field names of the HF Jobs metrics stream (`GET /api/jobs/{ns}/{id}/metrics`,
 * read by `huggingface_hub`'s `fetch_job_metrics`), which the server's `GET|POST /v1/metrics` answers too:
 * `cpu_usage_pct` (of the allotment), `cpu_millicores` (the allotment: 1000 per CPU), memory and network
 * rates in bytes (per second), and `gpus` keyed by GPU id (empty without GPUs). `replica` is the Hub's.
 *
 * @since 0.2.0
 * @category metrics
 */
export const MetricsLine = Schema.Struct({
  cpu_usage_pct: Schema.Number,
  cpu_millicores: Schema.Number,
  memory_used_bytes: Schema.Number,
  memory_total_bytes: Schema.Number,
  rx_bps: Schema.Number,
  tx_bps: Schema.Number,
  gpus: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: GpuMetricsLine }))),
  replica: Schema.optional(Schema.NullOr(Schema.String))
})

/**
 * @since 0.2.0
 * @category metrics
 */
export type MetricsLine = typeof MetricsLine.Type

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/**
 * The path prefix of the port proxy: `ANY /v1/proxy/{port}/{path...}` reaches `127.0.0.1:{port}` in the
 * sandbox (HTTP, streamed bodies, SSE, WebSocket upgrades), authenticated with the sandbox token, which
 * is never forwarded. The same route as HF's sandbox-server.
 *
 * @since 0.2.0
 * @category ports
 */
export const PROXY_PREFIX = "/v1/proxy/"

/**
 * `GET /v1/ports/{port}`: whether something accepts connections on `127.0.0.1:{port}` now (the probe a
 * client polls until a server it started listens), the proxied connections open to it, and the URL of its
 * quick tunnel if one runs.
 *
 * @since 0.2.0
 * @category ports
 */
export const PortStatus = Schema.Struct({
  port: Schema.Number,
  listening: Schema.Boolean,
  connections: Schema.Number,
  tunnel: Schema.NullOr(Schema.String)
})

/**
 * @since 0.2.0
 * @category ports
 */
export type PortStatus = typeof PortStatus.Type

/**
 * `POST /v1/ports/{port}/tunnel` (200, once ready) and `GET /v1/ports/{port}/tunnel` (any state): a port's
 * own quick tunnel. `url` is set while `state` is `ready`; `error` says why when it is `failed`.
 *
 * @since 0.2.0
 * @category ports
 */
export const PortTunnel = Schema.Struct({
  port: Schema.Number,
  state: Schema.Literal("none", "starting", "ready", "failed"),
  url: Schema.NullOr(Schema.String),
  error: Schema.optional(Schema.String)
})

/**
 * @since 0.2.0
 * @category ports
 */
export type PortTunnel = typeof PortTunnel.Type

/**
 * The job-log marker of a port's quick tunnel, one line per (re)start:
 * `HF_SANDBOX_PORT_TUNNEL {"port":8000,"url":"https://<name>.trycloudflare.com"}`. Distinct from the
 * server's own `HF_SANDBOX_TUNNEL`, so a client following the server's URL never takes a port's.
 *
 * @since 0.2.0
 * @category ports
 */
export const PORT_TUNNEL_MARKER = "HF_SANDBOX_PORT_TUNNEL"

// ---------------------------------------------------------------------------
// Host mode (pools)
// ---------------------------------------------------------------------------

/**
 * `POST /v1/sandboxes` on a host (host token): `count` sandboxes (default 1) with this `env`, each deleted
 * after `idle_timeout_secs` with no request and no process (0 or absent: never). HF's sandbox-server's
 * request, with its limits.
 *
 * @since 0.2.0
 * @category host
 */
export const CreateSandboxesRequest = Schema.Struct({
  count: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  idle_timeout_secs: Schema.optional(Schema.Number.pipe(Schema.greaterThanOrEqualTo(0))),
  max_procs: Schema.optional(Schema.Int),
  max_mem_mb: Schema.optional(Schema.Int)
})

/**
 * @since 0.2.0
 * @category host
 */
export type CreateSandboxesRequest = typeof CreateSandboxesRequest.Type

/**
 * One sandbox of a host, as `GET /v1/sandboxes` lists it: its id on the host (16 lowercase hex
 * characters), its uid (where the host isolates by uid) and home.
 *
 * @since 0.2.0
 * @category host
 */
export const HostedSandbox = Schema.Struct({
  id: Schema.String,
  uid: Schema.optional(Schema.NullOr(Schema.Number)),
  home: Schema.optional(Schema.String),
  created_at_ms: Schema.optional(Schema.Number)
})

/**
 * @since 0.2.0
 * @category host
 */
export type HostedSandbox = typeof HostedSandbox.Type

/**
 * A sandbox `POST /v1/sandboxes` made: a {@link HostedSandbox} and, from our host (absent from HF's),
 * its own token — lowercase hex HMAC-SHA256 of its id under the host token.
 *
 * @since 0.2.0
 * @category host
 */
export const CreatedSandbox = Schema.Struct({
  ...HostedSandbox.fields,
  token: Schema.optional(Schema.String)
})

/**
 * @since 0.2.0
 * @category host
 */
export type CreatedSandbox = typeof CreatedSandbox.Type

/**
 * The answer of `POST /v1/sandboxes`: the sandboxes made, and how many of `count` did not fit (the host
 * is full).
 *
 * @since 0.2.0
 * @category host
 */
export const CreateSandboxesResponse = Schema.Struct({
  sandboxes: Schema.Array(CreatedSandbox),
  rejected: Schema.optionalWith(Schema.Number, { default: () => 0 })
})

/**
 * @since 0.2.0
 * @category host
 */
export type CreateSandboxesResponse = typeof CreateSandboxesResponse.Type

/**
 * `GET /v1/sandboxes` on a host (host token): its live sandboxes, without their tokens.
 *
 * @since 0.2.0
 * @category host
 */
export const ListSandboxesResponse = Schema.Array(HostedSandbox)

/**
 * `DELETE /v1/sandboxes/{id}` (host token, or that sandbox's): every process of the sandbox killed, its
 * home removed, its slot free.
 *
 * @since 0.2.0
 * @category host
 */
export const DeleteSandboxResponse = Schema.Struct({
  id: Schema.String,
  deleted: Schema.Boolean
})

/**
 * @since 0.2.0
 * @category host
 */
export type DeleteSandboxResponse = typeof DeleteSandboxResponse.Type

/**
 * The separator of a pooled sandbox's id, `<host id>.<local id>` (HF's `SHARED_ID_SEP`).
 *
 * @since 0.2.0
 * @category host
 */
export const POOLED_ID_SEPARATOR = "."
