/**
 * Hub transfers that run in the sandbox (`files.fromHub`, `files.toHub`): the stdlib-only program
 * `rpc-server/hub_transfer.py` is run there as one command, its spec in argv (no secret in it) and the HF
 * token in that command's environment only, which travels in the authenticated exec request. Its NDJSON
 * lines on stdout become progress events, then the result or a `HubTransferError`. A bucket's transfer
 * (`bucket.ts`) runs its own program the same way ({@link runProgram}).
 */
import { readFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type {
  FromHubOptions,
  HubDownload,
  HubProgress,
  HubSource,
  HubTarget,
  HubUpload,
  ToHubOptions
} from "../../Files.js"
import type { ExecEvent } from "../../Sandbox.js"
import { HubTransferError, InvalidArgumentError, type OperationError } from "../../SandboxError.js"
import type { HubAccess } from "../../SandboxProvider.js"
import * as HfConfig from "../hfJobs/config.js"
import * as Credentials from "../hfJobs/credentials.js"
import { serverScriptPath } from "../serverScript.js"
import { VERSION } from "../version.js"
import { type Context, localFs } from "./context.js"

/** The program's path: beside the server's package, so it is found wherever the server is (a bundle too). */
const programPath: string = join(dirname(serverScriptPath), "hub_transfer.py")

// Read once per process: it is shipped in each transfer's argv (`python3 -S -c`), so the sandbox needs nothing installed.
const programSources = new Map<string, string>()

/**
 * The transfer program's source, read from `path` once it has been read; a failed read is not kept, so a
 * later transfer reads the file again (a file being replaced by an upgrade, a transient EMFILE).
 */
export const readProgram = (path: string = programPath): Effect.Effect<string, Error> =>
  Effect.suspend(() => {
    const known = programSources.get(path)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (cause) => new Error(`cannot read the Hub transfer program ${path}: ${String(cause)}`)
    }).pipe(Effect.tap((source) => Effect.sync(() => programSources.set(path, source))))
  })

const REPO = /^(?:[\w.-]+\/)?[\w.-]+$/
const TYPES = ["model", "dataset", "space"] as const

/** The spec the program gets, checked here so that bad input fails before anything runs. */
const checkRepo = (operation: string, source: HubSource, localName: "dest" | "src", local: string) => {
  const bad = (argument: string, detail: string) =>
    Effect.fail(new InvalidArgumentError({ operation, argument, detail }))
  if (typeof source?.repo !== "string" || !REPO.test(source.repo) || source.repo.includes("..")) {
    return bad("repo", `${JSON.stringify(source?.repo)} is not a Hub repo id: use "namespace/name"`)
  }
  const repoType = source.repoType ?? "model"
  if (!TYPES.includes(repoType)) {
    return bad("repoType", `${JSON.stringify(repoType)} is not one of "model", "dataset", "space"`)
  }
  if (source.revision !== undefined && (typeof source.revision !== "string" || !/^[^\s\0]+$/.test(source.revision))) {
    return bad("revision", `${JSON.stringify(source.revision)} is not a branch, tag or commit`)
  }
  if (source.path !== undefined && (typeof source.path !== "string" || source.path.includes("\0"))) {
    return bad("path", `${JSON.stringify(source.path)} is not a path in the repo`)
  }
  if (typeof local !== "string" || local === "" || local.includes("\0")) {
    return bad(localName, `${JSON.stringify(local)} is not a path in the sandbox: give a file or directory path`)
  }
  return Effect.succeed({ repo: source.repo, repoType, path: source.path ?? "", revision: source.revision ?? "main" })
}

/**
 * The Hub of a provider that names none: `HF_ENDPOINT` (else huggingface.co) and the token
 * `huggingface_hub` would find (`HF_TOKEN`, the token file, …); none is fine for a public repo.
 */
export const discoveredHub = (ctx: Context): Effect.Effect<HubAccess> =>
  // The provider's own reading of `HF_ENDPOINT` (blank or unreadable counts as unset) and of the discovery's environment.
  Effect.map(HfConfig.resolve({}), ({ discovery, endpoint }) => ({
    endpoint,
    token: Effect.gen(function* () {
      const fs = yield* Effect.option(localFs(ctx, "files.fromHub", "the HF token file"))
      if (Option.isNone(fs)) return Option.none<Redacted.Redacted<string>>()
      const credential = yield* Credentials.resolve({
        fs: fs.value,
        env: yield* discovery,
        endpoint,
        userAgent: `hf-sandbox/${VERSION}`,
        explicit: undefined
      })
      return Option.some(credential.token)
    }).pipe(Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>()))
  }))

/**
 * The Hub a transfer in the sandbox talks to, and the environment that gives the token to its one command
 * (`HF_TOKEN`, nothing when there is none): `options.token`, else the provider's, else the one discovered.
 */
const transferAccess = (
  ctx: Context,
  options: FromHubOptions
): Effect.Effect<{ readonly endpoint: string; readonly env: Record<string, string> }> =>
  Effect.gen(function* () {
    const access = ctx.hub ?? (yield* discoveredHub(ctx))
    const token = options.token !== undefined ? Option.some(options.token) : yield* access.token
    const env = Option.match(token, { onNone: () => ({}), onSome: (t) => ({ HF_TOKEN: Redacted.value(t) }) })
    return { endpoint: access.endpoint, env }
  })

interface Done {
  readonly done: true
  readonly commit: string | null
  readonly commitUrl?: string | null
  readonly files: Array<string>
  readonly bytes: number
}

type Line<D> =
  | { readonly file: string; readonly bytes: number; readonly total: number | null }
  | D
  | { readonly error: { readonly reason: string; readonly status: number | null; readonly detail: string } }

/** What a transfer program said: its `done` line (`D`), or its error, and the tail of its stderr. */
export interface Outcome<D extends { readonly done: true } = Done> {
  result: D | undefined
  error: HubTransferError | undefined
  stderr: string
}

/** Keeps the last characters of stderr; a character split across chunks is decoded whole. */
const stderrTail = <D extends { readonly done: true }>(outcome: Outcome<D>) => {
  const decoder = new TextDecoder()
  return (data: Uint8Array | undefined) => {
    const text = data === undefined ? decoder.decode() : decoder.decode(data, { stream: true })
    outcome.stderr = (outcome.stderr + text).slice(-2000)
  }
}

/** Applies one line of the program's stdout to the outcome, calling `onProgress` for progress lines. */
const onLine = <D extends { readonly done: true }>(
  line: string,
  outcome: Outcome<D>,
  failure: (reason: HubTransferError["reason"], detail: string, status?: number) => HubTransferError,
  onProgress: ((progress: HubProgress) => void) | undefined
) => {
  let parsed: Line<D>
  try {
    parsed = JSON.parse(line)
  } catch {
    return
  }
  if ("error" in parsed) {
    const reason = parsed.error.reason as HubTransferError["reason"]
    outcome.error = failure(reason, parsed.error.detail, parsed.error.status ?? undefined)
  } else if ("done" in parsed) {
    outcome.result = parsed
  } else if (onProgress !== undefined) {
    onProgress({ file: parsed.file, bytes: parsed.bytes, total: parsed.total ?? undefined })
  }
}

/** Folds the command's events into the outcome: stdout split into lines, the tail of stderr kept. */
export const collect = <E, D extends { readonly done: true }>(
  events: Stream.Stream<ExecEvent, E>,
  outcome: Outcome<D>,
  handle: (line: string) => void
): Effect.Effect<void, E> => {
  const stderr = stderrTail(outcome)
  return events.pipe(
    Stream.filterMap((event) => {
      if (event._tag === "Stderr") stderr(event.data)
      return event._tag === "Stdout" ? Option.some(event.data) : Option.none()
    }),
    Stream.decodeText(),
    Stream.splitLines,
    Stream.runForEach((line) => Effect.sync(() => handle(line))),
    Effect.ensuring(Effect.sync(() => stderr(undefined)))
  )
}

/**
 * Runs a transfer program (`program`: its path) with `spec` in the sandbox, the Hub's endpoint added to the
 * spec and the token in the command's environment only: its `done` line, or the typed error it reported
 * (`what` names the repo or bucket in errors). Its progress lines go to `options.onProgress`.
 */
export const runProgram = <D extends { readonly done: true }>(
  ctx: Context,
  operation: string,
  what: string,
  program: string,
  spec: Record<string, unknown>,
  options: FromHubOptions
): Effect.Effect<D, OperationError> =>
  Effect.gen(function* () {
    const { endpoint, env } = yield* transferAccess(ctx, options)
    const failure = (reason: HubTransferError["reason"], detail: string, status?: number) =>
      new HubTransferError({ operation, repo: what, reason, detail, status })
    const source = yield* Effect.mapError(readProgram(program), (error) => failure("Failed", error.message))
    const command = ["python3", "-S", "-c", source, JSON.stringify({ ...spec, endpoint })]
    const outcome: Outcome<D> = { result: undefined, error: undefined, stderr: "" }
    yield* collect(ctx.execStream(command, { env }), outcome, (line) =>
      onLine(line, outcome, failure, options.onProgress)
    )
    if (outcome.error !== undefined) return yield* Effect.fail(outcome.error)
    if (outcome.result === undefined) {
      const said = outcome.stderr.trim()
      return yield* Effect.fail(
        failure("Failed", `the transfer ended without a result${said === "" ? "" : `: ${said}`}`)
      )
    }
    return outcome.result
  })

/** Runs `hub_transfer.py` with `spec` (see {@link runProgram}). */
const run = (
  ctx: Context,
  operation: string,
  spec: Record<string, unknown> & { readonly repo: string; readonly repoType: string },
  options: FromHubOptions
): Effect.Effect<Done, OperationError> =>
  runProgram<Done>(ctx, operation, `${spec.repoType} ${spec.repo}`, programPath, spec, options)

/** `files.fromHub`. */
export const fromHub = (
  ctx: Context,
  source: HubSource,
  dest: string,
  options: FromHubOptions = {}
): Effect.Effect<HubDownload, OperationError> =>
  Effect.flatMap(checkRepo("files.fromHub", source, "dest", dest), (checked) =>
    Effect.map(run(ctx, "files.fromHub", { op: "fromHub", dest, ...checked }, options), (done) => ({
      commit: done.commit ?? undefined,
      files: done.files,
      bytes: done.bytes
    }))
  )

/** `files.toHub`. */
export const toHub = (
  ctx: Context,
  src: string,
  target: HubTarget,
  options: ToHubOptions = {}
): Effect.Effect<HubUpload, OperationError> =>
  Effect.flatMap(checkRepo("files.toHub", target, "src", src), (checked) => {
    if (target.message !== undefined && (typeof target.message !== "string" || target.message.trim() === "")) {
      return Effect.fail(
        new InvalidArgumentError({
          operation: "files.toHub",
          argument: "message",
          detail: `${JSON.stringify(target.message)} is not a commit message: give a non-empty string`
        })
      )
    }
    const spec = { op: "toHub", src, message: target.message, ...checked }
    return Effect.map(run(ctx, "files.toHub", spec, options), (done) => ({
      commit: done.commit ?? "",
      commitUrl: done.commitUrl ?? "",
      files: done.files,
      bytes: done.bytes
    }))
  })
