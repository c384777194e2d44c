/**
 * `hf-sandbox/promise`: the sandbox API with plain Promises and async iterables, for programs that do
 * not use Effect. It is a thin layer over the Effect API (one shared runtime runs every call), so it
 * behaves the same way and fails with the same typed errors.
 *
 * ```ts
 * import { Sandbox, SandboxError } from "hf-sandbox/promise"
 *
 * await using sb = await Sandbox.create({ image: "python:3.12" })       // an HF Job; terminated at block end
 * const r = await sb.exec(["python3", "-c", "print(1+1)"])               // { exitCode: 0, stdout: "2\n", ... }
 * for await (const event of sb.execStream("pip install numpy")) {
 *   if (event._tag === "Stdout") process.stdout.write(event.data)
 * }
 * try {
 *   await sb.files.readText("missing.txt")
 * } catch (e) {
 *   if (e instanceof SandboxError.FileNotFoundError) console.log(e.path)
 * }
 * ```
 *
 * - **Providers**: `provider: "hf"` (the default, as in the Python `Sandbox.create`) runs the sandbox as
 *   a Hugging Face Job; `provider: "local"` runs the server on this machine (no account, no isolation).
 * - **Cancellation**: every call takes `{ signal }`, an `AbortSignal`. Aborting interrupts the call:
 *   an `exec` or an `execStream` kills the remote command, and the Promise rejects with
 *   `signal.reason`. Leaving a `for await` loop early (`break`, `return`, a throw) also kills it.
 * - **Errors**: a rejected Promise carries the error itself, an instance of a class of the
 *   `SandboxError` module with its `_tag` — never a wrapper.
 * - **Lifetime**: `terminate()`, or `await using`, ends a sandbox. Sandboxes still open when the process
 *   gets SIGINT, SIGTERM or SIGHUP, or when its work is done, are terminated before it exits (see
 *   `docs/promise.md` for the details and limits).
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as EffectFiles from "./Files.js"
import * as HfJobs from "./HfJobs.js"
import * as Background from "./internal/background.js"
import { EFFECT_TOKEN_HINT } from "./internal/hfJobs/credentials.js"
import * as Shutdown from "./internal/shutdown.js"
import * as LocalSandbox from "./LocalSandbox.js"
import * as EffectSandbox from "./Sandbox.js"
import { type OperationError, StartError } from "./SandboxError.js"
import type * as SandboxProvider from "./SandboxProvider.js"
import * as Telemetry from "./Telemetry.js"

// The shapes shared with the Effect API (results, events, options), defined in the `Sandbox` and `Files` modules.
export type {
  /**
   * `ExecEvent` of the `Sandbox` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  ExecEvent,
  /**
   * `ExecResult` of the `Sandbox` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  ExecResult,
  /**
   * `FileInfo` of the `Files` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  FileInfo,
  /**
   * `OutputEvent` of the `Sandbox` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  OutputEvent,
  /**
   * `ProcessExit` of the `Sandbox` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  ProcessExit,
  /**
   * `ProcessInfo` of the `Sandbox` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  ProcessInfo,
  /**
   * `TransferOptions` of the `Files` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  TransferOptions,
  /**
   * `TransferProgress` of the `Files` module, shared with the Effect API.
   *
   * @since 0.1.0
   * @category models
   */
  TransferProgress
} from "./Sandbox.js"
/**
 * The error classes, re-exported so that `e instanceof SandboxError.FileNotFoundError` needs no
 * second import.
 *
 * @since 0.1.0
 * @category errors
 */
export * as SandboxError from "./SandboxError.js"

export type {
  /**
   * Options of a sandbox's log, from the `SandboxProvider` module.
   *
   * @since 0.1.0
   * @category models
   */
  LogOptions
} from "./SandboxProvider.js"

/**
 * What every call takes besides its own options.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions {
  /**
   * Aborting interrupts the call: the Promise rejects with `signal.reason`, and what the call started
   * remotely stops (an `exec` kills its command). An already aborted signal rejects at once.
   */
  readonly signal?: AbortSignal | undefined
}

/**
 * Advanced: the HTTP client under the sandbox's traffic.
 *
 * @since 0.1.0
 * @category models
 */
export interface RuntimeOptions {
  /**
   * Adapts the Effect `HttpClient` the sandbox's requests go through (e.g. to add a proxy, or
   * `Testing.routeHttpClient(emulator)` from `hf-sandbox/testing` to test against the Hub emulator).
   */
  readonly httpClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * Options of the HF Jobs provider (see `HfJobs.Options` and `docs/hf-jobs.md`).
 *
 * @since 0.1.0
 * @category models
 */
export interface HfProviderOptions {
  /** HF token. Default: found as `huggingface_hub` finds it (`HF_OIDC_RESOURCE`, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the token file of `hf auth login`). */
  readonly token?: string | Redacted.Redacted<string> | undefined
  /** Hub endpoint. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string | undefined
  /** Domain of the Jobs proxy's exposed URLs. Default `hf.jobs`. */
  readonly jobsDomain?: string | undefined
  /** Public DNS resolvers asked when the system cannot resolve a fresh tunnel name; `false`: never. */
  readonly publicDns?: ReadonlyArray<string> | false | undefined
}

/**
 * Options of {@link create} for a sandbox on Hugging Face Jobs, the default provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface HfCreateOptions extends EffectSandbox.MakeOptions, HfProviderOptions, CallOptions, RuntimeOptions {
  readonly provider?: "hf" | undefined
}

/**
 * Options of {@link create} for a sandbox on this machine (`provider: "local"`): the server runs as a
 * child process in a fresh temp directory. For development and tests; **not** an isolation boundary.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalCreateOptions
  extends EffectSandbox.MakeOptions,
    LocalSandbox.Options,
    CallOptions,
    RuntimeOptions {
  readonly provider: "local"
}

/**
 * Options of {@link create}: `provider` picks the backend, `"hf"` (default) or `"local"`; the rest are
 * the options of the Effect API's `Sandbox.make` and of the provider. Durations are milliseconds or
 * strings like `"30 seconds"`; `timeout` (the HF job's lifetime) also takes `"30m"`, `"2h"`.
 *
 * @since 0.1.0
 * @category models
 */
export type CreateOptions = HfCreateOptions | LocalCreateOptions

/**
 * What {@link connect} takes whatever the provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectBaseOptions
  extends Pick<
      EffectSandbox.MakeOptions,
      "startTimeout" | "timeouts" | "schedules" | "cwd" | "namespace" | "transport"
    >,
    CallOptions,
    RuntimeOptions {}

/**
 * Options of {@link connect} for a sandbox on Hugging Face Jobs, the default provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface HfConnectOptions extends ConnectBaseOptions, HfProviderOptions {
  readonly provider?: "hf" | undefined
}

/**
 * Options of {@link connect} for a sandbox on this machine (where the local provider can attach).
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalConnectOptions extends ConnectBaseOptions, LocalSandbox.Options {
  readonly provider: "local"
}

/**
 * Options of {@link connect}: `provider` (default `"hf"`) and its options, and how to reach the sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectOptions = HfConnectOptions | LocalConnectOptions

/**
 * The files inside a sandbox, as in the Effect API's `Files` (relative paths resolve against the
 * sandbox's home directory), with Promises and async iterables.
 *
 * @since 0.1.0
 * @category models
 */
export interface Files {
  /**
   * Creates or replaces a file (parents are created). `data` may be a string, bytes, or an async
   * iterable of chunks (a Node `Readable`, a web `ReadableStream`, an async generator), sent as it is
   * produced; if the iterable throws, the write rejects with that error. Atomic: a failed or aborted
   * write leaves the old file as it was (see the Effect API's `Files.write`).
   */
  readonly write: (
    path: string,
    data: string | Uint8Array | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array>,
    options?: EffectFiles.WriteOptions & CallOptions
  ) => Promise<void>
  /** The file's bytes. */
  readonly read: (path: string, options?: EffectFiles.TransferOptions & CallOptions) => Promise<Uint8Array>
  /** The file as UTF-8 text. */
  readonly readText: (path: string, options?: CallOptions) => Promise<string>
  /** The entry at `path`, without following a symlink. */
  readonly stat: (path: string, options?: CallOptions) => Promise<EffectFiles.FileInfo>
  /** Whether `path` exists. */
  readonly exists: (path: string, options?: CallOptions) => Promise<boolean>
  /** The entries of a directory, sorted by name; with `recursive`, the whole tree below it. */
  readonly list: (
    path: string,
    options?: { readonly recursive?: boolean | undefined } & CallOptions
  ) => Promise<ReadonlyArray<EffectFiles.FileInfo>>
  /** Removes a file, or a directory (a non-empty one needs `recursive`). */
  readonly remove: (path: string, options?: { readonly recursive?: boolean | undefined } & CallOptions) => Promise<void>
  /** Creates a directory and its parents. */
  readonly mkdir: (path: string, options?: CallOptions) => Promise<void>
  /** Moves a file or directory. */
  readonly rename: (from: string, to: string, options?: CallOptions) => Promise<void>
  /** Sets permission bits, e.g. `0o755`. */
  readonly chmod: (path: string, mode: number, options?: CallOptions) => Promise<void>
  /** Creates a symlink at `path` pointing to `target`; an existing file is replaced only with `replace: true`. */
  readonly symlink: (
    path: string,
    target: string,
    options?: { readonly replace?: boolean | undefined } & CallOptions
  ) => Promise<void>
  /** The file's bytes as they arrive, with bounded memory. Leaving the loop early stops the download. */
  readonly readStream: (path: string, options?: CallOptions) => AsyncIterableIterator<Uint8Array>
  /** Copies a local file into the sandbox with bounded memory, renamed into place only when complete. */
  readonly upload: (
    localPath: string,
    remotePath: string,
    options?: EffectFiles.WriteOptions & CallOptions
  ) => Promise<void>
  /**
   * Copies a sandbox file to this machine, renamed into place only when complete; setuid, setgid and
   * sticky dropped and the umask applied unless `preserveModes`.
   */
  readonly download: (
    remotePath: string,
    localPath: string,
    options?: EffectFiles.DownloadOptions & CallOptions
  ) => Promise<void>
  /**
   * Copies a local directory tree into the sandbox (modes kept, symlinks recreated, never followed);
   * `links` says what to do with links that lead out of the tree (default `"keep"`).
   */
  readonly uploadDir: (
    localDir: string,
    remoteDir: string,
    options?: EffectFiles.UploadDirOptions & CallOptions
  ) => Promise<EffectFiles.TreeCopy>
  /**
   * Copies a sandbox directory tree to this machine, never writing through a link; links that lead out
   * of the tree are skipped and reported by default (`links`), modes tamed unless `preserveModes`.
   */
  readonly downloadDir: (
    remoteDir: string,
    localDir: string,
    options?: EffectFiles.DownloadDirOptions & CallOptions
  ) => Promise<EffectFiles.TreeCopy>
}

/**
 * A signal for {@link Process.kill}: a name or a number.
 *
 * @since 0.1.0
 * @category models
 */
export type KillSignal = "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP" | number

/**
 * What a command's stdin can be given as: a string, bytes, or a source read as the command takes it — a
 * Node `Readable` (e.g. `process.stdin`, `fs.createReadStream(...)`), any `AsyncIterable` of bytes or
 * strings, or a web `ReadableStream`. Sources and anything over 1 MiB are streamed in bounded requests;
 * if a source fails, the command is killed and the call rejects with the source's error.
 *
 * @since 0.2.0
 * @category models
 */
export type StdinInput = string | Uint8Array | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array>

/**
 * Options of {@link Sandbox.exec} and {@link Sandbox.execStream}: those of the Effect API, with any
 * {@link StdinInput} as `stdin` (a source, since 0.2.0).
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecOptions extends Omit<EffectSandbox.ExecOptions, "stdin"> {
  readonly stdin?: StdinInput | undefined
}

/**
 * Options of {@link Sandbox.spawn}: `stdin` as for `exec`, or `"pipe"` to write it later through
 * `process.stdin` (both since 0.2.0).
 *
 * @since 0.1.0
 * @category models
 */
export interface SpawnOptions extends Omit<EffectSandbox.SpawnOptions, "stdin"> {
  readonly stdin?: StdinInput | "pipe" | undefined
}

/**
 * The stdin of a background process started with `stdin: "pipe"`. Rejects with `StdinError` once stdin
 * is closed (`Closed`) or when the process has no pipe (`NotPiped`).
 *
 * @since 0.2.0
 * @category models
 */
export interface ProcessStdin {
  /** Resolves once every byte (a string as UTF-8) is in the process's stdin. */
  readonly write: (data: string | Uint8Array, options?: CallOptions) => Promise<void>
  /** Closes the process's stdin: it reads end of input. */
  readonly close: (options?: CallOptions) => Promise<void>
}

/**
 * A process running in the background of a sandbox (see {@link Sandbox.spawn}). `await using` kills it
 * at the end of the block.
 *
 * @since 0.1.0
 * @category models
 */
export interface Process extends AsyncDisposable {
  /** Opaque id, like `p-3`. */
  readonly id: string
  /** The OS pid inside the sandbox (for information). */
  readonly pid: number
  /** Resolves when the process ends (rejects with its stdin source's error if that failed). */
  readonly wait: (options?: CallOptions) => Promise<EffectSandbox.ProcessExit>
  /** Its stdin, writable when it was started with `stdin: "pipe"`. @since 0.2.0 */
  readonly stdin: ProcessStdin
  /** Signals the process's whole group (default SIGKILL); false when it had already exited. */
  readonly kill: (signal?: KillSignal, options?: CallOptions) => Promise<boolean>
  /**
   * Its output: what the sandbox still holds, then, with `follow`, live output until it exits; ends
   * with an `Exit` event once the process has ended.
   */
  readonly output: (
    options?: { readonly follow?: boolean | undefined } & CallOptions
  ) => AsyncIterableIterator<EffectSandbox.ExecEvent>
}

/**
 * A running sandbox. `await using` terminates it at the end of the block (a sandbox from
 * {@link connect} is only detached).
 *
 * @since 0.1.0
 * @category models
 */
export interface Sandbox extends AsyncDisposable {
  /** Unique id (an HF job id, or `local-…`). */
  readonly id: string
  /** The provider that runs it: `"hf-jobs"` or `"local"`. */
  readonly provider: string
  /** Provider facts for diagnostics (never secrets), e.g. `{ jobId, url }` or `{ pid, workdir }`. */
  readonly details: Readonly<Record<string, unknown>>
  /**
   * Runs a command to completion. A string runs through `/bin/sh -c`; an argv list is exec'd directly.
   * A non-zero exit is a result, not an error. Aborting kills the command's whole process group.
   */
  readonly exec: (
    command: string | ReadonlyArray<string>,
    options?: ExecOptions & CallOptions
  ) => Promise<EffectSandbox.ExecResult>
  /**
   * Runs a command and yields what it does: `Start`, raw `Stdout`/`Stderr` chunks, then `Exit`, at the
   * loop's pace. Leaving the loop early (`break`) or aborting kills the command's process group.
   */
  readonly execStream: (
    command: string | ReadonlyArray<string>,
    options?: Omit<ExecOptions, "maxOutputBytes"> & CallOptions
  ) => AsyncIterableIterator<EffectSandbox.ExecEvent>
  /** Starts a command in the background; it dies with the sandbox at the latest. */
  readonly spawn: (command: string | ReadonlyArray<string>, options?: SpawnOptions & CallOptions) => Promise<Process>
  /** The background processes, running and exited. */
  readonly processes: (options?: CallOptions) => Promise<ReadonlyArray<EffectSandbox.ProcessInfo>>
  /**
   * A handle on a background process by its id (`p-3`) or OS pid, e.g. one started by another client.
   * Rejects with `ProcessNotFoundError` when the sandbox has no such process.
   */
  readonly process: (idOrPid: string | number, options?: CallOptions) => Promise<Process>
  readonly files: Files
  /** The sandbox's log lines, replayed from the start; with `follow`, until the sandbox ends. */
  readonly logs: (options?: SandboxProvider.LogOptions & CallOptions) => AsyncIterableIterator<string>
  /**
   * Stops the sandbox now (cancels the HF job; stops a local server and everything it started).
   * Idempotent; later calls on the sandbox reject with `TerminatedError`. Aborting stops the waiting,
   * not the termination.
   */
  readonly terminate: (options?: CallOptions) => Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// The runtime: one for the process, built on first use.

type Services = NodeContext.NodeContext | HttpClient.HttpClient
type ProviderContext = Context.Context<SandboxProvider.SandboxProvider>

let runtime: ManagedRuntime.ManagedRuntime<Services, never> | undefined
const getRuntime = () =>
  (runtime ??= ManagedRuntime.make(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)))

/**
 * Runs an effect on the shared runtime; the Promise always resolves, with the effect's Exit. With a
 * signal already aborted nothing runs at all (a started fiber could send a request before it sees the
 * interruption).
 */
const runExit = <A, E>(effect: Effect.Effect<A, E, Services>, signal?: AbortSignal): Promise<Exit.Exit<A, E>> => {
  if (signal?.aborted) return Promise.resolve(Exit.interrupt(FiberId.none))
  const release = Shutdown.holdOpen()
  return getRuntime()
    .runPromiseExit(effect, signal === undefined ? undefined : { signal })
    .finally(release)
}

const never = <A>(): Promise<A> => new Promise<A>(() => {})

/**
 * The error a caller sees: the typed failure itself, else the abort's reason, else the defect — each
 * unwrapped from the proxy Effect may put around an error to carry its span, so that `===` holds.
 */
const toError = (cause: Cause.Cause<unknown>, signal: AbortSignal | undefined): unknown => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return Cause.originalError(failure.value)
  if (signal?.aborted && Cause.isInterruptedOnly(cause)) return signal.reason
  return Cause.originalError(Cause.squash(cause))
}

/**
 * Turns an Exit into the caller's Promise. Once a signal is ending the process, results are no longer
 * delivered: the program dies of the signal as it would have, instead of reporting the errors its
 * terminated sandboxes produce on the way.
 */
const settle = <A, E>(exit: Exit.Exit<A, E>, signal?: AbortSignal): Promise<A> =>
  Shutdown.isDying()
    ? never()
    : Exit.isSuccess(exit)
      ? Promise.resolve(exit.value)
      : Promise.reject(toError(exit.cause, signal))

const run = <A, E>(effect: Effect.Effect<A, E, Services>, signal?: AbortSignal): Promise<A> =>
  runExit(effect, signal).then((exit) => settle(exit, signal))

/** Rejects with the signal's reason when it aborts first (what `promise` does goes on). */
const abortable = <A>(promise: Promise<A>, signal: AbortSignal | undefined): Promise<A> => {
  if (signal === undefined) return promise
  return new Promise<A>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener("abort", onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort))
  })
}

/**
 * A Stream as an async iterator. The stream's resources live in a scope of their own, closed when the
 * stream ends, fails, the loop is left early (`return`) or the signal aborts — which is what stops the
 * remote work (an exec stream's command is killed when its request is cut).
 */
const iterate = <A, E>(stream: Stream.Stream<A, E>, signal: AbortSignal | undefined): AsyncIterableIterator<A> => {
  const stop = new AbortController()
  const pullSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal])
  let scope: Scope.CloseableScope | undefined
  let pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined
  let buffer: ReadonlyArray<A> = []
  let index = 0
  let finished = false
  let pulling = false
  let closed: Promise<void> | undefined
  let queue: Promise<unknown> = Promise.resolve()

  const close = (): Promise<void> => {
    finished = true
    buffer = []
    signal?.removeEventListener("abort", onAbort)
    closed ??= scope === undefined ? Promise.resolve() : runExit(Scope.close(scope, Exit.void)).then(() => undefined)
    return closed
  }
  // An abort between pulls closes at once; during a pull, the pull is interrupted and then closes.
  function onAbort() {
    if (!pulling) void close()
  }
  signal?.addEventListener("abort", onAbort, { once: true })

  const done = (): IteratorResult<A> => ({ done: true, value: undefined })

  const step = async (): Promise<IteratorResult<A>> => {
    for (;;) {
      if (signal?.aborted) {
        await close()
        return Shutdown.isDying() ? never() : Promise.reject(signal.reason)
      }
      if (index < buffer.length) return { done: false, value: buffer[index++] as A }
      if (finished) return done()
      pulling = true
      let exit: Exit.Exit<Chunk.Chunk<A>, Option.Option<E>>
      try {
        if (pull === undefined) {
          const opened = Effect.runSync(Scope.make())
          scope = opened
          const made = await runExit(Stream.toPull(stream).pipe(Scope.extend(opened)), pullSignal)
          if (Exit.isFailure(made)) {
            exit = Exit.failCause(made.cause)
          } else {
            pull = made.value
            exit = await runExit(pull, pullSignal)
          }
        } else {
          exit = await runExit(pull, pullSignal)
        }
      } finally {
        pulling = false
      }
      if (Exit.isSuccess(exit)) {
        buffer = Chunk.toReadonlyArray(exit.value)
        index = 0
        continue
      }
      await close()
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        // `None` is the end of the stream; `Some` its error.
        if (Option.isNone(failure.value)) return done()
        return settle(Exit.fail(failure.value.value))
      }
      if (stop.signal.aborted && !signal?.aborted) return done() // `return()` during a pull
      return settle(Exit.failCause(exit.cause), signal)
    }
  }

  const enqueue = <T>(task: () => Promise<T>): Promise<T> => {
    const result = queue.then(task)
    queue = result.catch(() => undefined)
    return result
  }

  // Once a signal is ending the process, nothing more is delivered (see `settle`).
  const next = async () => {
    const result = await step()
    return Shutdown.isDying() ? never<IteratorResult<A>>() : result
  }

  const iterator: AsyncIterableIterator<A> = {
    next: () => enqueue(next),
    return: () => {
      // A pull still in flight (a `return()` from outside the loop) is interrupted first.
      if (pulling) stop.abort()
      return enqueue(async () => {
        await close()
        return done()
      })
    },
    [Symbol.asyncIterator]: () => iterator
  }
  return iterator
}

// ---------------------------------------------------------------------------------------------------
// Providers: one per distinct set of provider options, built once on the shared runtime, so that the
// HF provider resolves its token and asks `whoami` once, not for every sandbox.

const providers = new Map<string, Promise<ProviderContext>>()
let providersScope: Scope.CloseableScope | undefined

const providerContext = (
  key: string,
  layer: () => Layer.Layer<SandboxProvider.SandboxProvider, never, NodeContext.NodeContext>
): Promise<ProviderContext> => {
  let context = providers.get(key)
  if (context === undefined) {
    providersScope ??= Effect.runSync(Scope.make())
    context = getRuntime().runPromise(Layer.buildWithScope(layer(), providersScope))
    context.catch(() => providers.delete(key))
    providers.set(key, context)
  }
  return context
}

/** The options each provider's layer takes; everything else goes to `Sandbox.make`/`connect`. */
const PROVIDER_KEYS = {
  hf: ["token", "endpoint", "jobsDomain", "publicDns"],
  local: ["python", "serverScript", "tempDir", "stopTimeout", "stateDir"]
} as const

/** The provider an options object asks for, built once per distinct set of provider options. */
const providerOf = (
  options: { readonly provider?: "hf" | "local" | undefined },
  inferred: "hf" | "local" = "hf"
): Promise<ProviderContext> => {
  const name = options.provider ?? inferred
  if (!Object.hasOwn(PROVIDER_KEYS, name)) {
    const rejected = Promise.reject(
      new StartError({
        provider: String(name),
        reason: "InvalidOptions",
        detail: `unknown provider ${JSON.stringify(name)}: use provider: "hf" (Hugging Face Jobs, the default) or "local"`
      })
    )
    // Awaited later, or not at all when the call is aborted first: never an unhandled rejection.
    rejected.catch(() => undefined)
    return rejected
  }
  const picked: Record<string, unknown> = {}
  for (const key of PROVIDER_KEYS[name]) {
    const value = (options as Record<string, unknown>)[key]
    if (value !== undefined) picked[key] = value
  }
  if (typeof picked.token === "string") picked.token = Redacted.make(picked.token)
  // The key holds no secret: a token is represented by its hash.
  const key = JSON.stringify([
    name,
    ...PROVIDER_KEYS[name].map((k) => {
      const value = picked[k]
      if (value === undefined) return null
      if (Redacted.isRedacted(value))
        return createHash("sha256")
          .update(String(Redacted.value(value)))
          .digest("hex")
      return Array.isArray(value) || typeof value === "boolean" ? value : String(value)
    })
  ])
  return providerContext(key, () =>
    name === "local" ? LocalSandbox.layer(picked as LocalSandbox.Options) : HfJobs.layer(picked as HfJobs.Options)
  )
}

// ---------------------------------------------------------------------------------------------------
// Telemetry: the facade is one of the original hf-sandbox's own surfaces, and sends its two anonymous
// events per sandbox made on HF Jobs (see docs/telemetry.md), unless an opt-out variable is set when
// the sandbox is created. One sender per endpoint, for the process's life. Its requests and their
// bounds never keep the process alive: a program whose work is done exits at once, ping or not.

const telemetries = new Map<string, Promise<Context.Context<Telemetry.Telemetry>>>()

const telemetryOf = (endpoint: string | undefined): Promise<Context.Context<Telemetry.Telemetry>> | undefined => {
  if (Effect.runSync(Telemetry.optedOut)) return undefined
  const key = endpoint ?? ""
  let context = telemetries.get(key)
  if (context === undefined) {
    providersScope ??= Effect.runSync(Scope.make())
    const layer = Telemetry.layerHub(endpoint !== undefined ? { endpoint } : {}).pipe(
      Layer.provide(Background.layerHttpClient)
    )
    context = getRuntime().runPromise(
      Layer.buildWithScope(layer, providersScope).pipe(Effect.withClock(Background.clock))
    )
    context.catch(() => telemetries.delete(key))
    telemetries.set(key, context)
  }
  return context
}

// ---------------------------------------------------------------------------------------------------
// Handles.

const encoder = new TextEncoder()

const sourceOf = (
  data: string | Uint8Array | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array>
): string | Uint8Array | Stream.Stream<Uint8Array, OperationError> => {
  if (typeof data === "string" || data instanceof Uint8Array) return data
  // The write fails with its source's own error as it is (`files.write` keeps a failure of its source
  // apart from the transport's), so the source's error travels as the stream's failure. It is not an
  // OperationError, but it only goes back out to the caller, through `toError`.
  const sourceError = (error: unknown) => error as OperationError
  const chunks: Stream.Stream<Uint8Array | string, OperationError> =
    Symbol.asyncIterator in data
      ? Stream.fromAsyncIterable(data as AsyncIterable<Uint8Array | string>, sourceError)
      : Stream.fromReadableStream({ evaluate: () => data as ReadableStream<Uint8Array>, onError: sourceError })
  return Stream.map(chunks, (chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk))
}

const filesOf = (files: EffectFiles.Files): Files => ({
  write: (path, data, { signal, ...options } = {}) => run(files.write(path, sourceOf(data), options), signal),
  read: (path, { signal, ...options } = {}) => run(files.read(path, options), signal),
  readText: (path, { signal } = {}) => run(files.readText(path), signal),
  stat: (path, { signal } = {}) => run(files.stat(path), signal),
  exists: (path, { signal } = {}) => run(files.exists(path), signal),
  list: (path, { signal, ...options } = {}) => run(files.list(path, options), signal),
  remove: (path, { signal, ...options } = {}) => run(files.remove(path, options), signal),
  mkdir: (path, { signal } = {}) => run(files.mkdir(path), signal),
  rename: (from, to, { signal } = {}) => run(files.rename(from, to), signal),
  chmod: (path, mode, { signal } = {}) => run(files.chmod(path, mode), signal),
  symlink: (path, target, { signal, ...options } = {}) => run(files.symlink(path, target, options), signal),
  readStream: (path, { signal } = {}) => iterate(files.readStream(path), signal),
  upload: (localPath, remotePath, { signal, ...options } = {}) =>
    run(files.upload(localPath, remotePath, options), signal),
  download: (remotePath, localPath, { signal, ...options } = {}) =>
    run(files.download(remotePath, localPath, options), signal),
  uploadDir: (localDir, remoteDir, { signal, ...options } = {}) =>
    run(files.uploadDir(localDir, remoteDir, options), signal),
  downloadDir: (remoteDir, localDir, { signal, ...options } = {}) =>
    run(files.downloadDir(remoteDir, localDir, options), signal)
})

/** A facade `stdin` option as the Effect API takes it. */
const stdinOf = <O extends { readonly stdin?: StdinInput | "pipe" | undefined }>(options: O) => {
  const { stdin, ...rest } = options
  return stdin === undefined ? rest : { ...rest, stdin: stdin === "pipe" ? ("pipe" as const) : sourceOf(stdin) }
}

const processOf = (process: EffectSandbox.Process<OperationError>): Process => ({
  id: process.id,
  pid: process.pid,
  wait: ({ signal } = {}) => run(process.wait, signal),
  stdin: {
    write: (data, { signal } = {}) => run(process.stdin.write(data), signal),
    close: ({ signal } = {}) => run(process.stdin.close(), signal)
  },
  kill: (sig, { signal } = {}) => run(process.kill(sig), signal),
  output: ({ signal, ...options } = {}) => iterate(process.output(options), signal),
  // Killed at the end of an `await using` block; one that already exited (or whose sandbox is gone) is fine.
  [Symbol.asyncDispose]: () => runExit(process.kill()).then(() => undefined)
})

/** Builds the handle of an open sandbox, which lives in `scope`; an owned one is registered for exit. */
const handleOf = (sb: EffectSandbox.Sandbox, scope: Scope.CloseableScope, owned: boolean): Sandbox => {
  let unregister: (() => void) | undefined
  let closing: Promise<void> | undefined
  // Terminating (or closing) runs once, and every caller waits for the same run.
  const close = (first: Effect.Effect<void>): Promise<void> =>
    (closing ??= runExit(Effect.zipRight(first, Scope.close(scope, Exit.void))).then(() => unregister?.()))

  const pid = sb.provider === "local" && typeof sb.details.pid === "number" ? sb.details.pid : undefined
  const workdir = typeof sb.details.workdir === "string" ? sb.details.workdir : undefined
  // A finished program must reach `beforeExit` (which ends the sandbox) even while a local server it
  // started runs.
  if (pid !== undefined) Shutdown.unrefChild(pid)
  if (owned) {
    unregister = Shutdown.register({
      terminate: () => close(sb.terminate),
      killSync: () => {
        if (pid !== undefined) Shutdown.killLocalSync(pid, workdir)
      }
    })
  }

  return {
    id: sb.id,
    provider: sb.provider,
    details: sb.details,
    exec: (command, { signal, ...options } = {}) => run(sb.exec(command, stdinOf(options)), signal),
    execStream: (command, { signal, ...options } = {}) => iterate(sb.execStream(command, stdinOf(options)), signal),
    spawn: (command, { signal, ...options } = {}) =>
      run(Effect.map(sb.spawn(command, stdinOf(options)), processOf), signal),
    processes: ({ signal } = {}) => run(sb.processes, signal),
    process: (idOrPid, { signal } = {}) => run(Effect.map(sb.process(idOrPid), processOf), signal),
    files: filesOf(sb.files),
    logs: ({ signal, ...options } = {}) => iterate(sb.logs(options), signal),
    terminate: ({ signal } = {}) =>
      signal?.aborted ? Promise.reject(signal.reason) : abortable(close(sb.terminate), signal),
    // An owned sandbox is terminated; a connected one is detached (closing its scope leaves it running).
    [Symbol.asyncDispose]: () => close(owned ? sb.terminate : Effect.void)
  }
}

/** A start's failure in the facade's terms: a token is passed to `Sandbox.create`, not to a layer. */
const inFacadeTerms = (error: StartError): StartError =>
  error.detail.includes(EFFECT_TOKEN_HINT)
    ? new StartError({
        provider: error.provider,
        reason: error.reason,
        detail: error.detail.replace(EFFECT_TOKEN_HINT, 'pass it: Sandbox.create({ token: "hf_..." })'),
        ...(error.stderrTail === undefined ? {} : { stderrTail: error.stderrTail }),
        ...(error.cause === undefined ? {} : { cause: error.cause }),
        ...(error.during === undefined ? {} : { during: error.during })
      })
    : error

/** Starts or attaches to a sandbox in a scope of its own. */
const open = async (params: {
  readonly owned: boolean
  readonly provider: Promise<ProviderContext>
  readonly make: Effect.Effect<
    EffectSandbox.Sandbox,
    StartError,
    SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope
  >
  readonly signal: AbortSignal | undefined
  readonly httpClient: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  readonly telemetry?: Promise<Context.Context<Telemetry.Telemetry>> | undefined
}): Promise<Sandbox> => {
  if (params.signal?.aborted) return Promise.reject(params.signal.reason)
  const scope = Effect.runSync(Scope.make())
  // A start in progress is registered too: a signal or exit during it interrupts the start, which
  // releases whatever was already created (a job found by its label, a half-started server).
  const cancel = new AbortController()
  const signal = params.signal === undefined ? cancel.signal : AbortSignal.any([params.signal, cancel.signal])
  let started: Promise<unknown> = Promise.resolve()
  const unregister = params.owned
    ? Shutdown.register({
        terminate: async () => {
          cancel.abort()
          await started
        },
        killSync: () => {}
      })
    : undefined
  try {
    const context = await params.provider
    // Telemetry that cannot be set up is no telemetry: it never fails a sandbox.
    const telemetry = await params.telemetry?.catch(() => undefined)
    const effect = params.make.pipe(
      Effect.mapError(inFacadeTerms),
      params.httpClient === undefined ? identity : Effect.updateService(HttpClient.HttpClient, params.httpClient),
      Scope.extend(scope),
      Effect.provide(context),
      telemetry === undefined ? identity : Effect.provide(telemetry)
    )
    const pending = runExit(effect, signal)
    started = pending
    const exit = await pending
    if (Exit.isFailure(exit)) {
      await runExit(Scope.close(scope, exit))
      return await settle(Exit.failCause(exit.cause), params.signal)
    }
    return handleOf(exit.value, scope, params.owned)
  } finally {
    unregister?.()
  }
}

/**
 * Starts a sandbox and resolves once its server answers. The default provider is Hugging Face Jobs
 * (`provider: "hf"`: needs an HF token with write access, from `hf auth login` or `HF_TOKEN`);
 * `provider: "local"` runs it on this machine. A failed or aborted start releases whatever it created
 * and rejects with a `StartError` (or the signal's reason).
 *
 * @since 0.1.0
 * @category constructors
 */
export const create = (options: CreateOptions = {}): Promise<Sandbox> => {
  const { provider: _, signal, httpClient, ...make } = options
  return open({
    // A sandbox made to outlive its creator (`detach`, where supported) is not ended with this process.
    owned: (make as { readonly detach?: boolean | undefined }).detach !== true,
    provider: providerOf(options),
    make: EffectSandbox.make(make),
    signal,
    httpClient,
    telemetry:
      (options.provider ?? "hf") === "hf"
        ? telemetryOf((options as { readonly endpoint?: string | undefined }).endpoint)
        : undefined
  })
}

/**
 * Attaches to a running sandbox by id (one made by another process, or by the CLI). `terminate()`
 * stops it; `await using` and the end of this process only detach from it. Rejects with a
 * `StartError` when the id is not a running sandbox or the provider cannot attach to it. Without a
 * `provider`, a `local-…` id means the local provider (as on the command line), any other id HF Jobs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (id: string, options: ConnectOptions = {}): Promise<Sandbox> => {
  const { provider: _, signal, httpClient, ...rest } = options
  return open({
    owned: false,
    // A `local-…` id is the local provider's, as on the command line.
    provider: providerOf(options, id.startsWith("local-") ? "local" : "hf"),
    make: EffectSandbox.connect(id, rest),
    signal,
    httpClient
  })
}

/**
 * The constructors as one namespace-like value, for `Sandbox.create(...)` and `Sandbox.connect(...)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Sandbox: {
  readonly create: typeof create
  readonly connect: typeof connect
} = { create, connect }
