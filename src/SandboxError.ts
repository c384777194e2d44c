/**
 * Every failure a user of a sandbox can meet, as data. Each error's `message` says what went wrong
 * and what to do about it. A command that exits non-zero is a result, never one of these.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { EFFECT, inTerms } from "./internal/surfaceTerms.js"
import { RESOURCE_LIMIT_VARIABLES } from "./internal/wire/limits.js"

/**
 * Marks every error of this module, whatever its tag: see {@link isSandboxError}.
 *
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("hf-sandbox/SandboxError")

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * Whether a value is one of hf-sandbox's errors (any of {@link SandboxError}), e.g. to tell them from a
 * defect or another library's error in a `Cause`.
 *
 * @since 0.2.0
 * @category guards
 */
export const isSandboxError = (u: unknown): u is SandboxError => Predicate.hasProperty(u, TypeId)

const tail = (text: string | undefined) =>
  text !== undefined && text.trim().length > 0 ? `\n--- server stderr (tail) ---\n${text.trimEnd()}` : ""

/**
 * The sandbox could not be started: the provider failed, the server exited or never became ready.
 * `stderrTail` holds the last lines the server printed, when there are any. `Unauthorized` (@since 0.2.0):
 * the sandbox's server answered but refused the sandbox token (its `cause` is the `AuthError`), reported
 * at the first answer instead of after `startTimeout`. `HubUnreachable` (@since 0.2.0): the Hub could not be
 * reached at all (its `cause` is the `HubError`, which names the endpoint and the network's reason).
 * `NameTaken` (@since 0.2.0): a running sandbox already has the `name` asked for (the detail and `holder`
 * name it; `Sandbox.getOrCreate` attaches to it instead). `NotFound` (@since 0.2.0): no running sandbox has the
 * name `connect({ name })` asked for.
 *
 * @since 0.1.0
 * @category errors
 */
export class StartError extends Schema.TaggedError<StartError>("hf-sandbox/StartError")("StartError", {
  provider: Schema.String,
  reason: Schema.Literal(
    "SpawnFailed",
    "ServerExited",
    "Timeout",
    "JobFailed",
    "NotReady",
    "NoToken",
    "HubRejected",
    "TunnelFailed",
    "InvalidOptions",
    "Unauthorized",
    "HubUnreachable",
    "NameTaken",
    "NotFound"
  ),
  detail: Schema.String,
  stderrTail: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect),
  /**
   * Set when what failed started nothing: what could not be done, e.g. `attach to sandbox 687f…` (a
   * `connect`), `list sandboxes`, `kill sandbox 687f…` (@since 0.2.0).
   */
  during: Schema.optional(Schema.String),
  /**
   * For `NameTaken`: the sandbox that already has the name (its `id`) and the `name` (@since 0.2.0), so
   * that a program can attach to it, stop it or say so in its own words without reading the detail.
   */
  holder: Schema.optional(Schema.Struct({ id: Schema.String, name: Schema.String })),
  /**
   * For `InvalidOptions` about one option: the `option` as `make` names it (`idleTimeout`, `name`,
   * `maxCost`; one element as `volumes[1]`, `env.NAME`, `cloudflared.version`) and the `problem` with its
   * value, said without the option's name and without the library's calls (@since 0.2.0), e.g. for a
   * command line to name its flag instead. Options are checked in turn: the first bad one is named.
   */
  invalid: Schema.optional(Schema.Struct({ option: Schema.String, problem: Schema.String }))
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  /**
   * A Hub call of the provider failed: `HubUnreachable` when the Hub could not be reached at all, else
   * `HubRejected`; the `HubError` is the cause, its message the detail.
   *
   * @since 0.2.0
   */
  static fromHubError(error: HubError, provider = "hf-jobs"): StartError {
    return new StartError({
      provider,
      reason: error.unreachable !== undefined ? "HubUnreachable" : "HubRejected",
      detail: error.message,
      cause: error
    })
  }

  /**
   * The sandbox's server never answered its health check as this sandbox's server: `Unauthorized` when it
   * refused the sandbox token (an `AuthError`), else `NotReady`; the error is the cause.
   *
   * @since 0.2.0
   */
  static fromHealthCheck(error: OperationError, provider: string): StartError {
    return new StartError({
      provider,
      reason: error._tag === "AuthError" ? "Unauthorized" : "NotReady",
      detail: error.message,
      cause: error
    })
  }

  override get message() {
    const what = this.during === undefined ? "Sandbox did not start" : `Could not ${this.during}`
    return `${what} on the ${this.provider} provider (${this.reason}): ${this.detail}${tail(this.stderrTail)}`
  }
}

/**
 * A Hugging Face Hub API call failed (after retrying what was transient). `detail` is the Hub's message.
 *
 * @since 0.1.0
 * @category errors
 */
export class HubError extends Schema.TaggedError<HubError>("hf-sandbox/HubError")("HubError", {
  operation: Schema.String,
  status: Schema.optional(Schema.Number),
  detail: Schema.String,
  retryAfterMs: Schema.optional(Schema.Number),
  /** Where the token came from, e.g. `HF_TOKEN` or `the token file /home/me/.cache/huggingface/token` (@since 0.2.0). */
  tokenSource: Schema.optional(Schema.String),
  /**
   * Set when the Hub could not be reached at all (connection refused, no such host, no route): the
   * endpoint and the network's reason, e.g. `connect ECONNREFUSED 127.0.0.1:9` (@since 0.2.0).
   */
  unreachable: Schema.optional(Schema.Struct({ endpoint: Schema.String, cause: Schema.String })),
  /**
   * The surface the error is said on, whose words its advice uses: `"cli"` (environment variables and
   * commands) or `"promise"` (`Sandbox.create({ token })`); unset, the Effect API's (the options of
   * `HfJobs.layer`). The CLI and the Promise facade set it on the errors they report (@since 0.2.0).
   */
  surface: Schema.optional(Schema.Literal("cli", "promise"))
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return inTerms(this.said, this.surface)
  }

  /** The message in the Effect API's terms. */
  private get said() {
    if (this.unreachable !== undefined) {
      return (
        `Could not reach the Hugging Face Hub at ${this.unreachable.endpoint} (${this.operation}): ${this.unreachable.cause}. ` +
        `Check the network, and ${EFFECT.endpoint} if you set one.`
      )
    }
    const status = this.status === undefined ? "no answer" : `HTTP ${this.status}`
    const hint =
      this.status === 401
        ? this.tokenSource === undefined
          ? ` Check your Hugging Face token (${EFFECT.tokenWays}).`
          : ` The Hub rejected the token from ${this.tokenSource}: run \`hf auth login\` again, or replace that token.`
        : this.status === 403
          ? ` The token${this.tokenSource === undefined ? "" : ` from ${this.tokenSource}`} lacks permission for this namespace (jobs need a token with write access).`
          : this.status === 429
            ? " The Hub is rate limiting this token; wait and try again."
            : ""
    return `Hugging Face Hub ${this.operation} failed (${status}): ${this.detail}.${hint}`
  }
}

/**
 * The sandbox server refused the token (HTTP 401/403).
 *
 * @since 0.1.0
 * @category errors
 */
export class AuthError extends Schema.TaggedError<AuthError>("hf-sandbox/AuthError")("AuthError", {
  operation: Schema.String,
  status: Schema.Number
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return (
      `The sandbox rejected the credentials on ${this.operation} (HTTP ${this.status}). ` +
      "The sandbox token does not match the one the server was started with: connect with the token of this sandbox."
    )
  }
}

/**
 * A path does not exist in the sandbox.
 *
 * @since 0.1.0
 * @category errors
 */
export class FileNotFoundError extends Schema.TaggedError<FileNotFoundError>("hf-sandbox/FileNotFoundError")(
  "FileNotFoundError",
  {
    path: Schema.String,
    operation: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `No such file or directory in the sandbox: ${this.path} (${this.operation}). Check the path; relative paths resolve against the sandbox's working directory.`
  }
}

/**
 * A file operation met a directory (reading or overwriting one, or removing a non-empty one).
 *
 * @since 0.1.0
 * @category errors
 */
export class IsDirectoryError extends Schema.TaggedError<IsDirectoryError>("hf-sandbox/IsDirectoryError")(
  "IsDirectoryError",
  {
    path: Schema.String,
    operation: Schema.String,
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `${this.path} is a directory (${this.operation}): ${this.detail}`
  }
}

/**
 * An operation that would replace an existing entry was not asked to, e.g. `files.symlink` over a regular
 * file without `{ replace: true }`.
 *
 * @since 0.2.0
 * @category errors
 */
export class FileExistsError extends Schema.TaggedError<FileExistsError>("hf-sandbox/FileExistsError")(
  "FileExistsError",
  {
    path: Schema.String,
    operation: Schema.String,
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `${this.path} already exists (${this.operation}): ${this.detail}`
  }
}

/**
 * The server refused the request as invalid (HTTP 4xx other than the cases with their own error), e.g. a
 * missing `cwd`, an invalid mode, or `mkdir` over a file (`code` says which).
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequestError extends Schema.TaggedError<BadRequestError>("hf-sandbox/BadRequestError")(
  "BadRequestError",
  {
    operation: Schema.String,
    status: Schema.Number,
    code: Schema.optional(Schema.String),
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `The sandbox refused ${this.operation} (HTTP ${this.status}${this.code ? `, ${this.code}` : ""}): ${this.detail}`
  }
}

/**
 * The sandbox server could not carry out a valid request (HTTP 5xx with an explanation), e.g. its disk
 * is full (`code: "no_space"`) or it is shutting down.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.TaggedError<ServerError>("hf-sandbox/ServerError")("ServerError", {
  operation: Schema.String,
  status: Schema.Number,
  code: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `The sandbox server failed ${this.operation} (HTTP ${this.status}${this.code ? `, ${this.code}` : ""}): ${this.detail}`
  }
}

/**
 * The sandbox server is at one of its bounds: too many background processes and execs running at once
 * (`code: "too_many_processes"`, the server's `SBX_MAX_PROCESSES`, default 1024) or too many connections
 * open (`code: "too_many_connections"`, `SBX_MAX_CONNECTIONS`, default 512). Nothing was started. Wait for
 * commands to end or kill some, close idle streams, or start the sandbox with a higher bound in its `env`.
 *
 * @since 0.2.0
 * @category errors
 */
export class ResourceLimitError extends Schema.TaggedError<ResourceLimitError>("hf-sandbox/ResourceLimitError")(
  "ResourceLimitError",
  {
    operation: Schema.String,
    code: Schema.String,
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    const variable = RESOURCE_LIMIT_VARIABLES[this.code]
    // The server's detail names its own flag too; a library user sets the bound through `env` at make.
    const raise = variable === undefined ? "" : ` To raise it, make the sandbox with env: { ${variable}: "<n>" }.`
    return `The sandbox server is at its limit for ${this.operation} (${this.code}): ${this.detail}.${raise}`
  }
}

/**
 * No background process with this id (or pid) exists in the sandbox.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProcessNotFoundError extends Schema.TaggedError<ProcessNotFoundError>("hf-sandbox/ProcessNotFoundError")(
  "ProcessNotFoundError",
  {
    id: Schema.String,
    operation: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `No background process ${this.id} in the sandbox (${this.operation}); list them with sb.processes.`
  }
}

/**
 * A file on this machine (the client's side of an upload or download) could not be read or written.
 *
 * @since 0.1.0
 * @category errors
 */
export class LocalFileError extends Schema.TaggedError<LocalFileError>("hf-sandbox/LocalFileError")("LocalFileError", {
  path: Schema.String,
  operation: Schema.String,
  detail: Schema.String
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `${this.operation} could not use the local file ${this.path}: ${this.detail}`
  }
}

/**
 * An option or argument given to an operation is out of range (caught before anything is sent).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArgumentError extends Schema.TaggedError<InvalidArgumentError>("hf-sandbox/InvalidArgumentError")(
  "InvalidArgumentError",
  {
    operation: Schema.String,
    argument: Schema.String,
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `${this.operation}: invalid ${this.argument}: ${this.detail}`
  }
}

/**
 * The program of an argv command does not exist (or is not executable) in the sandbox.
 * A shell string with an unknown command is a result instead: the shell exits with 127.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandNotFoundError extends Schema.TaggedError<CommandNotFoundError>("hf-sandbox/CommandNotFoundError")(
  "CommandNotFoundError",
  {
    command: Schema.String,
    detail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `Cannot run "${this.command}" in the sandbox: ${this.detail}. Install it in the image, use its full path, or run it through a shell string.`
  }
}

/**
 * The connection to the sandbox failed or ended before the answer was complete
 * (e.g. an exec stream that ended without its `exit` event).
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionLostError extends Schema.TaggedError<ConnectionLostError>("hf-sandbox/ConnectionLostError")(
  "ConnectionLostError",
  {
    operation: Schema.String,
    detail: Schema.String,
    cause: Schema.optional(Schema.Defect),
    /** The command's id in the sandbox (`e-N`), when the connection was lost during `exec`/`execStream`. @since 0.2.0 */
    commandId: Schema.optional(Schema.String),
    /** Whether that command was still running when last seen; absent when unknown. @since 0.2.0 */
    running: Schema.optional(Schema.Boolean),
    /** Its exit code once it ended (`null`: ended by a signal); absent when unknown. @since 0.2.0 */
    exitCode: Schema.optional(Schema.NullOr(Schema.Number)),
    /**
     * For a sandbox of a `SandboxPool`: the id of its host, when the connection was lost because that
     * host ended (its sandboxes ended with it; the pool replaces the host for later leases). @since 0.2.0
     */
    host: Schema.optional(Schema.String)
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  /**
   * The transport failed under `operation` (a refused or reset connection, a failed send): the
   * transport's error is the cause, its message the detail.
   *
   * @since 0.2.0
   */
  static fromTransport(operation: string, error: { readonly message: string }): ConnectionLostError {
    return new ConnectionLostError({ operation, detail: error.message, cause: error })
  }

  override get message() {
    if (this.commandId !== undefined) {
      const state =
        this.running === true
          ? "was still running"
          : this.running === false
            ? this.exitCode === undefined
              ? "had ended"
              : `had ended with ${this.exitCode === null ? "a signal" : `exit code ${this.exitCode}`}`
            : "is in an unknown state"
      return `Lost the connection to the sandbox during ${this.operation}: ${this.detail}. Command ${this.commandId} ${state} when last seen.`
    }
    return `Lost the connection to the sandbox during ${this.operation}: ${this.detail}. The sandbox may have been terminated or its server may have crashed.`
  }
}

/**
 * A client-side deadline passed (a request, or a stream that went silent past its idle bound).
 * A command's own `timeout` is not this error: it is reported in the result (`timedOut`).
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTimeoutError extends Schema.TaggedError<RequestTimeoutError>("hf-sandbox/RequestTimeoutError")(
  "RequestTimeoutError",
  {
    operation: Schema.String,
    timeoutMs: Schema.Number
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `${this.operation} got no answer from the sandbox within ${this.timeoutMs} ms.`
  }
}

/**
 * The sandbox was already terminated when the operation was called.
 *
 * @since 0.1.0
 * @category errors
 */
export class TerminatedError extends Schema.TaggedError<TerminatedError>("hf-sandbox/TerminatedError")(
  "TerminatedError",
  {
    sandboxId: Schema.String,
    operation: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return `Sandbox ${this.sandboxId} is terminated; ${this.operation} cannot run. Create a new sandbox.`
  }
}

/**
 * A process's stdin cannot be written: `NotPiped`, the process was not started with a writable stdin
 * (`spawn(cmd, { stdin: "pipe" })` or a Stream as `stdin`); `Closed`, its stdin is closed (by
 * `process.stdin.close()`, or because the process ended or stopped reading). `written` is how many bytes
 * reached the process's stdin before that.
 *
 * @since 0.2.0
 * @category errors
 */
export class StdinError extends Schema.TaggedError<StdinError>("hf-sandbox/StdinError")("StdinError", {
  id: Schema.String,
  reason: Schema.Literal("NotPiped", "Closed"),
  written: Schema.optional(Schema.Number)
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return this.reason === "NotPiped"
      ? `The stdin of process ${this.id} is not writable: start it with spawn(cmd, { stdin: "pipe" }) (or a Stream as stdin) to write to it later.`
      : `The stdin of process ${this.id} is closed${this.written === undefined ? "" : ` after ${this.written} bytes`}: it was closed with stdin.close(), or the process ended or stopped reading its input. Nothing more can be written.`
  }
}

/**
 * A port served in the sandbox could not be exposed or waited for. `NotDeclared`: the HF Jobs proxy
 * reaches only the ports declared when the sandbox was made (`ports`); `TunnelFailed`: the port's own
 * quick tunnel did not come up; `NotListening`: nothing listened on it in time (`waitForPort`), or the
 * process meant to serve it ended first. `tail` is the end of that process's output, when one was named.
 *
 * @since 0.2.0
 * @category errors
 */
export class PortError extends Schema.TaggedError<PortError>("hf-sandbox/PortError")("PortError", {
  port: Schema.Number,
  reason: Schema.Literal("NotDeclared", "TunnelFailed", "NotListening"),
  detail: Schema.String,
  tail: Schema.optional(Schema.String)
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    const tail = this.tail ? `\nLast output of the process:\n${this.tail}` : ""
    if (this.reason === "NotDeclared") {
      return `Port ${this.port} is not reachable through the HF Jobs proxy: ${this.detail}. Make the sandbox with ports: [${this.port}], or expose it with { via: "server" } to go through the sandbox server with its token.`
    }
    if (this.reason === "TunnelFailed") {
      return `The quick tunnel for port ${this.port} did not come up: ${this.detail}. Try again (a new one is started), or expose it with { via: "server" }.`
    }
    return `Nothing listened on port ${this.port} in the sandbox: ${this.detail}. Check that the server listens on 127.0.0.1 or 0.0.0.0 at that port.${tail}`
  }
}

/**
 * A process's output never matched what `waitForOutput` waited for: the wait timed out (`Timeout`), or
 * the process ended first (`Exited`). `tail` is the end of its output.
 *
 * @since 0.2.0
 * @category errors
 */
export class OutputWaitError extends Schema.TaggedError<OutputWaitError>("hf-sandbox/OutputWaitError")(
  "OutputWaitError",
  {
    id: Schema.String,
    pattern: Schema.String,
    reason: Schema.Literal("Timeout", "Exited"),
    detail: Schema.String,
    tail: Schema.String
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    const tail = this.tail === "" ? " It printed nothing." : `\nLast output:\n${this.tail}`
    return this.reason === "Timeout"
      ? `Process ${this.id} printed nothing matching ${this.pattern} within ${this.detail}.${tail}`
      : `Process ${this.id} ended (${this.detail}) without printing anything matching ${this.pattern}.${tail}`
  }
}

/**
 * A sandbox cannot be reached over SSH: `NotEnabled`, it was made without `ssh: true` (SSH is switched on
 * when the job is created, never later); `NotSupported`, its provider has no SSH (the local provider: run
 * commands with `exec`, or a shell on this machine).
 *
 * @since 0.2.0
 * @category errors
 */
export class SshError extends Schema.TaggedError<SshError>("hf-sandbox/SshError")("SshError", {
  id: Schema.String,
  provider: Schema.String,
  reason: Schema.Literal("NotEnabled", "NotSupported")
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    return this.reason === "NotEnabled"
      ? `Sandbox ${this.id} accepts no SSH: SSH is switched on when the sandbox is made, with Sandbox.make({ ssh: true }).`
      : `Sandbox ${this.id} runs on the ${this.provider} provider, which has no SSH: run commands with exec, or use a shell on this machine.`
  }
}

/**
 * A transfer between the sandbox and the Hub (`files.fromHub`, `files.toHub`) failed inside the sandbox:
 * `Unauthorized` (401/403: the token lacks access to the repo, or none was given), `NotFound` (404: no
 * such repo, revision or path), `TooLarge` (an LFS object the Hub refuses in its batch answer, 413/422, e.g. above its file size limit),
 * `Unreachable` (the sandbox could not reach the Hub, or a download was cut more often than it
 * retries), `HubError` (another answer of the Hub, after bounded retries of 5xx and 429), `Failed` (the
 * transfer itself, e.g. a full disk), or `Unsupported` (the sandbox lacks what the transfer needs: a
 * bucket transfer needs the image's `hf` CLI, `huggingface_hub` 1.5.0 or later). The token never appears
 * in it.
 *
 * @since 0.2.0
 * @category errors
 */
export class HubTransferError extends Schema.TaggedError<HubTransferError>("hf-sandbox/HubTransferError")(
  "HubTransferError",
  {
    operation: Schema.String,
    repo: Schema.String,
    reason: Schema.Literal("Unauthorized", "NotFound", "TooLarge", "Unreachable", "HubError", "Failed", "Unsupported"),
    status: Schema.optional(Schema.Number),
    detail: Schema.String,
    /** The surface the error is said on, as {@link HubError}'s `surface` (@since 0.2.0). */
    surface: Schema.optional(Schema.Literal("cli", "promise"))
  }
) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    const hint =
      this.reason === "Unauthorized"
        ? ` Pass a token that can read (or write) this repo: ${EFFECT.transferToken}.`
        : this.reason === "NotFound"
          ? " Check the repo id, its type (`repoType`), the revision and the path."
          : this.reason === "TooLarge"
            ? " The Hub takes files of up to 500 GB and recommends chunks under 200 GB: split the file (e.g. into shards) and upload the parts."
            : this.reason === "Unsupported"
              ? " Install it in the sandbox's image: `pip install -U huggingface_hub` (it provides `hf`)."
              : ""
    return inTerms(`${this.operation} of ${this.repo} failed in the sandbox: ${this.detail}.${hint}`, this.surface)
  }
}

/**
 * A `SandboxPool` could not do what was asked: `InvalidOptions`, an option of `SandboxPool.layer` or
 * `SandboxPool.make` is wrong (`option` names it, `detail` says why, before anything starts);
 * `AcquireTimeout`, no slot came free within the pool's `acquireTimeout` (every host is full and the pool
 * may boot no more: raise `maxHosts` or `sandboxesPerHost`, lower the concurrency, or wait longer);
 * `HostFailed`, the host a lease was meant for did not start or refused to make the sandbox (`host`
 * names it when it has an id; `cause` is its error); `HostLost`, the host ended while the lease was
 * being made (`host` names it). A leased sandbox whose host ends fails its operations with
 * `ConnectionLostError` whose `host` names that host.
 *
 * @since 0.2.0
 * @category errors
 */
export class PoolError extends Schema.TaggedError<PoolError>("hf-sandbox/PoolError")("PoolError", {
  pool: Schema.String,
  reason: Schema.Literal("InvalidOptions", "AcquireTimeout", "HostFailed", "HostLost"),
  detail: Schema.String,
  option: Schema.optional(Schema.String),
  host: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  /** @since 0.2.0 */
  get [TypeId](): TypeId {
    return TypeId
  }

  override get message() {
    const where = this.host === undefined ? "" : ` (host ${this.host})`
    const what = this.option === undefined ? "" : `${this.option}: `
    return `Sandbox pool ${this.pool}${where} (${this.reason}): ${what}${this.detail}`
  }
}

/**
 * The union of every sandbox error, as a Schema (to encode or decode errors) ...
 *
 * @since 0.1.0
 * @category errors
 */
export const SandboxError = Schema.Union(
  StartError,
  HubError,
  AuthError,
  FileNotFoundError,
  IsDirectoryError,
  FileExistsError,
  BadRequestError,
  ServerError,
  ResourceLimitError,
  LocalFileError,
  InvalidArgumentError,
  ProcessNotFoundError,
  CommandNotFoundError,
  ConnectionLostError,
  RequestTimeoutError,
  TerminatedError,
  StdinError,
  PortError,
  OutputWaitError,
  SshError,
  HubTransferError,
  PoolError
)

/**
 * ... and as a type.
 *
 * @since 0.1.0
 * @category errors
 */
export type SandboxError = typeof SandboxError.Type

/**
 * Errors that operations on a running sandbox can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type OperationError =
  | AuthError
  | FileNotFoundError
  | IsDirectoryError
  | FileExistsError
  | BadRequestError
  | ServerError
  | ResourceLimitError
  | LocalFileError
  | InvalidArgumentError
  | ProcessNotFoundError
  | CommandNotFoundError
  | ConnectionLostError
  | RequestTimeoutError
  | TerminatedError
  | StdinError
  | PortError
  | OutputWaitError
  | HubTransferError
