/**
 * A detached local sandbox. Its server runs in a session of its own (setsid), with no pipe to this
 * process once it has announced its port: it outlives this process, and its idle timeout is what ends it
 * if nobody does. What is needed to reach it again is kept in its state file (internal/local/state).
 */
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Protocol from "../../Protocol.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import * as TransferJournal from "../files/journal.js"
import * as HostLabels from "../hostLabels.js"
import * as StartErrors from "../startError.js"
import type { LocalContext } from "./context.js"
import { startError, unknownSandbox } from "./errors.js"
import { detachedExitReason, exitNews, exitText, signalOf } from "./exit.js"
import { logLines, tailOf } from "./logs.js"
import * as Names from "./names.js"
import * as Owner from "./owner.js"
import * as Server from "./server.js"
import * as LocalState from "./state.js"
import { backstop, stop, stopServer } from "./stop.js"
import * as Workdir from "./workdir.js"

/**
 * The endpoint of a sandbox found by its state file (detached, or named and owned by some scope), or of a
 * detached one made here.
 */
const endpoint = (
  ctx: LocalContext,
  state: LocalState.State,
  died: Effect.Effect<never, StartError>
): SandboxProvider.Endpoint => {
  const log = LocalState.logPath(ctx.stateDir, state.id)
  const server = LocalState.serverOf(state)
  return {
    id: state.id,
    provider: "local",
    baseUrl: `http://127.0.0.1:${state.port}`,
    token: Redacted.make(state.token),
    died,
    logs: (logOptions) => logLines(log, logOptions, () => Owner.isRunning(state)),
    // A file written before the server's own pid was recorded leaves only the log's news to wait for.
    exitReason: server === undefined ? detachedExitReason(log) : exitNews(detachedExitReason(log), server),
    kill: stop(ctx.stateDir, state, ctx.stopTimeout),
    readRangeSize: Server.WHOLE_FILE,
    directReads: true,
    hardware: "local",
    expose: Server.expose,
    onThisMachine: true,
    backstop: backstop(state.pid, state.workdir),
    details: {
      pid: state.pid,
      workdir: state.workdir,
      python: state.python,
      port: state.port,
      serverVersion: state.serverVersion,
      detached: state.detached ?? true,
      idleTimeoutSeconds: state.idleTimeoutSeconds,
      ...(server !== undefined ? { serverPid: server.pid } : {}),
      ...(state.name !== undefined ? { name: state.name } : {})
    }
  }
}

/** A detached server being started: what is needed to spawn it and to say what became of it. */
interface Launch {
  readonly python: string
  readonly workdir: string
  readonly log: string
  readonly token: string
}

export const provision = (ctx: LocalContext, spec: SandboxProvider.Spec) =>
  Effect.gen(function* () {
    const id = LocalState.newId()
    yield* Names.ensureStateDirectory(ctx.stateDir)
    const own = yield* Names.labelsOf(spec)
    const labels = spec.host === undefined ? own : { ...own, ...HostLabels.of(spec.host) }
    if (spec.name !== undefined) yield* Names.checkFree(ctx.stateDir, spec.name)
    const workdir = yield* Workdir.create(ctx)
    const log = LocalState.logPath(ctx.stateDir, id)
    let server: Owner.Owner | undefined
    // Once started, the sandbox is left running when the scope closes (with success: see Spec.detach);
    // a failed or interrupted start stops the server and removes everything it had.
    yield* Effect.addFinalizer((exit) =>
      Exit.isSuccess(exit)
        ? Effect.void
        : (server === undefined ? Effect.void : stopServer(server, ctx.stopTimeout)).pipe(
            Effect.zipRight(Effect.sync(() => LocalState.removeFiles(ctx.stateDir, id, workdir)))
          )
    )

    const token = Server.newToken()
    const launch: Launch = { python: yield* ctx.interpreter(Server.serverPath(spec)), workdir, log, token }
    const child = yield* spawn(ctx, spec, launch)
    if (child.pid !== undefined) server = Owner.of(child.pid)
    const died = yield* Deferred.make<never, StartError>()
    child.once("exit", (code, signal) =>
      Deferred.unsafeDone(
        died,
        Exit.fail(
          startError(
            "ServerExited",
            `the sandbox server exited (${code !== null ? exitText(code, null) : signalOf(String(signal))})`,
            tailOf(log)
          )
        )
      )
    )

    const announce = yield* awaitAnnouncement(ctx, child, died).pipe(Server.announcedWithin(spec, () => tailOf(log)))
    // Nothing more comes on stdout; from here on this process holds nothing of the server's.
    child.stdout?.destroy()
    child.unref()

    const state = LocalState.record({
      id,
      server: server!,
      serverPid: announce.pid,
      port: announce.port,
      token,
      workdir,
      python: launch.python,
      serverVersion: announce.version,
      idleTimeout: spec.idleTimeout,
      labels,
      detached: true
    })
    // A name is taken with the state file's write, if it is still free (see ./names).
    yield* spec.name !== undefined
      ? Names.claim(ctx.stateDir, { ...state, name: spec.name })
      : Effect.try({
          try: () => LocalState.write(ctx.stateDir, state),
          catch: (e) => startError("SpawnFailed", `cannot write the state file in ${ctx.stateDir}: ${String(e)}`)
        })
    return { ...endpoint(ctx, state, Deferred.await(died)), lifetime: spec.lifetime }
  })

/** Spawns the server in a session of its own, its stderr into its log. */
const spawn = (ctx: LocalContext, spec: SandboxProvider.Spec, launch: Launch) => {
  // As for an owned sandbox, a supervisor kills what the server leaves and removes the workdir.
  const args = [
    ...Server.serverArgs(ctx.script, spec),
    "--supervise",
    "--remove-on-exit",
    launch.workdir,
    "--journal",
    TransferJournal.journalPath(launch.workdir)
  ]
  // The token travels in the environment (the server removes it from there), never on a command line.
  return Effect.try({
    try: () => {
      const fd = NodeFs.openSync(launch.log, "a", 0o600)
      try {
        return ChildProcess.spawn(launch.python, args, {
          cwd: launch.workdir,
          env: Server.serverEnv(spec, launch.workdir, launch.token),
          detached: true,
          stdio: ["ignore", "pipe", fd]
        })
      } finally {
        NodeFs.closeSync(fd)
      }
    },
    catch: (e) => startError("SpawnFailed", Server.cannotRun(ctx.python, String(e)), undefined, e)
  })
}

/** The server's announcement on its stdout; its exit before that fails with `died`'s error. */
const awaitAnnouncement = (
  ctx: LocalContext,
  child: ChildProcess.ChildProcess,
  died: Deferred.Deferred<never, StartError>
) =>
  Effect.async<Protocol.ListeningLine, StartError>((resume) => {
    let buffer = ""
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString("utf8")
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const found = Server.decodeListening(buffer.slice(0, nl))
        buffer = buffer.slice(nl + 1)
        if (Option.isSome(found)) {
          cleanup()
          return resume(Effect.succeed(found.value))
        }
      }
    }
    const onError = (e: Error) => {
      cleanup()
      resume(Effect.fail(startError("SpawnFailed", Server.cannotRun(ctx.python, e.message), undefined, e)))
    }
    const onExit = () => {
      cleanup()
      resume(Deferred.await(died))
    }
    const cleanup = () => {
      child.stdout?.off("data", onData)
      child.off("error", onError)
      child.off("exit", onExit)
    }
    child.stdout?.on("data", onData)
    child.once("error", onError)
    child.once("exit", onExit)
    return Effect.sync(cleanup)
  })

/**
 * Attaching to a detached sandbox needs only its state file. Closing the scope detaches again. A
 * failure started nothing: it says what could not be done (see internal/startError).
 */
export const connect = (ctx: LocalContext, id: string) =>
  Effect.mapError(attach(ctx, id), (error) => StartErrors.during(`attach to sandbox ${id}`, error))

const attach = (ctx: LocalContext, id: string) =>
  Effect.suspend(() => {
    const state = LocalState.read(ctx.stateDir, id)
    if (state === undefined) {
      return Effect.fail(
        unknownSandbox(
          id,
          ctx.stateDir,
          " (it was never created with this state directory, was killed, or stopped after its idle timeout)"
        )
      )
    }
    if (!Owner.isRunning(state)) {
      const tail = tailOf(LocalState.logPath(ctx.stateDir, id))
      LocalState.removeFiles(ctx.stateDir, id, state.workdir)
      return Effect.fail(
        startError("ServerExited", `local sandbox ${id} is no longer running (idle timeout, or killed)`, tail)
      )
    }
    const gone = Effect.flatMap(Schedules.Schedules, (schedules) =>
      Effect.repeat(
        Effect.sync(() => Owner.isRunning(state)),
        {
          schedule: schedules.localLivenessPoll,
          until: (running) => !running
        }
      )
    ).pipe(
      Effect.zipRight(
        Effect.fail(
          startError("ServerExited", `local sandbox ${id} stopped`, tailOf(LocalState.logPath(ctx.stateDir, id)))
        )
      )
    )
    return Effect.succeed(endpoint(ctx, state, gone))
  })
