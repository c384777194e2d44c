/**
 * A sandbox: a throw-away machine with a server inside, reached over HTTP. Its life is a scoped
 * resource — `make` needs a `Scope`, and closing the scope terminates the sandbox, whether the
 * program succeeded, failed or was interrupted.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const sb = yield* Sandbox.make({ image: "python:3.12" })
 *   const r = yield* sb.exec(["python3", "-c", "print(1+1)"])   // { exitCode: 0, stdout: "2\n", ... }
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */

import { randomBytes } from "node:crypto"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Files } from "./Files.js"
import * as FilesApi from "./internal/files/files.js"
import * as Cloudflared from "./internal/hfJobs/cloudflared.js"
import * as Signals from "./internal/signals.js"
import * as StartErrors from "./internal/startError.js"
import * as Validate from "./internal/validate.js"
import * as Wire from "./internal/wire/client.js"
import * as Reattach from "./internal/wire/reattach.js"
import * as Stdin from "./internal/wire/stdin.js"
import type * as Protocol from "./Protocol.js"
import {
  AuthError,
  BadRequestError,
  type HubError,
  type InvalidArgumentError,
  type OperationError,
  ProcessNotFoundError,
  RequestTimeoutError,
  StartError,
  TerminatedError
} from "./SandboxError.js"
import * as SandboxProvider from "./SandboxProvider.js"
import * as Schedules from "./Schedules.js"
import * as Telemetry from "./Telemetry.js"

/**
 * Options of {@link make}. Provider-specific options live on the provider's layer.
 *
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  /** Docker image the sandbox runs (`hf.co/spaces/…` too). Ignored by the local provider. Default `python:3.12`. */
  readonly image?: string | undefined
  /**
   * Environment of every command in the sandbox. Names must be portable (`[A-Za-z_][A-Za-z0-9_]*`) and
   * values free of NUL; anything else fails with `StartError("InvalidOptions")` rather than vanish.
   */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Default working directory of commands (relative paths resolve against the sandbox's home). */
  readonly cwd?: string | undefined
  /**
   * The sandbox stops itself after this long with no request in flight. Default: never on the local
   * provider, 10 minutes on HF Jobs and for every `detach`ed sandbox. `Duration.infinity` (or
   * `"Infinity"`): never. Zero or less fails with `StartError("InvalidOptions")`.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * Leave the sandbox running after its scope closes: once `make` has succeeded, closing the scope only
   * detaches (a failed or interrupted start still stops it). Reattach with `connect(id)`; stop it with
   * `terminate`, the provider's `kill`, or let its `idleTimeout` (default 10 minutes here) and, on HF
   * Jobs, its `timeout` end it. This is what `hf-sandbox create` uses. Default false.
   */
  readonly detach?: boolean | undefined
  /**
   * How long starting may take before it fails with `StartError("Timeout")` (and the job is cancelled).
   * Default 3 minutes, 2 with the `"proxy"` transport.
   */
  readonly startTimeout?: Duration.DurationInput | undefined
  /** Hardware to run on (HF Jobs flavor, e.g. `cpu-basic`, `a10g-small`). Default `cpu-basic`. */
  readonly flavor?: string | undefined
  /**
   * Hard limit on the sandbox's life, enforced even if this process dies and whatever runs in it: the HF
   * job's timeout (default 1 hour), or the local server's own lifetime (default none). A Duration or a
   * string like `"30m"`, `"2h"`, `"90s"`.
   */
  readonly timeout?: Duration.DurationInput | string | undefined
  /** Secret environment variables. On HF Jobs they travel as encrypted job secrets, never as plain env. */
  readonly secrets?: Readonly<Record<string, Redacted.Redacted<string> | string>> | undefined
  /** Give the sandbox your HF token as the `HF_TOKEN` secret. Default false. */
  readonly forwardHfToken?: boolean | undefined
  /** Extra labels on the job (for your own bookkeeping and `list` filters). */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** The user or organization the job runs under. Default: the token's user. */
  readonly namespace?: string | undefined
  /**
   * How the client reaches a remote sandbox: `"tunnel"` (a Cloudflare quick tunnel found in the job's
   * logs; default) or `"proxy"` (the HF Jobs proxy, authenticated with your HF token).
   */
  readonly transport?: "tunnel" | "proxy" | undefined
  /**
   * Overrides of the pinned cloudflared the tunnel transport downloads when the image has none (or has one
   * older than 2026.5.0, the first release with every flag the server passes). `version` must be a release
   * tag of 2026.5.0 or newer, and needs its `sha256` unless it is the pinned one; checked before any job exists.
   */
  readonly cloudflared?:
    | {
        readonly version?: string | undefined
        readonly sha256?: string | undefined
        readonly baseUrl?: string | undefined
      }
    | undefined
  /** Replaces the schedules this sandbox waits on (see the `Schedules` module). */
  readonly schedules?: Schedules.Overrides | undefined
  /** Transport bounds: a plain request (default 60 s) and a silent stream (default 70 s). */
  readonly timeouts?:
    | {
        readonly request?: Duration.DurationInput | undefined
        readonly streamIdle?: Duration.DurationInput | undefined
      }
    | undefined
}

/**
 * Options of {@link Sandbox.exec}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecOptions<E = never> {
  /** Working directory (default: the sandbox's `cwd`, else its home). */
  readonly cwd?: string | undefined
  /** Added to the sandbox's environment for this command (names as in `MakeOptions.env`, else `InvalidArgumentError`). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * Written to the command's stdin, which is then closed. Without it stdin is `/dev/null`. A string or
   * bytes up to 1 MiB go in the request itself; larger ones, and a `Stream` (@since 0.2.0) of any size,
   * are streamed through the command's stdin pipe in requests of a few MiB, read only as fast as the
   * command takes them, and resent from where the sandbox got to after a dropped connection. If the
   * stream fails, the command is killed and the operation fails with the stream's error `E`. If the
   * command stops reading (it exits, or closes its stdin), the rest of the stream is not read.
   */
  readonly stdin?: string | Uint8Array | Stream.Stream<Uint8Array, E> | undefined
  /**
   * The server kills the command's whole process group after this long; the result says `timedOut`.
   * Must be longer than zero (else `InvalidArgumentError`); it is rounded up to a whole millisecond.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Captured output is cut after this many bytes per stream (default 64 MiB); the result says `truncated`.
   * A whole number ≥ 1; anything else fails with `InvalidArgumentError`.
   */
  readonly maxOutputBytes?: number | undefined
  /**
   * Names this command for the sandbox: a second `exec`/`execStream`/`spawn` with the same key (while
   * the sandbox still remembers it, 5 minutes after it ends by default) does not run it again but
   * reattaches to it (`exec`: its output from the start and its exit; `spawn`: the same process). With
   * another command, env, cwd or stdin it fails with `BadRequestError` (409 `idempotency_conflict`).
   * 1 to 128 of `A-Z a-z 0-9 . _ : -`, else `InvalidArgumentError`. Without it, every exec and spawn
   * still gets a random key of its own, so that a retry after a lost connection never runs the command
   * twice. A call interrupted (or out of retries) before the command's id arrived cancels by its key:
   * the command is killed if it started, and a later request with that key fails with 409
   * `idempotency_cancelled`.
   *
   * @since 0.2.0
   */
  readonly idempotencyKey?: string | undefined
}

/**
 * What a finished command did. A non-zero exit is a result, not an error.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecResult {
  /** Exit status, or `null` when a signal ended the command. */
  readonly exitCode: number | null
  /** The signal that ended the command (9 after a timeout), or `null`. */
  readonly signal: number | null
  /** Whether the command's `timeout` ran out (the process group was killed). */
  readonly timedOut: boolean
  /**
   * The command's stdout as UTF-8 text. Bytes that are not valid UTF-8 are replaced by U+FFFD: for
   * binary output, or to see exactly what was written, use `stdoutBytes`.
   */
  readonly stdout: string
  /** The command's stderr as UTF-8 text (invalid UTF-8 replaced by U+FFFD, as `stdout`). */
  readonly stderr: string
  /** The raw bytes of stdout, exactly as the command wrote them (up to `maxOutputBytes`). @since 0.2.0 */
  readonly stdoutBytes: Uint8Array
  /** The raw bytes of stderr, exactly as the command wrote them (up to `maxOutputBytes`). @since 0.2.0 */
  readonly stderrBytes: Uint8Array
  /** Whether `stdout` or `stderr` was cut at `maxOutputBytes`. */
  readonly truncated: boolean
  readonly durationMs: number
}

/**
 * One event of {@link Sandbox.execStream}: the process started, a chunk of output (raw bytes; `text`
 * decodes that chunk alone), or its exit, which is always last.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecEvent =
  | { readonly _tag: "Start"; readonly pid: number }
  | OutputEvent
  | {
      readonly _tag: "Exit"
      readonly exitCode: number | null
      readonly signal: number | null
      readonly timedOut: boolean
      readonly durationMs: number
    }

/**
 * A chunk of a command's stdout or stderr.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputEvent {
  readonly _tag: "Stdout" | "Stderr"
  readonly data: Uint8Array
  /**
   * The chunk as UTF-8. A character split across two chunks decodes as U+FFFD here: for exact text of
   * a whole stream, decode the `data` with `Stream.decodeText`, or use `exec`.
   */
  readonly text: string
}

const outputEvent = (stream: "stdout" | "stderr", data: Uint8Array): OutputEvent => ({
  _tag: stream === "stdout" ? "Stdout" : "Stderr",
  data,
  get text() {
    return decoder.decode(data)
  }
})

/**
 * How a process ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessExit {
  readonly exitCode: number | null
  readonly signal: number | null
  readonly timedOut: boolean
  readonly durationMs: number
}

/**
 * Options of {@link Sandbox.spawn}.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpawnOptions<E = never> extends Omit<ExecOptions<E>, "maxOutputBytes" | "stdin"> {
  /**
   * As for `exec`; with a `Stream`, the process's `wait` fails with the stream's error `E` (and the
   * process is killed) if the stream fails. `"pipe"` (@since 0.2.0): stdin stays open for
   * `process.stdin.write` until `process.stdin.close()`.
   */
  readonly stdin?: string | Uint8Array | Stream.Stream<Uint8Array, E> | "pipe" | undefined
  /** A free label, shown in `processes`. */
  readonly tag?: string | undefined
  /**
   * How much recent output the sandbox keeps per stream for late readers, in bytes from 1 to 64 MiB
   * (another value is an `InvalidArgumentError`). Default 1 MiB.
   */
  readonly bufferBytes?: number | undefined
}

/**
 * A process running in the background of a sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface Process<E = never> {
  /** Opaque id, like `p-3`. */
  readonly id: string
  /** The OS pid inside the sandbox (for information). */
  readonly pid: number
  /** Waits until the process ends; fails with `E` when the Stream given as its stdin failed. */
  readonly wait: Effect.Effect<ProcessExit, OperationError | E>
  /**
   * The process's stdin, writable when it was started with `stdin: "pipe"` (else writes fail with
   * `StdinError("NotPiped")`). @since 0.2.0
   */
  readonly stdin: ProcessStdin
  /** Signals the process's whole group (default SIGKILL); false when it had already exited. */
  readonly kill: (
    signal?: "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP" | number
  ) => Effect.Effect<boolean, OperationError>
  /**
   * Its output: what the sandbox still holds (the last `bufferBytes` per stream), then, with `follow`,
   * live output until it exits. Ends with `Exit` once the process has ended.
   */
  readonly output: (options?: { readonly follow?: boolean | undefined }) => Stream.Stream<ExecEvent, OperationError>
}

/**
 * The stdin of a background process started with `stdin: "pipe"`. Writes go in order, each complete (in
 * requests of a few MiB) before it succeeds; one writer at a time per process is expected.
 *
 * @since 0.2.0
 * @category models
 */
export interface ProcessStdin {
  /**
   * Writes the bytes (a string as UTF-8) to the process's stdin; succeeds once all are in its pipe (a
   * process that does not read makes it wait). Fails with `StdinError("Closed")` once stdin is closed or
   * the process ended, and `StdinError("NotPiped")` when the process was not started with a pipe.
   */
  readonly write: (data: string | Uint8Array) => Effect.Effect<void, OperationError>
  /** Closes the process's stdin: it reads end of input. Closing twice is fine. */
  readonly close: () => Effect.Effect<void, OperationError>
}

/**
 * A background process as `processes` lists it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessInfo {
  readonly id: string
  readonly pid: number
  readonly tag: string | undefined
  readonly startedAtMs: number
  readonly running: boolean
  readonly exitCode: number | null
  readonly signal: number | null
}

// The files API and its entries, defined in the `Files` module.
export type {
  /**
   * A file-system entry, defined in the `Files` module.
   *
   * @since 0.1.0
   * @category models
   */
  FileInfo,
  /**
   * The files API of a sandbox (`sb.files`), defined in the `Files` module.
   *
   * @since 0.1.0
   * @category models
   */
  Files,
  /**
   * Options of the transfers, defined in the `Files` module.
   *
   * @since 0.1.0
   * @category models
   */
  TransferOptions,
  /**
   * How far a transfer has got, defined in the `Files` module.
   *
   * @since 0.1.0
   * @category models
   */
  TransferProgress
} from "./Files.js"

/**
 * A running sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sandbox {
  /** Unique id (an HF job id, or `local-…`). */
  readonly id: string
  /** The provider that runs it, e.g. `"local"`. */
  readonly provider: string
  /** Provider facts for diagnostics (never secrets). */
  readonly details: Readonly<Record<string, unknown>>
  /** Runs a command to completion. A string runs through `/bin/sh -c`; an argv list is exec'd directly. */
  readonly exec: <E = never>(
    command: string | ReadonlyArray<string>,
    options?: ExecOptions<E>
  ) => Effect.Effect<ExecResult, OperationError | E>
  /**
   * Runs a command and streams what it does: `Start`, output chunks as raw bytes, then `Exit`. The stream
   * follows the consumer's pace (nothing is buffered without bound), and ending it early (e.g.
   * `Stream.take`) or interrupting it kills the remote command's whole process group.
   */
  readonly execStream: <E = never>(
    command: string | ReadonlyArray<string>,
    options?: Omit<ExecOptions<E>, "maxOutputBytes">
  ) => Stream.Stream<ExecEvent, OperationError | E>
  /** Starts a command in the background and returns at once. It dies with the sandbox at the latest. */
  readonly spawn: <E = never>(
    command: string | ReadonlyArray<string>,
    options?: SpawnOptions<E>
  ) => Effect.Effect<Process<E>, OperationError>
  /** {@link spawn}, killed (its whole group) when the scope closes. */
  readonly spawnScoped: <E = never>(
    command: string | ReadonlyArray<string>,
    options?: SpawnOptions<E>
  ) => Effect.Effect<Process<E>, OperationError, Scope.Scope>
  /** The background processes, running and exited. */
  readonly processes: Effect.Effect<ReadonlyArray<ProcessInfo>, OperationError>
  /**
   * A handle on a background process by its id (`p-3`) or OS pid, e.g. one started by another client of
   * the same sandbox. Fails with `ProcessNotFoundError` when the sandbox has no such process.
   */
  readonly process: (idOrPid: string | number) => Effect.Effect<Process, OperationError>
  readonly files: Files
  /**
   * The sandbox's log: the server's and the platform's output, replayed from the start; with
   * `follow`, it continues until the sandbox ends.
   */
  readonly logs: (options?: SandboxProvider.LogOptions) => Stream.Stream<string, OperationError | HubError>
  /** Stops the sandbox now. Idempotent; the scope's release does the same. */
  readonly terminate: Effect.Effect<void>
}

/**
 * The current sandbox as a service, provided by {@link layer}.
 *
 * @since 0.1.0
 * @category tags
 */
export const Sandbox: Context.Tag<Sandbox, Sandbox> = Context.GenericTag<Sandbox>("hf-sandbox/Sandbox")

const DEFAULT_IMAGE = "python:3.12"
/** The backstop that ends a detached sandbox nobody talks to any more. */
const DETACHED_IDLE_TIMEOUT = Duration.minutes(10)

const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** Collects one stream's bytes up to a cap; the text is decoded once, whole. */
const makeCapture = (limit: number) => {
  const parts: Array<Uint8Array> = []
  let bytes = 0
  let truncated = false
  let whole: Uint8Array | undefined
  return {
    push(data: Uint8Array) {
      if (truncated) return
      const room = limit - bytes
      parts.push(data.length <= room ? data : data.subarray(0, room))
      bytes += Math.min(data.length, room)
      truncated = data.length > room
    },
    bytes: () => {
      if (whole === undefined) {
        // One copy: Buffer.concat's result wrapped in a Uint8Array would be copied a second time.
        whole = new Uint8Array(bytes)
        let at = 0
        for (const part of parts) {
          whole.set(part, at)
          at += part.length
        }
      }
      return whole
    },
    // A cut in the middle of a character leaves U+FFFD at the end: dropped, the cap is in bytes.
    text() {
      const text = decoder.decode(this.bytes())
      return truncated ? text.replace(/\uFFFD$/, "") : text
    },
    get truncated() {
      return truncated
    }
  }
}

/** `Duration.infinity` asks for no idle timeout, which providers receive as zero (their "never"). */
const idleTimeoutOf = (input: Duration.DurationInput): Duration.Duration => {
  const decoded = Validate.duration("idleTimeout", input)
  if (Duration.toMillis(decoded) <= 0) {
    throw new Validate.Invalid(
      "idleTimeout",
      `${typeof input === "string" ? JSON.stringify(input) : String(input)} must be longer than zero (Duration.infinity, or "Infinity": no idle timeout)`
    )
  }
  return Duration.isFinite(decoded) ? decoded : Duration.zero
}

const specOf = (options: MakeOptions): SandboxProvider.Spec => {
  const transport = options.transport ?? "tunnel"
  Validate.env("env", options.env)
  return {
    image: options.image ?? DEFAULT_IMAGE,
    env: options.env ?? {},
    idleTimeout:
      options.idleTimeout !== undefined
        ? idleTimeoutOf(options.idleTimeout)
        : options.detach
          ? DETACHED_IDLE_TIMEOUT
          : undefined,
    detach: options.detach ?? false,
    startTimeout: Validate.positiveDuration(
      "startTimeout",
      options.startTimeout ?? (transport === "proxy" ? "2 minutes" : "3 minutes")
    ),
    secrets: Object.fromEntries(
      Object.entries(options.secrets ?? {}).map(([k, v]) => [k, Redacted.isRedacted(v) ? v : Redacted.make(v)])
    ),
    flavor: options.flavor,
    lifetime: options.timeout === undefined ? undefined : Validate.positiveDuration("timeout", options.timeout, true),
    forwardHfToken: options.forwardHfToken ?? false,
    labels: options.labels ?? {},
    namespace: options.namespace,
    transport,
    cloudflared: Cloudflared.check(options.cloudflared ?? {}),
    schedules: {
      logReconnect: options.schedules?.logReconnect ?? Schedules.logReconnect,
      stageCheck: options.schedules?.stageCheck ?? Schedules.stageCheck,
      hubRetry: options.schedules?.hubRetry ?? Schedules.hubRetry,
      cancelRetry: options.schedules?.cancelRetry ?? Schedules.cancelRetry,
      logQuietWindow: Validate.duration(
        "schedules.logQuietWindow",
        options.schedules?.logQuietWindow ?? Schedules.logQuietWindow
      ),
      logFirstByte: Validate.duration(
        "schedules.logFirstByte",
        options.schedules?.logFirstByte ?? Schedules.logFirstByte
      ),
      logStall: Validate.duration("schedules.logStall", options.schedules?.logStall ?? Schedules.logStall)
    }
  }
}

/** Span attributes of a command: its shape, never its text. */
const commandAttributes = (
  command: string | ReadonlyArray<string>,
  options: Omit<ExecOptions<unknown>, "stdin"> & { readonly stdin?: unknown }
): Record<string, unknown> => ({
  ...(typeof command === "string" ? { "exec.shell": true } : { "exec.shell": false, "exec.argc": command.length }),
  ...(options.timeout !== undefined ? timeoutAttribute(options.timeout) : {}),
  ...(typeof options.stdin === "string"
    ? { "exec.stdin_bytes": Buffer.byteLength(options.stdin) }
    : options.stdin instanceof Uint8Array
      ? { "exec.stdin_bytes": options.stdin.length }
      : options.stdin !== undefined
        ? { "exec.stdin_streamed": true }
        : {})
})

/** A bad timeout is reported by the call itself (InvalidArgumentError); the span just leaves it out. */
const timeoutAttribute = (timeout: Duration.DurationInput): Record<string, unknown> => {
  try {
    return { "exec.timeout_ms": Validate.commandTimeoutMs("timeout", timeout) }
  } catch {
    return {}
  }
}

/** Span attributes of how a command ended. */
const exitAttributes = (exit: ProcessExit): Record<string, unknown> => ({
  ...(exit.exitCode !== null ? { "exec.exit_code": exit.exitCode } : {}),
  ...(exit.signal !== null ? { "exec.signal": exit.signal } : {}),
  "exec.timed_out": exit.timedOut,
  "exec.duration_ms": exit.durationMs
})

/** A telemetry event is bounded again here, whatever the service does: it never holds a sandbox up. */
const TELEMETRY_BOUND = Duration.seconds(1)

/**
 * Reports a made sandbox to the telemetry: `create` now, `terminate` when its scope closes (before
 * the teardown, so that the report is on its way while the provider stops the sandbox).
 */
const reportUsage = (
  telemetry: Telemetry.Service,
  scope: Scope.Scope,
  spec: SandboxProvider.Spec,
  endpoint: SandboxProvider.Endpoint,
  startedAt: number,
  byUser: () => boolean
) =>
  Effect.gen(function* () {
    const send = (event: Telemetry.Event) =>
      Effect.interruptible(telemetry.send(event)).pipe(
        Effect.timeout(TELEMETRY_BOUND),
        Effect.catchAllCause(() => Effect.void)
      )
    const sessionId = randomBytes(16).toString("hex")
    const signal = yield* Scope.extend(Signals.watch, scope)
    yield* Scope.addFinalizerExit(scope, (exit) =>
      // A detached sandbox lives on when its scope closes: it ends only if `terminate` was called.
      spec.detach && !byUser()
        ? Effect.void
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            send({
              _tag: "Terminate",
              sessionId,
              durationS: Math.max(0, Math.round((now - startedAt) / 100) / 10),
              reason:
                signal() !== undefined
                  ? "signal"
                  : byUser()
                    ? "user"
                    : Exit.isSuccess(exit)
                      ? "scope"
                      : Cause.isInterruptedOnly(exit.cause)
                        ? "interruption"
                        : "failure"
            })
          )
    )
    yield* send({
      _tag: "Create",
      sessionId,
      flavor:
        endpoint.provider === "local"
          ? "local"
          : typeof endpoint.details.flavor === "string"
            ? endpoint.details.flavor
            : (spec.flavor ?? "default"),
      timeoutS: spec.lifetime === undefined ? null : Math.ceil(Duration.toSeconds(spec.lifetime)),
      forwardHfToken: spec.forwardHfToken
    })
  }).pipe(Effect.uninterruptible)

/** Opens a sandbox from the endpoint `acquire` gives, waits until it answers, and builds its API. */
const open = (
  operation: "make" | "connect",
  options: MakeOptions,
  acquire: (
    provider: SandboxProvider.Service,
    spec: SandboxProvider.Spec
  ) => Effect.Effect<SandboxProvider.Endpoint, StartError, Scope.Scope>,
  spanAttributes: Record<string, unknown> = {}
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    const startedAt = yield* Clock.currentTimeMillis
    const provider = yield* SandboxProvider.SandboxProvider
    yield* Effect.annotateCurrentSpan("sandbox.provider", provider.name)
    // Usage is reported for sandboxes made here, not for ones a `connect` only attaches to.
    const telemetry = operation === "make" ? yield* Telemetry.Telemetry : Telemetry.disabled
    const { spec, timeouts } = yield* Effect.try({
      try: () => ({
        spec: specOf(options),
        timeouts: {
          request: Validate.positiveDuration(
            "timeouts.request",
            options.timeouts?.request ?? Wire.defaultTimeouts.request
          ),
          streamIdle: Validate.positiveDuration(
            "timeouts.streamIdle",
            options.timeouts?.streamIdle ?? Wire.defaultTimeouts.streamIdle
          )
        }
      }),
      catch: (cause) =>
        new StartError({
          provider: provider.name,
          reason: "InvalidOptions",
          detail: `invalid sandbox options: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    const startTimeout = spec.startTimeout
    // The sandbox gets a scope of its own, so that a failed start is released at once instead of
    // when the caller's (possibly long-lived) scope closes, and so that `terminate` can close it early.
    // A detached sandbox's scope is closed with success whatever the caller's exit: the provider then
    // only detaches (a failed start closes it with the failure below, which stops the sandbox).
    const parent = yield* Effect.scope
    const scope = spec.detach
      ? yield* Effect.tap(Scope.make(ExecutionStrategy.sequential), (child) =>
          Scope.addFinalizer(parent, Scope.close(child, Exit.void))
        )
      : yield* Scope.fork(parent, ExecutionStrategy.sequential)

    const started = Effect.gen(function* () {
      const endpoint = yield* acquire(provider, spec)
      const wire = yield* Wire.make(endpoint, timeouts)
      const ready = wire.health.pipe(
        // Only a server that knows this sandbox's token reports its version. One that answers without it
        // refuses our token (or is not ours): an authenticated call says which, in one more round trip,
        // and is final — waiting for a server to change its mind about a token would use up startTimeout.
        Effect.filterOrElse(
          (health) => health.version !== undefined,
          () => Effect.flatMap(wire.processes, () => Effect.fail(new AuthError({ operation: "health", status: 200 })))
        ),
        Effect.timeoutFail({
          duration: Schedules.healthProbeTimeout,
          onTimeout: () =>
            new RequestTimeoutError({ operation: "health", timeoutMs: Duration.toMillis(Schedules.healthProbeTimeout) })
        }),
        Effect.retry({
          schedule: options.schedules?.healthPoll ?? Schedules.healthPoll,
          while: (error) => error._tag !== "AuthError"
        }),
        Effect.mapError(
          (cause) =>
            new StartError({
              provider: provider.name,
              reason: cause._tag === "AuthError" ? "Unauthorized" : "NotReady",
              detail: cause.message,
              cause
            })
        )
      )
      yield* Effect.raceFirst(ready, endpoint.died)
      return { endpoint, wire }
    }).pipe(
      Effect.timeoutFail({
        duration: startTimeout,
        onTimeout: () =>
          new StartError({
            provider: provider.name,
            reason: "Timeout",
            detail: `the sandbox was not ready within ${Duration.format(startTimeout)} (startTimeout)`
          })
      }),
      Scope.extend(scope),
      Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)),
      // A failed `connect` started nothing: its message says the attach failed.
      Effect.mapError((error) =>
        operation === "connect"
          ? StartErrors.during(`attach to sandbox ${String(spanAttributes["sandbox.id"])}`, error)
          : error
      )
    )
    const { endpoint, wire } = yield* started

    // Every span of this sandbox says which one it is; never a secret, a command or a path.
    const attributes: Record<string, unknown> = {
      "sandbox.id": endpoint.id,
      "sandbox.provider": endpoint.provider,
      ...(typeof endpoint.details.transport === "string" ? { "sandbox.transport": endpoint.details.transport } : {})
    }
    yield* Effect.annotateCurrentSpan(attributes)

    let terminatedByUser = false
    if (telemetry.enabled) {
      yield* reportUsage(telemetry, scope, spec, endpoint, startedAt, () => terminatedByUser)
    }

    const fileSystem = yield* Effect.serviceOption(FileSystem.FileSystem)

    let terminated = false
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        terminated = true
      })
    )
    /** Fails at once when the sandbox is terminated. */
    const alive = <A, E, R>(
      operation: string,
      effect: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | TerminatedError, R> =>
      Effect.suspend(
        (): Effect.Effect<A, E | TerminatedError, R> =>
          terminated ? Effect.fail(new TerminatedError({ sandboxId: endpoint.id, operation })) : effect
      )
    const guard = <A, E, R>(
      operation: string,
      effect: Effect.Effect<A, E, R>,
      extra: Record<string, unknown> = {}
    ): Effect.Effect<A, E | TerminatedError, R> =>
      alive(operation, effect).pipe(
        Effect.withSpan(`Sandbox.${operation}`, { attributes: { ...attributes, ...extra } })
      )
    /** {@link guard} for a stream: the span lasts as long as the stream runs. */
    const guardStream = <A, E, R>(
      operation: string,
      stream: Stream.Stream<A, E, R>,
      extra: Record<string, unknown> = {}
    ): Stream.Stream<A, E | TerminatedError, R> =>
      Stream.unwrap(alive(operation, Effect.succeed(stream))).pipe(
        Stream.withSpan(`Sandbox.${operation}`, { attributes: { ...attributes, ...extra } })
      )

    /** The request of a command; bad options fail here, naming the option, before anything is sent. */
    const execRequest = (
      operation: string,
      command: string | ReadonlyArray<string>,
      execOptions: Omit<ExecOptions<unknown>, "stdin">,
      stdin: Stdin.Plan<unknown> = Stdin.plan(undefined)
    ): Effect.Effect<Protocol.ExecRequest, InvalidArgumentError> =>
      Validate.check(operation, () => buildExecRequest(command, execOptions, stdin))
    const buildExecRequest = (
      command: string | ReadonlyArray<string>,
      execOptions: Omit<ExecOptions<unknown>, "stdin">,
      stdin: Stdin.Plan<unknown>
    ): Protocol.ExecRequest => {
      const env = execOptions.env
      Validate.env("env", env)
      const cwd = execOptions.cwd ?? options.cwd
      const idempotencyKey = Validate.idempotencyKey("idempotencyKey", execOptions.idempotencyKey)
      return {
        cmd: typeof command === "string" ? command : [...command],
        ...(env ? { env: { ...env } } : {}),
        ...(cwd !== undefined ? { cwd } : {}),
        ...(execOptions.timeout !== undefined
          ? { timeout: Validate.commandTimeoutMs("timeout", execOptions.timeout) / 1000 }
          : {}),
        ...stdin.inline,
        ...(stdin.source !== undefined ? { stdin_pipe: true } : {}),
        ...(idempotencyKey !== undefined ? { idempotency_key: idempotencyKey } : {})
      }
    }

    const reattachSchedule = options.schedules?.reattach ?? Schedules.reattach

    const stdinRetry = options.schedules?.stdinRetry ?? Schedules.stdinRetry
    /**
     * A command's wire events, with its stdin fed from `source` once its start event names it; if the
     * source fails, the command is killed and the events fail with the source's error.
     */
    const feedingStdin = <E>(
      operation: string,
      wireEvents: Stream.Stream<Reattach.CommandEvent, OperationError>,
      source: Stream.Stream<Uint8Array, E> | undefined
    ): Stream.Stream<Reattach.CommandEvent, OperationError | E> =>
      source === undefined
        ? wireEvents
        : Stream.unwrapScoped(
            Effect.gen(function* () {
              const failed = yield* Deferred.make<void, OperationError | E>()
              const scope = yield* Effect.scope
              const start = (id: string | undefined) =>
                id === undefined
                  ? Effect.fail(
                      new BadRequestError({
                        operation,
                        status: 501,
                        code: "stdin_pipe_unsupported",
                        detail:
                          "this sandbox's server cannot stream stdin (its exec has no id); pass stdin as a string or bytes of at most 1 MiB"
                      })
                    )
                  : Stdin.makeWriter(wire, id, stdinRetry, 0)
                      .feed(source)
                      .pipe(
                        // Recorded, the failure ends the events (interruptWhen below), and the command's
                        // stream kills the command it gives up on (bounded, see Reattach.run).
                        Effect.catchAll((error) => Deferred.fail(failed, error).pipe(Effect.ignore)),
                        Effect.forkIn(scope),
                        Effect.asVoid
                      )
              const stdinFailed = Effect.flatMap(Deferred.poll(failed), (done) =>
                Option.isSome(done) ? done.value : Effect.void
              )
              return wireEvents.pipe(
                Stream.tap((event) => (event.event === "start" ? start(event.id) : Effect.void)),
                Stream.interruptWhen(Deferred.await(failed)),
                Stream.concat(Stream.execute(stdinFailed))
              )
            })
          )

    /** A command's events, without a span of its own (exec and execStream each have theirs). */
    const events = <E>(
      operation: string,
      command: string | ReadonlyArray<string>,
      execOptions: Omit<ExecOptions<E>, "maxOutputBytes">
    ): Stream.Stream<ExecEvent, OperationError | E> =>
      Stream.unwrap(
        alive(
          operation,
          Effect.suspend(() => {
            const stdin = Stdin.plan(execOptions.stdin)
            return Effect.map(execRequest(operation, command, execOptions, stdin), (request) => ({ request, stdin }))
          }).pipe(
            Effect.map(({ request, stdin }) =>
              feedingStdin(
                operation,
                Reattach.run(
                  wire,
                  {
                    ...request,
                    encoding: "base64",
                    idempotency_key: request.idempotency_key ?? Reattach.newIdempotencyKey()
                  },
                  operation,
                  reattachSchedule
                ),
                stdin.source
              ).pipe(
                Stream.filterMap((event): Option.Option<ExecEvent> => {
                  switch (event.event) {
                    case "start":
                      return Option.some({ _tag: "Start", pid: event.pid })
                    case "stdout":
                    case "stderr":
                      return Option.some(outputEvent(event.event, event.data))
                    case "exit":
                      return Option.some({
                        _tag: "Exit",
                        exitCode: event.exit_code,
                        signal: event.signal,
                        timedOut: event.timed_out,
                        durationMs: event.duration_ms
                      })
                    default:
                      return Option.none()
                  }
                }),
                Stream.tap((event) =>
                  event._tag === "Exit" ? Effect.annotateCurrentSpan(exitAttributes(event)) : Effect.void
                )
              )
            )
          )
        )
      )

    const execStream: Sandbox["execStream"] = <E>(
      command: string | ReadonlyArray<string>,
      execOptions: Omit<ExecOptions<E>, "maxOutputBytes"> = {}
    ) =>
      events("execStream", command, execOptions).pipe(
        Stream.withSpan("Sandbox.execStream", {
          attributes: { ...attributes, ...commandAttributes(command, execOptions) }
        })
      )

    const toExit = (e: {
      exit_code: number | null
      signal: number | null
      timed_out: boolean
      duration_ms: number
    }) => ({
      exitCode: e.exit_code,
      signal: e.signal,
      timedOut: e.timed_out,
      durationMs: e.duration_ms
    })

    /**
     * `writer`: the stdin writer of a process this client started (it knows the offset); a handle found by
     * id asks the server. `stdinFailed`: the failure of the Stream feeding its stdin, which `wait` reports.
     */
    const processHandle = <E = never>(
      info: Protocol.ProcessInfoBody,
      writer: Stdin.Writer = Stdin.makeWriter(wire, info.id, stdinRetry),
      stdinFailed?: Deferred.Deferred<void, OperationError | E>
    ): Process<E> => ({
      id: info.id,
      pid: info.pid,
      wait: guard(
        "process.wait",
        Effect.map(wire.wait(info.id), toExit).pipe(
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
          guard("process.stdin.write", writer.write(typeof data === "string" ? encoder.encode(data) : data), {
            "process.id": info.id
          }),
        close: () => guard("process.stdin.close", writer.close, { "process.id": info.id })
      },
      kill: (signal = "SIGKILL") =>
        guard("process.kill", wire.kill(info.id, typeof signal === "number" ? String(signal) : signal.slice(3)), {
          "process.id": info.id,
          "process.signal": String(signal)
        }),
      output: (outputOptions = {}) =>
        guardStream(
          "process.output",
          wire.output(info.id, outputOptions.follow ?? false).pipe(
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
          { "process.id": info.id, "process.follow": outputOptions.follow ?? false }
        )
    })

    const spawn: Sandbox["spawn"] = <E>(
      command: string | ReadonlyArray<string>,
      spawnOptions: SpawnOptions<E> = {}
    ) => {
      const { tag, bufferBytes, stdin: input, ...rest } = spawnOptions
      return guard(
        "spawn",
        Effect.gen(function* () {
          const stdin = Stdin.plan(input === "pipe" ? undefined : input)
          const piped = input === "pipe" || stdin.source !== undefined
          const request = yield* execRequest("spawn", command, rest, stdin)
          if (bufferBytes !== undefined) {
            yield* Validate.check("spawn", () => Validate.bufferBytes("bufferBytes", bufferBytes))
          }
          const info = yield* Reattach.spawn(
            wire,
            {
              ...request,
              idempotency_key: request.idempotency_key ?? Reattach.newIdempotencyKey(),
              ...(piped ? { stdin_pipe: true } : {}),
              ...(tag !== undefined ? { tag } : {}),
              ...(bufferBytes !== undefined ? { buffer_bytes: bufferBytes } : {})
            },
            reattachSchedule
          )
          yield* Effect.annotateCurrentSpan("process.id", info.id)
          const writer = Stdin.makeWriter(wire, info.id, stdinRetry, piped ? 0 : undefined)
          if (stdin.source === undefined) return processHandle<E>(info, writer)
          // The feed outlives this call (at most the sandbox): `wait` reports its failure.
          const failed = yield* Deferred.make<void, OperationError | E>()
          yield* writer.feed(stdin.source).pipe(
            Effect.catchAll((error) =>
              Deferred.fail(failed, error).pipe(Effect.zipRight(wire.kill(info.id, "KILL")), Effect.ignore)
            ),
            Effect.forkIn(scope)
          )
          return processHandle<E>(info, writer, failed)
        }),
        commandAttributes(command, rest)
      )
    }

    const processes: Sandbox["processes"] = guard(
      "processes",
      Effect.map(wire.processes, (list) =>
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

    const process: Sandbox["process"] = (idOrPid) =>
      guard(
        "process",
        Effect.flatMap(wire.processes, (list) => {
          const found = list.find((p) => (typeof idOrPid === "number" ? p.pid === idOrPid : p.id === idOrPid))
          return found === undefined
            ? Effect.fail(new ProcessNotFoundError({ id: String(idOrPid), operation: "process" }))
            : Effect.succeed(processHandle(found))
        }),
        { "process.id": String(idOrPid) }
      )

    // exec is execStream folded into a result: output kept as bytes up to the cap, decoded once at the end
    // (so a character split across chunks decodes whole).
    const exec: Sandbox["exec"] = <E>(command: string | ReadonlyArray<string>, execOptions: ExecOptions<E> = {}) => {
      const { maxOutputBytes, ...streamOptions } = execOptions
      const checkedLimit = Validate.check("exec", () =>
        maxOutputBytes === undefined ? DEFAULT_MAX_OUTPUT : Validate.positiveBytes("maxOutputBytes", maxOutputBytes)
      )
      return Effect.flatMap(checkedLimit, (limit) => {
        const stdout = makeCapture(limit)
        const stderr = makeCapture(limit)
        let exit: Extract<ExecEvent, { _tag: "Exit" }> | undefined
        return events("exec", command, streamOptions).pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              switch (event._tag) {
                case "Stdout":
                  return stdout.push(event.data)
                case "Stderr":
                  return stderr.push(event.data)
                case "Exit":
                  exit = event
              }
            })
          ),
          Effect.map(
            (): ExecResult => ({
              exitCode: exit!.exitCode,
              signal: exit!.signal,
              timedOut: exit!.timedOut,
              stdout: stdout.text(),
              stderr: stderr.text(),
              stdoutBytes: stdout.bytes(),
              stderrBytes: stderr.bytes(),
              truncated: stdout.truncated || stderr.truncated,
              durationMs: exit!.durationMs
            })
          ),
          Effect.tap((result) => Effect.annotateCurrentSpan("exec.truncated", result.truncated)),
          Effect.withSpan("Sandbox.exec", { attributes: { ...attributes, ...commandAttributes(command, execOptions) } })
        )
      })
    }

    const files = FilesApi.make({ wire, fileSystem, guard, guardStream, readRangeSize: endpoint.readRangeSize })

    const terminate = Effect.suspend(() => {
      const kill = terminated ? Effect.void : (endpoint.kill ?? Effect.void)
      if (!terminated) terminatedByUser = true
      terminated = true
      return Effect.zipRight(kill, Scope.close(scope, Exit.void))
    }).pipe(Effect.withSpan("Sandbox.terminate", { attributes }))

    const logs: Sandbox["logs"] = (logOptions = {}) =>
      endpoint.logs === undefined
        ? Stream.fail(
            new BadRequestError({
              operation: "logs",
              status: 501,
              detail: `the ${endpoint.provider} provider keeps no log for its sandboxes`
            })
          )
        : endpoint.logs(logOptions).pipe(
            Stream.withSpan("Sandbox.logs", {
              attributes: {
                ...attributes,
                "logs.follow": logOptions.follow ?? false,
                ...(logOptions.tail !== undefined ? { "logs.tail": logOptions.tail } : {})
              }
            })
          )

    return {
      id: endpoint.id,
      execStream,
      spawn,
      // Killed when the scope closes, bounded: a process that is already gone is fine.
      spawnScoped: (command, spawnOptions) =>
        Effect.acquireRelease(spawn(command, spawnOptions), (process) =>
          process.kill().pipe(Effect.interruptible, Effect.timeout("10 seconds"), Effect.ignore)
        ),
      processes,
      process,
      logs,
      provider: endpoint.provider,
      details: endpoint.details,
      exec,
      files,
      terminate
    } satisfies Sandbox
  }).pipe(Effect.withSpan(`Sandbox.${operation}`, { attributes: spanAttributes }))

/**
 * Starts a sandbox on the provider in context and waits until its server answers. The sandbox lives
 * until the scope closes (or `terminate` is called); a failed or interrupted start releases at once.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: MakeOptions = {}
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  open("make", options, (provider, spec) => provider.provision(spec))

/**
 * Attaches to a running sandbox by id (e.g. one made by another process, or listed with
 * `HfJobs.list`); on HF Jobs the id may be `namespace/id`. Closing the scope only detaches; `terminate`
 * stops the sandbox. Fails with `StartError` when the id is not a running sandbox or the provider cannot
 * attach (`InvalidOptions`, before any request, when it is not an id at all).
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  id: string,
  options: Pick<MakeOptions, "startTimeout" | "timeouts" | "schedules" | "cwd" | "namespace" | "transport"> = {}
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  open(
    "connect",
    options,
    (provider, spec) =>
      provider.connect === undefined
        ? Effect.fail(
            new StartError({
              provider: provider.name,
              reason: "NotReady",
              detail: `the ${provider.name} provider cannot attach to an existing sandbox`
            })
          )
        : provider.connect(id, spec),
    { "sandbox.id": id }
  )

/**
 * Provides one sandbox as the {@link Sandbox} service for as long as the layer lives: an application,
 * or an `@effect/vitest` `layer(...)` block, shares it across its effects and tears it down with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: MakeOptions = {}
): Layer.Layer<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient> =>
  Layer.scoped(Sandbox, make(options))
