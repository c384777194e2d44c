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

import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Files } from "./Files.js"
import type * as HfJobs from "./HfJobs.js"
import * as ById from "./internal/sandbox/byId.js"
import * as Names from "./internal/sandbox/names.js"
import { open } from "./internal/sandbox/open.js"
import type { HubError, OperationError, SshError, StartError } from "./SandboxError.js"
import type * as SandboxProvider from "./SandboxProvider.js"
import type * as Schedules from "./Schedules.js"

/**
 * Options of {@link make}. Those of one provider (HF Jobs' `flavor`, `namespace`, `transport`,
 * `cloudflared`, `labels`, `forwardHfToken`, `ports`, `volumes`, `ssh`, `maxCost`) go to it untouched, and the others ignore them; HF Jobs
 * also takes them as a Context value for many sandboxes at once (`HfJobs.withSandboxOptions`).
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
   * Jobs, its `lifetime` end it. This is what `hf-sandbox create` uses. Default false.
   */
  readonly detach?: boolean | undefined
  /**
   * How long starting may take before it fails with `StartError("Timeout")` (and the job is cancelled).
   * Default 3 minutes, 2 with the `"proxy"` transport.
   */
  readonly startTimeout?: Duration.DurationInput | undefined
  /**
   * Hardware to run on (HF Jobs flavor, e.g. `cpu-basic`, `a10g-small`). Default `cpu-basic`. A list
   * (@since 0.2.0) is an order of preference: a job still waiting for its flavor (SCHEDULING) after
   * `Schedules.flavorFallback` is cancelled and the next flavor tried; the last one waits as long as the
   * start may. `sb.hardware` says which one the sandbox got.
   */
  readonly flavor?: string | ReadonlyArray<string> | undefined
  /**
   * Hard limit on the sandbox's life, enforced even if this process dies and whatever runs in it: the HF
   * job's timeout (default 1 hour), or the local server's own lifetime (default none). A Duration or a
   * string like `"30m"`, `"2h"`, `"90s"`.
   *
   * @since 0.2.0
   */
  readonly lifetime?: Duration.DurationInput | string | undefined
  /**
   * The former name of {@link MakeOptions.lifetime}, still honoured. Giving both with different values
   * fails with `StartError("InvalidOptions")`.
   *
   * @deprecated Use `lifetime`.
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
  /**
   * Ports of servers you will start in the sandbox, served by the HF Jobs proxy at
   * `https://<id>--<port>.hf.jobs` (the job's `expose`; reach them with `sb.expose(port)` and your HF
   * token). Needed with the `"proxy"` transport; the tunnel transport gives any port a quick tunnel on
   * demand instead. Ignored by the local provider (its ports are on this machine).
   *
   * @since 0.2.0
   */
  readonly ports?: ReadonlyArray<number> | undefined
  /**
   * Replaces the schedules this sandbox waits on (see the `Schedules` module). These win over the
   * Context value (`Schedules.layer`, `Schedules.withSchedules`), which wins over the defaults.
   */
  readonly schedules?: Schedules.Overrides | undefined
  /** Transport bounds: a plain request (default 60 s) and a silent stream (default 70 s). */
  readonly timeouts?:
    | {
        readonly request?: Duration.DurationInput | undefined
        readonly streamIdle?: Duration.DurationInput | undefined
      }
    | undefined
  /**
   * HF Jobs: Hub repos and buckets mounted in the container (the Jobs API's own format; see
   * `HfJobs.Volume`), checked before any job exists. The local provider refuses them with
   * `StartError("InvalidOptions")`: copy the files in with `files.upload`, or download them inside.
   *
   * @since 0.2.0
   */
  readonly volumes?: ReadonlyArray<HfJobs.Volume> | undefined
  /**
   * HF Jobs: accept SSH into the container (`sb.sshCommand()`, `hf-sandbox ssh ID`). Only users with
   * write access to the job's namespace can connect, with an SSH key registered at
   * https://huggingface.co/settings/keys; SSH itself costs nothing more (the job is billed by the minute
   * either way). The local provider refuses it with `StartError("InvalidOptions")`.
   *
   * @since 0.2.0
   */
  readonly ssh?: boolean | undefined
  /**
   * HF Jobs: a spend cap in US dollars (`2`, `"$2"`, `"0.50"`). The job's timeout is what the cap buys of
   * its flavor at the Hub's price (per started minute), per flavor of a list; a `lifetime` that could
   * cost more fails with `StartError("InvalidOptions")` before any job exists. Ignored by the local provider.
   *
   * @since 0.2.0
   */
  readonly maxCost?: number | string | undefined
  /**
   * A name for the sandbox, unique among the provider's running sandboxes: 1 to 63 of
   * `A-Z a-z 0-9 . _ -` (else `StartError("InvalidOptions")`). `connect({ name })` finds it again, and
   * `list`/`sweep` filter by it. While a sandbox of that name runs, `make` fails with
   * `StartError("NameTaken")` naming it (two `make`s racing: the earlier-created one keeps the name, the
   * other stops its own sandbox and fails); {@link getOrCreate} attaches to it instead. HF Jobs keeps it
   * as the job label `hf-sandbox-name` (per namespace); the local provider in the sandbox's state file
   * (per state directory).
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
}

/**
 * Options of {@link connect}: how to attach, and where the provider looks (HF Jobs' `namespace`).
 *
 * @since 0.2.0
 * @category models
 */
export type ConnectOptions = Pick<
  MakeOptions,
  "startTimeout" | "timeouts" | "schedules" | "cwd" | "namespace" | "transport"
>

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
  /**
   * Waits until the process prints `pattern` (a string, or a RegExp tested against each stream's text
   * so far), e.g. `"Uvicorn running on"`; what it printed before the call counts. Fails with
   * `OutputWaitError` (and the tail of its output) when it ends first or `timeout` (default 2 minutes)
   * passes.
   *
   * @since 0.2.0
   */
  readonly waitForOutput: (
    pattern: string | RegExp,
    options?: WaitForOutputOptions
  ) => Effect.Effect<OutputMatch, OperationError>
}

/**
 * Options of {@link Process.waitForOutput}.
 *
 * @since 0.2.0
 * @category models
 */
export interface WaitForOutputOptions {
  /** How long to wait at most. Default 2 minutes. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * What {@link Process.waitForOutput} found.
 *
 * @since 0.2.0
 * @category models
 */
export interface OutputMatch {
  /** The stream it was printed on. */
  readonly stream: "stdout" | "stderr"
  /** The text that matched. */
  readonly text: string
  /** A RegExp's capture groups, in order (e.g. the port a server says it bound). */
  readonly groups: ReadonlyArray<string | undefined>
}

/**
 * Options of {@link Sandbox.expose}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ExposeOptions {
  /**
   * `"direct"` (default): the provider's own way — the loopback address for a local sandbox; on HF Jobs
   * the Jobs proxy host of a port declared with `ports` (HF token), else, with the tunnel transport, the
   * port's own quick tunnel (public: no token). `"server"`: through the sandbox server's port proxy
   * (`/v1/proxy/{port}`, the sandbox token), which reaches any port on any provider.
   */
  readonly via?: "direct" | "server" | undefined
}

/**
 * Options of {@link Sandbox.waitForPort}.
 *
 * @since 0.2.0
 * @category models
 */
export interface WaitForPortOptions {
  /** How long to wait at most. Default 2 minutes. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The process meant to serve the port: the wait fails at once when it ends, with its output's tail. */
  readonly process?: Process<unknown> | undefined
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
  /**
   * What it runs on, as its provider says: the HF flavor on HF Jobs, `"local"` on this machine.
   *
   * @since 0.2.0
   */
  readonly hardware?: string | undefined
  /**
   * The hard limit on its life in force (the one asked for, or the provider's default); absent: none.
   *
   * @since 0.2.0
   */
  readonly lifetime?: Duration.Duration | undefined
  /**
   * Whether it runs on this machine (its server is a process here).
   *
   * @since 0.2.0
   */
  readonly onThisMachine?: boolean | undefined
  /**
   * For a facade that must act synchronously while this process exits (the Promise facade's exit
   * handler): what its provider can still do then. Absent for sandboxes not on this machine.
   *
   * @since 0.2.0
   */
  readonly backstop?: SandboxProvider.Backstop | undefined
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
  /**
   * A URL from which this program reaches a server listening on `port` in the sandbox (HTTP, SSE and
   * WebSocket), and the headers it needs; see {@link ExposeOptions} for the ways. Fails with `PortError`
   * when the port cannot be reached that way (an undeclared port behind the HF Jobs proxy, a quick
   * tunnel that did not come up), `InvalidArgumentError` for a port outside 1–65535.
   *
   * ```ts
   * const vllm = yield* sb.spawn("vllm serve Qwen/Qwen2.5-0.5B --port 8000")
   * yield* sb.waitForPort(8000, { process: vllm })
   * const { url, headers } = yield* sb.expose(8000)
   * ```
   *
   * @since 0.2.0
   */
  readonly expose: (port: number, options?: ExposeOptions) => Effect.Effect<SandboxProvider.Exposure, OperationError>
  /**
   * Waits until something in the sandbox listens on `port` (on 127.0.0.1), asking on
   * `Schedules.portPoll`. Fails with `PortError("NotListening")` after `timeout` (default 2 minutes), or
   * at once when the given `process` ends, with the tail of its output.
   *
   * @since 0.2.0
   */
  readonly waitForPort: (port: number, options?: WaitForPortOptions) => Effect.Effect<void, OperationError>
  /**
   * Live resource samples (CPU, memory, network, GPUs), one per `interval`, until the stream is ended or
   * interrupted (or the sandbox ends). On HF Jobs they come from the Jobs metrics stream (one a second,
   * whatever `interval` says; the Hub sends none while the job is scheduled); elsewhere from the sandbox's
   * own server (`/v1/metrics`, from `/proc`). Watching is not using: the stream does not hold off the
   * sandbox's idle timeout.
   *
   * @since 0.2.0
   */
  readonly metrics: (options?: MetricsOptions) => Stream.Stream<MetricsSample, OperationError | HubError>
  /**
   * What to run to open an SSH session into the sandbox (HF Jobs, made with `ssh: true`): the `ssh`
   * command as `hf jobs ssh` builds it, e.g. `["ssh", "<job id>@ssh.hf.jobs"]`. Add SSH's own flags to
   * forward ports: `ssh -L 6006:localhost:6006 <job id>@ssh.hf.jobs` reaches a TensorBoard in the
   * sandbox at http://localhost:6006, and `ssh -R 8080:localhost:8080 …` lets the sandbox reach port
   * 8080 of this machine. Fails with `SshError` when the sandbox was made without SSH or its provider
   * has none (the local one).
   *
   * @since 0.2.0
   */
  readonly sshCommand: () => Effect.Effect<SshCommand, SshError | HubError>
}

/**
 * How to reach a sandbox over SSH, as {@link Sandbox.sshCommand} gives it.
 *
 * @since 0.2.0
 * @category models
 */
export interface SshCommand {
  /** The whole command, `ssh [-p PORT] USER@HOST`: run it as is, or add flags (`-L`, `-R`, `-i`) before the destination. */
  readonly argv: ReadonlyArray<string>
  /** `USER@HOST`, e.g. `<job id>@ssh.hf.jobs`. */
  readonly destination: string
  /** The port when it is not SSH's 22. */
  readonly port: number | undefined
  /** The Hub's URL of it, e.g. `ssh://<job id>@ssh.hf.jobs`. */
  readonly url: string
}

/**
 * One sample of a sandbox's resource use, as {@link Sandbox.metrics} streams it: the Jobs metrics'
 * fields (`cpu_usage_pct`, `cpu_millicores`, …) in camelCase.
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricsSample {
  /** CPU in use since the previous sample, in percent of the sandbox's allotment (`cpuMillicores`). */
  readonly cpuPercent: number
  /** The CPU the sandbox may use, in thousandths of a CPU (3500: three and a half). */
  readonly cpuMillicores: number
  /** Memory in use, in bytes. */
  readonly memoryUsedBytes: number
  /** The memory the sandbox may use (its limit, else the machine's), in bytes. */
  readonly memoryTotalBytes: number
  /** Bytes per second received (over the network the sandbox sees; 0 where none is its own). */
  readonly rxBps: number
  /** Bytes per second sent. */
  readonly txBps: number
  /** One entry per GPU, sorted by id; empty without GPUs. */
  readonly gpus: ReadonlyArray<GpuSample>
}

/**
 * One GPU of a {@link MetricsSample}.
 *
 * @since 0.2.0
 * @category models
 */
export interface GpuSample {
  /** The GPU's id, as the platform reports it (on HF Jobs a short hex id). */
  readonly id: string
  /** Utilisation in percent. */
  readonly utilization: number
  readonly memoryUsedBytes: number
  readonly memoryTotalBytes: number
}

/**
 * Options of {@link Sandbox.metrics}.
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricsOptions {
  /**
   * Time between two samples where the source takes one (the sandbox's server: from 100 ms to 1 hour);
   * HF Jobs sends one a second whatever this says. Default 1 second.
   */
  readonly interval?: Duration.DurationInput | undefined
}

/**
 * The current sandbox as a service, provided by {@link layer}.
 *
 * @since 0.1.0
 * @category tags
 */
export const Sandbox: Context.Tag<Sandbox, Sandbox> = Context.GenericTag<Sandbox>("hf-sandbox/Sandbox")

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
 * `connect({ name })` (@since 0.2.0) attaches to the running sandbox of that name (`make({ name })`),
 * found with the provider's `list`; none: `StartError("NotFound")`.
 *
 * A pooled id, `<host id>.<local id>` (@since 0.2.0; `SandboxPool`, or HF's Python `SandboxPool`),
 * attaches to its host through the provider, checks that the sandbox still exists there (else
 * `StartError("NotFound")`), and reaches it with its own token, derived from the host's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect: {
  (
    id: string,
    options?: ConnectOptions
  ): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope>
  (
    options: ConnectOptions & { readonly name: string }
  ): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope>
} = (
  idOrOptions: string | (ConnectOptions & { readonly name: string }),
  options: ConnectOptions = {}
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  typeof idOrOptions === "string" ? ById.connect(idOrOptions, options) : Names.connectByName(idOrOptions)

/**
 * The running sandbox named `name`, attached to, or else a new one made with these options: what a
 * retried or repeated start calls instead of `make`, so that it never leaves two. Safe against callers
 * racing (in this process or others): each that finds none creates one, then looks again; the
 * earlier-created sandbox keeps the name, and every other caller stops its own and attaches to it, so
 * all get the same sandbox and one is left running. A sandbox this call made is this scope's (it stops
 * when the scope closes, unless `detach`); one it attached to is only detached from. Without a `name`,
 * or with a bad one, it fails with `StartError("InvalidOptions")`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const getOrCreate = (
  options: MakeOptions & { readonly name: string }
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  Names.getOrCreate(options, make)

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
