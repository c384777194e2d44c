/**
 * An owned local sandbox: a server that is this process's child, with a pipe to it, whose life ends
 * with the scope. Every way it can end leaves nothing behind: the scope's release stops the server and
 * every process it started and removes the working directory; the server's stdin watch and supervisor
 * do the same when this process dies; a sweep removes what a crash of both left (internal/local/ownedDirs).
 */
import * as NodeOs from "node:os"
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Protocol from "../../Protocol.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as TransferJournal from "../files/journal.js"
import * as HostLabels from "../hostLabels.js"
import type { LocalContext } from "./context.js"
import { startError } from "./errors.js"
import { decodeExited, exitNews, exitText, signalOf } from "./exit.js"
import { captureStderr, makeTail, type Tail } from "./logs.js"
import * as Names from "./names.js"
import * as OwnedDirs from "./ownedDirs.js"
import * as Owner from "./owner.js"
import * as Server from "./server.js"
import * as LocalState from "./state.js"
import { backstop, stopChild } from "./stop.js"
import * as Workdir from "./workdir.js"

/** A started owned server. */
interface Started {
  readonly proc: CommandExecutor.Process
  /** The interpreter that runs it. */
  readonly python: string
  readonly workdir: string
  readonly token: string
}

/** What is known of a started server as it runs: its announcement, its exit, its log. */
interface Watched {
  readonly listening: Deferred.Deferred<Protocol.ListeningLine, StartError>
  readonly died: Deferred.Deferred<never, StartError>
  /** Why the server ended: said by its supervisor as soon as it knows, before it cleans up. */
  readonly ended: Deferred.Deferred<string>
  readonly logs: (options: SandboxProvider.LogOptions) => Stream.Stream<string>
  readonly tail: Tail
}

export const provision = (ctx: LocalContext, spec: SandboxProvider.Spec) =>
  Effect.gen(function* () {
    const own = yield* Names.labelsOf(spec)
    // A pool host is found by its pool and reached by id (`Sandbox.connect("<host>.<local>")`): it has a state file.
    const labels = spec.host === undefined ? own : { ...own, ...HostLabels.of(spec.host) }
    if (spec.name !== undefined) yield* nameFree(ctx, spec.name)
    if (spec.host !== undefined) yield* Names.ensureStateDirectory(ctx.stateDir)
    const workdir = yield* makeWorkdir(ctx)
    const started = yield* startServer(ctx, spec, workdir)
    const watched = yield* watch(started)
    const announce = yield* Deferred.await(watched.listening).pipe(Server.announcedWithin(spec, watched.tail.get))
    const made = endpoint(started, watched, announce)
    if (spec.name !== undefined || spec.host !== undefined) {
      yield* recorded(ctx, spec, { started, announce, id: made.id, name: spec.name, labels })
    }
    return {
      ...made,
      lifetime: spec.lifetime,
      ...(spec.name !== undefined ? { details: { ...made.details, name: spec.name } } : {})
    }
  })

/** Before starting a named sandbox: its name is free in the state directory (which is made if missing). */
const nameFree = (ctx: LocalContext, name: string) =>
  Effect.zipRight(Names.ensureStateDirectory(ctx.stateDir), Names.checkFree(ctx.stateDir, name))

/**
 * A named owned sandbox (and a pool host) gets a state file too, so that `connect({ name })` (`connect(id)`)
 * and `list` find it while it runs; it is removed first when the scope closes (a crash leaves one whose
 * server is gone: stale).
 */
const recorded = (
  ctx: LocalContext,
  spec: SandboxProvider.Spec,
  sandbox: {
    readonly started: Started
    readonly announce: Protocol.ListeningLine
    readonly id: string
    readonly name: string | undefined
    readonly labels: Readonly<Record<string, string>> | undefined
  }
) => {
  const state = LocalState.record({
    id: sandbox.id,
    server: Owner.of(sandbox.started.proc.pid),
    serverPid: sandbox.announce.pid,
    port: sandbox.announce.port,
    token: sandbox.started.token,
    workdir: sandbox.started.workdir,
    python: sandbox.started.python,
    serverVersion: sandbox.announce.version,
    idleTimeout: spec.idleTimeout,
    labels: sandbox.labels,
    detached: false
  })
  const name = sandbox.name
  return Effect.acquireRelease(
    name !== undefined
      ? Names.claim(ctx.stateDir, { ...state, name })
      : Effect.try({
          try: () => LocalState.write(ctx.stateDir, state),
          catch: (e) => startError("SpawnFailed", `cannot write the state file in ${ctx.stateDir}: ${String(e)}`)
        }),
    // The state file and log only: the working directory is the scope's own to remove, last.
    () => Effect.sync(() => LocalState.removeFiles(ctx.stateDir, sandbox.id, undefined))
  )
}

/** The working directory, made and claimed, with its release: the last of the sandbox's. */
const makeWorkdir = (ctx: LocalContext): Effect.Effect<string, StartError, Scope.Scope> =>
  Effect.gen(function* () {
    // What a crashed client and its server left behind is swept first (see internal/local/ownedDirs).
    yield* OwnedDirs.sweep(ctx.tempDir ?? NodeOs.tmpdir())
    // Acquired first, so released last: after every process that could still write into it is gone.
    // Claimed by this process at once, by the server's supervisor once it runs.
    return yield* Effect.acquireRelease(
      Workdir.create(ctx, (dir) => OwnedDirs.claim(dir, process.pid)),
      (dir) =>
        ctx.fs.remove(dir, { recursive: true }).pipe(
          Effect.interruptible,
          Effect.timeout("10 seconds"),
          // Where the server had no supervisor (not Linux) and was SIGKILLed, its unfinished writes.
          Effect.zipRight(Effect.try(() => TransferJournal.replay(dir))),
          Effect.zipRight(Effect.try(() => OwnedDirs.unclaim(dir))),
          Effect.ignore
        )
    )
  })

/** Starts the server in `workdir`, with its release. */
const startServer = (
  ctx: LocalContext,
  spec: SandboxProvider.Spec,
  workdir: string
): Effect.Effect<Started, StartError, Scope.Scope> =>
  Effect.gen(function* () {
    const token = Server.newToken()
    const args = [
      ...Server.serverArgs(ctx.script, spec),
      // The server watches its stdin: when this process dies, even by SIGKILL, the pipe closes and
      // the server shuts down and kills what it started, so a crashed client leaks nothing.
      "--exit-on-stdin-eof",
      // Linux: a supervisor above the server kills whatever the server leaves, however it ends (even
      // SIGKILL or the OOM killer), then removes the working directory.
      "--supervise",
      "--remove-on-exit",
      workdir,
      // Outside the working directory, where no command of the sandbox removes it by accident.
      "--journal",
      TransferJournal.journalPath(workdir)
    ]
    const resolved = yield* ctx.interpreter(Server.serverPath(spec))
    const command = Command.make(resolved, ...args).pipe(
      Command.workingDirectory(workdir),
      Command.env(Server.serverEnv(spec, workdir, token), { extendEnv: false })
    )

    const proc = yield* ctx.executor
      .start(command)
      .pipe(Effect.mapError((e) => startError("SpawnFailed", Server.cannotRun(ctx.python, e.message), undefined, e)))
    yield* Effect.try(() => OwnedDirs.claim(workdir, proc.pid)).pipe(Effect.ignore)

    // Runs before Command.start's own release (finalizers are LIFO), which could wait forever.
    yield* Effect.addFinalizer(() => stopChild(proc, ctx.stopTimeout))
    return { proc, python: resolved, workdir, token }
  })

/** Follows the server's stdout (its announcement, its supervisor's news), stderr (its log) and exit. */
const watch = ({ proc }: Started): Effect.Effect<Watched, never, Scope.Scope> =>
  Effect.gen(function* () {
    const tail = makeTail()
    const listening = yield* Deferred.make<Protocol.ListeningLine, StartError>()
    const died = yield* Deferred.make<never, StartError>()
    const ended = yield* Deferred.make<string>()

    yield* proc.stdout.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.runForEach((line) =>
        Option.match(Server.decodeListening(line), {
          onNone: () =>
            Option.match(decodeExited(line), {
              onNone: () => Effect.void,
              onSome: (exited) => Deferred.succeed(ended, exitText(exited.exit_code, exited.signal))
            }),
          onSome: (announce) => Deferred.succeed(listening, announce)
        })
      ),
      Effect.ignore,
      Effect.forkScoped
    )
    // The server's own log (its stderr) is kept, bounded, for `sb.logs()`; followers get new lines live.
    const stderr = yield* captureStderr(proc.stderr, tail)
    // The server's exit, whenever it happens, is reported with the last words it wrote.
    yield* proc.exitCode.pipe(
      Effect.either,
      Effect.flatMap((exit) =>
        Effect.gen(function* () {
          const how = exit._tag === "Right" ? exitText(exit.right, null) : signalOf(exit.left.message)
          yield* Deferred.succeed(ended, how)
          yield* stderr.done.await.pipe(Effect.timeout("1 second"), Effect.ignore)
          const error = startError(
            "ServerExited",
            `the sandbox server exited (${yield* Deferred.await(ended)})`,
            tail.get()
          )
          yield* Deferred.fail(listening, error)
          yield* Deferred.fail(died, error)
        })
      ),
      Effect.forkScoped
    )
    return { listening, died, ended, logs: stderr.logs, tail }
  })

const endpoint = (started: Started, watched: Watched, announce: Protocol.ListeningLine): SandboxProvider.Endpoint => ({
  id: LocalState.newId(),
  provider: "local",
  baseUrl: `http://127.0.0.1:${announce.port}`,
  token: Redacted.make(started.token),
  died: Deferred.await(watched.died),
  exitReason: exitNews(
    Deferred.await(watched.ended).pipe(Effect.map((how) => Option.some(`the sandbox server exited (${how})`))),
    Owner.of(announce.pid)
  ),
  logs: watched.logs,
  readRangeSize: Server.WHOLE_FILE,
  directReads: true,
  hardware: "local",
  expose: Server.expose,
  onThisMachine: true,
  backstop: backstop(started.proc.pid, started.workdir),
  details: {
    pid: started.proc.pid,
    serverPid: announce.pid,
    workdir: started.workdir,
    python: started.python,
    port: announce.port,
    serverVersion: announce.version,
    detached: false
  }
})
