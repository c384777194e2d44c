/**
 * The Promise facade's handles: a sandbox, its files and its processes as objects whose calls run the
 * Effect API's on the shared runtime.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as EffectFiles from "../../Files.js"
import type { Files, Process, Sandbox, StdinInput } from "../../promise.js"
import type * as EffectSandbox from "../../Sandbox.js"
import type { OperationError } from "../../SandboxError.js"
import * as Shutdown from "../shutdown.js"
import { iterate } from "./iterate.js"
import { abortable, run, runExit } from "./runtime.js"

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
    run(files.downloadDir(remoteDir, localDir, options), signal),
  // A repo or a bucket alike: the Effect API's `fromHub` and `toHub` tell them apart.
  fromHub: ((source: EffectFiles.HubSource, dest: string, { signal, ...options }: HubCall = {}) =>
    run(files.fromHub(source, dest, options), signal)) as Files["fromHub"],
  toHub: ((src: string, target: EffectFiles.HubTarget, { signal, ...options }: HubCall = {}) =>
    run(files.toHub(src, target, options), signal)) as Files["toHub"]
})

type HubCall = EffectFiles.FromHubOptions & { readonly signal?: AbortSignal | undefined }

/** A facade `stdin` option as the Effect API takes it. */
const stdinOf = <O extends { readonly stdin?: StdinInput | "pipe" | undefined }>(options: O) => {
  const { stdin, ...rest } = options
  return stdin === undefined ? rest : { ...rest, stdin: stdin === "pipe" ? ("pipe" as const) : sourceOf(stdin) }
}

/** The Effect API's process behind each facade handle, for the calls that take a handle back. */
const effectProcesses = new WeakMap<Process, EffectSandbox.Process<OperationError>>()

const processOf = (process: EffectSandbox.Process<OperationError>): Process => {
  const handle = facadeProcess(process)
  effectProcesses.set(handle, process)
  return handle
}

const facadeProcess = (process: EffectSandbox.Process<OperationError>): Process => ({
  id: process.id,
  pid: process.pid,
  wait: ({ signal } = {}) => run(process.wait, signal),
  stdin: {
    write: (data, { signal } = {}) => run(process.stdin.write(data), signal),
    close: ({ signal } = {}) => run(process.stdin.close(), signal)
  },
  kill: (sig, { signal } = {}) => run(process.kill(sig), signal),
  output: ({ signal, ...options } = {}) => iterate(process.output(options), signal),
  waitForOutput: (pattern, { signal, ...options } = {}) => run(process.waitForOutput(pattern, options), signal),
  // Killed at the end of an `await using` block; one that already exited (or whose sandbox is gone) is fine.
  [Symbol.asyncDispose]: () => runExit(process.kill()).then(() => undefined)
})

/** Builds the handle of an open sandbox, which lives in `scope`; an owned one is registered for exit. */
export const handleOf = (sb: EffectSandbox.Sandbox, scope: Scope.CloseableScope, owned: boolean): Sandbox => {
  let unregister: (() => void) | undefined
  let closing: Promise<void> | undefined
  // Terminating (or closing) runs once, and every caller waits for the same run.
  const close = (first: Effect.Effect<void>): Promise<void> =>
    (closing ??= runExit(Effect.zipRight(first, Scope.close(scope, Exit.void))).then(() => unregister?.()))

  const backstop = sb.backstop
  // A finished program must reach `beforeExit` (which ends the sandbox) even while a local server it
  // started runs.
  backstop?.unref()
  if (owned) {
    unregister = Shutdown.register({
      terminate: () => close(sb.terminate),
      killSync: () => backstop?.killSync()
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
    expose: (port, { signal, ...options } = {}) => run(sb.expose(port, options), signal),
    waitForPort: (port, { signal, process, ...options } = {}) => {
      const effectProcess = process === undefined ? undefined : effectProcesses.get(process)
      return run(sb.waitForPort(port, { ...options, ...(effectProcess ? { process: effectProcess } : {}) }), signal)
    },
    terminate: ({ signal } = {}) =>
      signal?.aborted ? Promise.reject(signal.reason) : abortable(close(sb.terminate), signal),
    sshCommand: ({ signal } = {}) => run(sb.sshCommand(), signal),
    // An owned sandbox is terminated; a connected one is detached (closing its scope leaves it running).
    [Symbol.asyncDispose]: () => close(owned ? sb.terminate : Effect.void),
    metrics: ({ signal, ...options } = {}) => iterate(sb.metrics(options), signal)
  }
}
