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
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type * as Stream from "effect/Stream"
import type * as EffectFiles from "./Files.js"
import { getOrCreateTracked, open } from "./internal/promise/open.js"
import { providerOf, telemetryFor } from "./internal/promise/providers.js"
import * as Providers from "./internal/providers.js"
import type * as LocalSandbox from "./LocalSandbox.js"
import * as EffectSandbox from "./Sandbox.js"

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
 * strings like `"30 seconds"`; `lifetime` (the sandbox's hard limit) also takes `"30m"`, `"2h"`.
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
 * A call's parameters as the facade takes them: its trailing options object joined with
 * {@link CallOptions}, or, when it has none, `CallOptions` as a new last parameter.
 *
 * @since 0.2.0
 * @category models
 */
export type WithCallOptions<P extends ReadonlyArray<unknown>> = P extends readonly []
  ? [options?: CallOptions]
  : P extends readonly [...Array<unknown>, unknown]
    ? [...P, options?: CallOptions]
    : P extends readonly [...infer Init, (infer Last)?]
      ? IsOptionsObject<Last> extends true
        ? [...Init, options?: Last & CallOptions]
        : [...P, options?: CallOptions]
      : [...P, options?: CallOptions]

/** Whether an optional last parameter is an options object (`{ follow?: boolean }`), not a value. */
type IsOptionsObject<T> = [NonNullable<T>] extends [object]
  ? [NonNullable<T>] extends [Uint8Array | ReadonlyArray<unknown> | ((...args: ReadonlyArray<never>) => unknown)]
    ? false
    : true
  : false

/**
 * One member of an Effect API service as the facade has it: an `Effect` becomes a call that returns a
 * Promise, a `Stream` one that returns an async iterator, each taking {@link CallOptions} beside its own
 * options; a nested service (like `files`) is promisified in turn; plain values stay as they are.
 *
 * @since 0.2.0
 * @category models
 */
export type PromisifiedMember<M> =
  M extends Effect.Effect<infer A, infer _E, infer _R>
    ? (options?: CallOptions) => Promise<A>
    : M extends Stream.Stream<infer A, infer _E, infer _R>
      ? (options?: CallOptions) => AsyncIterableIterator<A>
      : M extends (...args: infer P) => Effect.Effect<infer A, infer _E, infer _R>
        ? (...args: WithCallOptions<P>) => Promise<A>
        : M extends (...args: infer P) => Stream.Stream<infer A, infer _E, infer _R>
          ? (...args: WithCallOptions<P>) => AsyncIterableIterator<A>
          : M extends (...args: ReadonlyArray<never>) => unknown
            ? M
            : M extends object
              ? string extends keyof M
                ? M
                : Promisified<M>
              : M

/**
 * An Effect API service as the facade has it, member by member (see {@link PromisifiedMember}). The
 * facade's types are derived from the Effect API's this way, so that the two cannot drift apart; only
 * what genuinely differs (stdin and file sources, handles, disposal) is written by hand.
 *
 * @since 0.2.0
 * @category models
 */
export type Promisified<S> = { readonly [K in keyof S]: PromisifiedMember<S[K]> }

/**
 * The files inside a sandbox, as in the Effect API's `Files` (relative paths resolve against the
 * sandbox's home directory), with Promises and async iterables.
 *
 * @since 0.1.0
 * @category models
 */
export interface Files extends Omit<Promisified<EffectFiles.Files>, "write" | "fromHub" | "toHub"> {
  /**
   * Downloads a file or folder of a Hub repo inside the sandbox, or reads a Storage Bucket with the
   * image's `hf` CLI (see the Effect API's `Files.fromHub`).
   */
  readonly fromHub: {
    (
      source: EffectFiles.HubSource,
      dest: string,
      options?: EffectFiles.FromHubOptions & CallOptions
    ): Promise<EffectFiles.HubDownload>
    (
      source: EffectFiles.HubBucketSource,
      dest: string,
      options?: EffectFiles.FromHubOptions & CallOptions
    ): Promise<EffectFiles.HubBucketDownload>
  }
  /**
   * Commits a sandbox file or folder to a Hub repo in one commit, or uploads it to a Storage Bucket with
   * the image's `hf` CLI (see the Effect API's `Files.toHub`).
   */
  readonly toHub: {
    (
      src: string,
      target: EffectFiles.HubTarget,
      options?: EffectFiles.ToHubOptions & CallOptions
    ): Promise<EffectFiles.HubUpload>
    (
      src: string,
      target: EffectFiles.HubBucketTarget,
      options?: EffectFiles.ToHubOptions & CallOptions
    ): Promise<EffectFiles.HubBucketUpload>
  }
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
}

/**
 * A signal for {@link Process.kill}: a name or a number.
 *
 * @since 0.1.0
 * @category models
 */
export type KillSignal = NonNullable<Parameters<EffectSandbox.Process["kill"]>[0]>

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
export interface ProcessStdin extends Promisified<EffectSandbox.ProcessStdin> {}

/**
 * A process running in the background of a sandbox (see {@link Sandbox.spawn}): the Effect API's
 * `Process` with Promises. `await using` kills it at the end of the block.
 *
 * @since 0.1.0
 * @category models
 */
export interface Process extends Promisified<EffectSandbox.Process>, AsyncDisposable {}

/**
 * A running sandbox: the Effect API's `Sandbox` with Promises and async iterables. `await using`
 * terminates it at the end of the block (a sandbox from {@link connect} is only detached).
 *
 * @since 0.1.0
 * @category models
 */
export interface Sandbox
  extends Omit<
      Promisified<EffectSandbox.Sandbox>,
      "exec" | "execStream" | "spawn" | "spawnScoped" | "process" | "files" | "waitForPort"
    >,
    AsyncDisposable {
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
  /**
   * A handle on a background process by its id (`p-3`) or OS pid, e.g. one started by another client.
   * Rejects with `ProcessNotFoundError` when the sandbox has no such process.
   */
  readonly process: (idOrPid: string | number, options?: CallOptions) => Promise<Process>
  readonly files: Files
  /**
   * Resolves once something in the sandbox listens on `port`; rejects with `PortError("NotListening")`
   * after `timeout` (default 2 minutes), or at once when `process` (a handle of this facade) ends, with
   * the tail of its output.
   *
   * @since 0.2.0
   */
  readonly waitForPort: (
    port: number,
    options?: Omit<EffectSandbox.WaitForPortOptions, "process"> & {
      readonly process?: Process | undefined
    } & CallOptions
  ) => Promise<void>
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
    telemetry: telemetryFor(options)
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
export const connect: {
  (id: string, options?: ConnectOptions): Promise<Sandbox>
  /**
   * Attaches to the running sandbox named `name` (`create({ name })`); none: a `StartError` with reason
   * `NotFound`. @since 0.2.0
   */
  (options: ConnectOptions & { readonly name: string }): Promise<Sandbox>
} = (idOrOptions: string | (ConnectOptions & { readonly name: string }), more: ConnectOptions = {}) => {
  const byName = typeof idOrOptions !== "string"
  const options: ConnectOptions = byName ? idOrOptions : more
  const { provider: _, signal, httpClient, ...rest } = options
  return open({
    owned: false,
    // An id of a provider's own shape (`local-…`) means that provider, as on the command line.
    provider: providerOf(options, byName ? undefined : Providers.owning([idOrOptions])),
    make: byName
      ? EffectSandbox.connect({ ...rest, name: idOrOptions.name })
      : EffectSandbox.connect(idOrOptions, rest),
    signal,
    httpClient
  })
}

/**
 * The running sandbox named `name`, attached to, or else a new one made with these options (see the
 * Effect API's `Sandbox.getOrCreate`): safe against callers racing, in this process or others. A sandbox
 * this call made is the handle's (ended by `terminate`, `await using` and this process's exit, unless
 * `detach`); one it attached to is only detached from.
 *
 * @since 0.2.0
 * @category constructors
 */
export const getOrCreate = (options: CreateOptions & { readonly name: string }): Promise<Sandbox> => {
  const { provider: _, signal, httpClient, ...make } = options
  const opening = getOrCreateTracked(make)
  return open({
    owned: () => opening.created() && (make as { readonly detach?: boolean | undefined }).detach !== true,
    provider: providerOf(options),
    make: opening.make,
    signal,
    httpClient,
    telemetry: telemetryFor(options)
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
  /** @since 0.2.0 */
  readonly getOrCreate: typeof getOrCreate
} = { create, connect, getOrCreate }
