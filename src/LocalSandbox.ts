/**
 * The local provider: runs the same in-sandbox server as a child process of this machine, in a
 * fresh temp directory. It needs no account and starts in milliseconds, which makes it the default
 * for the quick start and for tests. It is **not** an isolation boundary: commands run as your user.
 *
 * A sandbox made with `detach: true` runs its server in a session of its own, so it outlives this
 * process; what is needed to reach it again (id, pid, port, token) is kept in a state file only the user
 * can read, under {@link stateDirectory}. `Sandbox.connect(id)` attaches to it, {@link list} shows the
 * live ones, {@link kill} stops one, and its idle timeout (default 10 minutes) stops it when nobody
 * talks to it any more.
 *
 * @since 0.1.0
 */

import * as ChildProcess from "node:child_process"
import { randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TransferJournal from "./internal/files/journal.js"
import * as LocalState from "./internal/localState.js"
import * as OwnedDirs from "./internal/ownedDirs.js"
import * as ProcessTree from "./internal/processTree.js"
import { serverScriptPath } from "./internal/serverScript.js"
import * as StartErrors from "./internal/startError.js"
import * as Protocol from "./Protocol.js"
import { StartError } from "./SandboxError.js"
import * as SandboxProvider from "./SandboxProvider.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The Python interpreter to run the server with. Default `"python3"` (found on `PATH`). */
  readonly python?: string | undefined
  /** Path of the server script. Default: the `rpc-server/server.py` shipped with this package. */
  readonly serverScript?: string | undefined
  /** Where sandbox working directories are created. Default: the OS temp directory. */
  readonly tempDir?: string | undefined
  /** How long the server gets to stop after SIGTERM before everything left is SIGKILLed. Default 3 s. */
  readonly stopTimeout?: Duration.DurationInput | undefined
  /**
   * Where detached sandboxes keep their state files and logs. Default: `HF_SANDBOX_STATE_DIR`, else
   * `$XDG_STATE_HOME/hf-sandbox/local`, else `~/.local/state/hf-sandbox/local`.
   */
  readonly stateDir?: string | undefined
}

/** Host variables a command needs to behave normally; everything else (tokens, keys) stays out. */
const INHERITED_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"]

const STDERR_TAIL_BYTES = 8 * 1024
const LOG_LINES = 10_000
/** Reads into memory go in one request: on loopback there is no round trip for parallel ranges to hide. */
const WHOLE_FILE = Number.MAX_SAFE_INTEGER

/** The interpreter's and the server's arguments, the same for an owned and a detached sandbox. */
const serverArgs = (script: string, spec: SandboxProvider.Spec): Array<string> => [
  "-u", // unbuffered: the listening line and any error reach us at once
  "-S", // no site-packages: the server is stdlib-only, and skipping them saves start time
  script,
  "--host",
  "127.0.0.1",
  "--port",
  "0",
  ...(spec.idleTimeout
    ? [
        "--idle-timeout",
        String(Duration.toSeconds(spec.idleTimeout)),
        // Not idle while this process is still reaching it (a loaded machine can take longer than a short idle).
        "--start-grace",
        String(Math.ceil(Duration.toSeconds(spec.startTimeout)))
      ]
    : []),
  ...(spec.lifetime ? ["--lifetime", String(Duration.toSeconds(spec.lifetime))] : [])
]

const decodeListening = Schema.decodeUnknownOption(Schema.parseJson(Protocol.ListeningLine))

/** The supervisor's line on stdout when the server has ended (`--supervise`). */
const decodeExited = Schema.decodeUnknownOption(
  Schema.parseJson(
    Schema.Struct({
      event: Schema.Literal("exited"),
      exit_code: Schema.NullOr(Schema.Number),
      signal: Schema.NullOr(Schema.Number)
    })
  )
)

/** How long a transport failure waits for the news of the server's exit before it is reported as is. */
const EXIT_NEWS_GRACE = Duration.seconds(1)

/** The supervisor's line in a detached sandbox's log when its server has ended (see server.py `supervise`). */
const SUPERVISOR_SAW = /supervisor: the server (?:was killed by signal (\d+)|exited with status (\d+))/g

/**
 * Why a detached sandbox's server ended, from its log: no pipe to its supervisor is left to say it. The
 * line is written the moment the server has ended, so a socket error waits for it a moment (on the real
 * clock, as for an owned sandbox).
 */
const detachedExitReason = (log: string): Effect.Effect<Option.Option<string>> =>
  Effect.suspend(() => {
    const found = [...LocalState.tailOf(log).matchAll(SUPERVISOR_SAW)].at(-1)
    return found === undefined
      ? Effect.fail("not yet" as const)
      : Effect.succeed(
          `the sandbox server exited (${found[1] !== undefined ? exitText(null, Number(found[1])) : exitText(Number(found[2]), null)})`
        )
  }).pipe(
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeoutOption(EXIT_NEWS_GRACE),
    Effect.orElseSucceed(() => Option.none()),
    Effect.withClock(Clock.make())
  )

const exitText = (code: number | null, signal: number | null): string =>
  signal !== null ? `signal ${signal}` : `exit code ${code}`

/** `signal 9` from a Node signal name found in `text` (an exit error), else the text itself. */
const signalOf = (text: string): string => {
  const name = /\b(SIG[A-Z0-9]+)\b/.exec(text)?.[1]
  const number = name === undefined ? undefined : NodeOs.constants.signals[name as NodeJS.Signals]
  return number === undefined ? text : `signal ${number}`
}

/** The server's environment: a minimal host environment, the sandbox's own, its secrets and its token. */
const serverEnv = (spec: SandboxProvider.Spec, workdir: string, token: string): Record<string, string> => ({
  ...Object.fromEntries(
    INHERITED_ENV.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]!]]))
  ),
  TMPDIR: workdir,
  ...spec.env,
  ...Object.fromEntries(Object.entries(spec.secrets).map(([k, v]) => [k, Redacted.value(v)])),
  SBX_TOKEN: token
})

const cannotRun = (python: string, message: string) =>
  /ENOENT/.test(message)
    ? `cannot run "${python}": not found. Install Python 3.8+ or pass { python: "/path/to/python3" } to LocalSandbox.layer`
    : `cannot run "${python}": ${message}`

/** Keeps the last few KiB the server wrote to stderr, for start errors. */
const makeTail = () => {
  let text = ""
  return {
    push: (chunk: string) => {
      text = (text + chunk).slice(-STDERR_TAIL_BYTES)
    },
    get: () => text
  }
}

/**
 * Builds the provider from the platform services it needs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<SandboxProvider.Service, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    const python = options.python ?? "python3"
    const script = options.serverScript ?? serverScriptPath
    const stopTimeout = Duration.decode(options.stopTimeout ?? "3 seconds")

    // `python3` on PATH is often a shim (pyenv, asdf) that costs tens of milliseconds per start. The real
    // interpreter is looked up once per PATH and reused; if the lookup fails, `python` is spawned as given
    // and the spawn reports the problem.
    const interpreters = new Map<string, Effect.Effect<string>>()
    const interpreter = (path: string | undefined) =>
      Effect.suspend(() => {
        const key = path ?? ""
        let found = interpreters.get(key)
        if (found === undefined) {
          found = executor
            .string(
              Command.make(python, "-S", "-c", "import sys; print(sys.executable)").pipe(
                Command.env(path === undefined ? {} : { PATH: path })
              )
            )
            .pipe(
              Effect.map((out) => out.trim() || python),
              Effect.timeout("10 seconds"),
              Effect.orElseSucceed(() => python),
              Effect.cached,
              Effect.runSync
            )
          interpreters.set(key, found)
        }
        return found
      })

    const provisionOwned = (spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const fail = (reason: StartError["reason"], detail: string, stderrTail?: string, cause?: unknown) =>
          new StartError({ provider: "local", reason, detail, stderrTail, cause })

        // What a crashed client and its server left behind is swept first (see internal/ownedDirs).
        yield* OwnedDirs.sweep(options.tempDir ?? NodeOs.tmpdir())
        // Acquired first, so released last: after every process that could still write into it is gone.
        // Claimed by this process at once, by the server's supervisor once it runs.
        const workdir = yield* Effect.acquireRelease(
          fs
            .makeTempDirectory({ prefix: "hf-sandbox-", ...(options.tempDir ? { directory: options.tempDir } : {}) })
            .pipe(
              Effect.tap((dir) => Effect.try(() => OwnedDirs.claim(dir, process.pid))),
              Effect.mapError((e) => fail("SpawnFailed", `cannot create a working directory: ${e.message}`))
            ),
          (dir) =>
            fs.remove(dir, { recursive: true }).pipe(
              Effect.interruptible,
              Effect.timeout("10 seconds"),
              // Where the server had no supervisor (not Linux) and was SIGKILLed, its unfinished writes.
              Effect.zipRight(Effect.try(() => TransferJournal.replay(dir))),
              Effect.zipRight(Effect.try(() => OwnedDirs.unclaim(dir))),
              Effect.ignore
            )
        )

        const token = randomBytes(32).toString("hex")
        const args = [
          ...serverArgs(script, spec),
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
        const resolved = yield* interpreter(spec.env.PATH ?? process.env.PATH)
        const command = Command.make(resolved, ...args).pipe(
          Command.workingDirectory(workdir),
          Command.env(serverEnv(spec, workdir, token), { extendEnv: false })
        )

        const proc = yield* executor
          .start(command)
          .pipe(Effect.mapError((e) => fail("SpawnFailed", cannotRun(python, e.message), undefined, e)))
        yield* Effect.try(() => OwnedDirs.claim(workdir, proc.pid)).pipe(Effect.ignore)

        // Runs before Command.start's own release (finalizers are LIFO), which could wait forever.
        yield* Effect.addFinalizer(() =>
          Effect.gen(function* () {
            const pid = proc.pid
            const family = yield* ProcessTree.descendants(pid)
            ProcessTree.signal(pid, "SIGTERM")
            yield* proc.exitCode.pipe(Effect.ignore, Effect.interruptible, Effect.timeout(stopTimeout), Effect.ignore)
            ProcessTree.signal(-pid, "SIGKILL")
            ProcessTree.signal(pid, "SIGKILL")
            for (const child of [...family, ...(yield* ProcessTree.descendants(pid))]) {
              ProcessTree.signal(child, "SIGKILL")
            }
          })
        )

        const tail = makeTail()
        const listening = yield* Deferred.make<Protocol.ListeningLine, StartError>()
        const died = yield* Deferred.make<never, StartError>()
        // Why the server ended: said by its supervisor as soon as it knows, before it cleans up.
        const ended = yield* Deferred.make<string>()

        yield* proc.stdout.pipe(
          Stream.decodeText(),
          Stream.splitLines,
          Stream.runForEach((line) =>
            Option.match(decodeListening(line), {
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
        const log: Array<string> = []
        const logHub = yield* PubSub.unbounded<string>()
        const stderrDone = yield* proc.stderr.pipe(
          Stream.decodeText(),
          Stream.splitLines,
          Stream.runForEach((line) =>
            Effect.suspend(() => {
              tail.push(`${line}\n`)
              log.push(line)
              if (log.length > LOG_LINES) log.shift()
              return PubSub.publish(logHub, line)
            })
          ),
          Effect.ignore,
          Effect.forkScoped
        )
        const logs = (options: SandboxProvider.LogOptions): Stream.Stream<string> =>
          Stream.unwrapScoped(
            Effect.gen(function* () {
              const live = options.follow ? yield* PubSub.subscribe(logHub) : undefined
              const snapshot = options.tail === undefined ? [...log] : log.slice(-options.tail)
              const rest =
                live === undefined
                  ? Stream.empty
                  : Stream.fromQueue(live).pipe(Stream.interruptWhen(Fiber.await(stderrDone)))
              return Stream.fromIterable(snapshot).pipe(Stream.concat(rest))
            })
          )
        // The server's exit, whenever it happens, is reported with the last words it wrote.
        yield* proc.exitCode.pipe(
          Effect.either,
          Effect.flatMap((exit) =>
            Effect.gen(function* () {
              const how = exit._tag === "Right" ? exitText(exit.right, null) : signalOf(exit.left.message)
              yield* Deferred.succeed(ended, how)
              yield* stderrDone.await.pipe(Effect.timeout("1 second"), Effect.ignore)
              const error = fail(
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

        const announce = yield* Deferred.await(listening).pipe(
          Effect.timeoutFail({
            duration: spec.startTimeout,
            onTimeout: () =>
              fail(
                "Timeout",
                `the server did not announce its port within ${Duration.format(spec.startTimeout)}`,
                tail.get()
              )
          })
        )

        const endpoint: SandboxProvider.Endpoint = {
          id: `local-${randomBytes(6).toString("hex")}`,
          provider: "local",
          baseUrl: `http://127.0.0.1:${announce.port}`,
          token: Redacted.make(token),
          died: Deferred.await(died),
          exitReason: Deferred.await(ended).pipe(
            Effect.map((how) => `the sandbox server exited (${how})`),
            // A socket error may arrive a moment before the news of the exit that caused it. The grace is a
            // wait on the operating system, so it runs on the real clock: under a TestClock (an `it.effect`
            // test) it would otherwise never end, and a failed request would hang instead of failing.
            Effect.timeoutOption(EXIT_NEWS_GRACE),
            Effect.withClock(Clock.make())
          ),
          logs,
          readRangeSize: WHOLE_FILE,
          directReads: true,
          details: {
            pid: proc.pid,
            serverPid: announce.pid,
            workdir,
            python: resolved,
            port: announce.port,
            serverVersion: announce.version
          }
        }
        return endpoint
      })

    const stateDir = stateDirectory(options)
    const failWith = (reason: StartError["reason"], detail: string, stderrTail?: string, cause?: unknown) =>
      new StartError({ provider: "local", reason, detail, stderrTail, cause })

    /** The endpoint of a detached sandbox, made here or found by its state file. */
    const detachedEndpoint = (
      state: LocalState.State,
      died: Effect.Effect<never, StartError>
    ): SandboxProvider.Endpoint => ({
      id: state.id,
      provider: "local",
      baseUrl: `http://127.0.0.1:${state.port}`,
      token: Redacted.make(state.token),
      died,
      logs: (logOptions) =>
        LocalState.logLines(LocalState.logPath(stateDir, state.id), logOptions, () => LocalState.isRunning(state)),
      exitReason: detachedExitReason(LocalState.logPath(stateDir, state.id)),
      kill: LocalState.stop(stateDir, state, stopTimeout),
      readRangeSize: WHOLE_FILE,
      directReads: true,
      details: {
        pid: state.pid,
        workdir: state.workdir,
        python: state.python,
        port: state.port,
        serverVersion: state.serverVersion,
        detached: true,
        idleTimeoutSeconds: state.idleTimeoutSeconds
      }
    })

    // A detached server runs in a session of its own (setsid), with no pipe to this process once it has
    // announced its port: it outlives this process, and its idle timeout is what ends it if nobody does.
    const provisionDetached = (spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const id = `local-${randomBytes(6).toString("hex")}`
        yield* Effect.try({
          try: () => LocalState.ensureDirectory(stateDir),
          catch: (e) => failWith("SpawnFailed", `cannot create the state directory ${stateDir}: ${String(e)}`)
        })
        const workdir = yield* fs
          .makeTempDirectory({ prefix: "hf-sandbox-", ...(options.tempDir ? { directory: options.tempDir } : {}) })
          .pipe(Effect.mapError((e) => failWith("SpawnFailed", `cannot create a working directory: ${e.message}`)))
        const log = LocalState.logPath(stateDir, id)
        let server: { pid: number; startTime: string | undefined } | undefined
        // Once started, the sandbox is left running when the scope closes (with success: see Spec.detach);
        // a failed or interrupted start stops the server and removes everything it had.
        yield* Effect.addFinalizer((exit) =>
          Exit.isSuccess(exit)
            ? Effect.void
            : (server === undefined
                ? Effect.void
                : LocalState.stopServer(server.pid, server.startTime, stopTimeout)
              ).pipe(Effect.zipRight(Effect.sync(() => LocalState.removeFiles(stateDir, id, workdir))))
        )

        const token = randomBytes(32).toString("hex")
        const resolved = yield* interpreter(spec.env.PATH ?? process.env.PATH)
        // As for an owned sandbox, a supervisor kills what the server leaves and removes the workdir.
        const args = [
          ...serverArgs(script, spec),
          "--supervise",
          "--remove-on-exit",
          workdir,
          "--journal",
          TransferJournal.journalPath(workdir)
        ]
        // The token travels in the environment (the server removes it from there), never on a command line.
        const child = yield* Effect.try({
          try: () => {
            const fd = NodeFs.openSync(log, "a", 0o600)
            try {
              return ChildProcess.spawn(resolved, args, {
                cwd: workdir,
                env: serverEnv(spec, workdir, token),
                detached: true,
                stdio: ["ignore", "pipe", fd]
              })
            } finally {
              NodeFs.closeSync(fd)
            }
          },
          catch: (e) => failWith("SpawnFailed", cannotRun(python, String(e)), undefined, e)
        })
        if (child.pid !== undefined) server = { pid: child.pid, startTime: LocalState.processStartTime(child.pid) }
        const died = yield* Deferred.make<never, StartError>()
        child.once("exit", (code, signal) =>
          Deferred.unsafeDone(
            died,
            Exit.fail(
              failWith(
                "ServerExited",
                `the sandbox server exited (${code !== null ? exitText(code, null) : signalOf(String(signal))})`,
                LocalState.tailOf(log)
              )
            )
          )
        )

        const announce = yield* Effect.async<Protocol.ListeningLine, StartError>((resume) => {
          let buffer = ""
          const onData = (chunk: Buffer) => {
            buffer += chunk.toString("utf8")
            for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
              const found = decodeListening(buffer.slice(0, nl))
              buffer = buffer.slice(nl + 1)
              if (Option.isSome(found)) {
                cleanup()
                return resume(Effect.succeed(found.value))
              }
            }
          }
          const onError = (e: Error) => {
            cleanup()
            resume(Effect.fail(failWith("SpawnFailed", cannotRun(python, e.message), undefined, e)))
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
        }).pipe(
          Effect.timeoutFail({
            duration: spec.startTimeout,
            onTimeout: () =>
              failWith(
                "Timeout",
                `the server did not announce its port within ${Duration.format(spec.startTimeout)}`,
                LocalState.tailOf(log)
              )
          })
        )
        // Nothing more comes on stdout; from here on this process holds nothing of the server's.
        child.stdout?.destroy()
        child.unref()

        const state: LocalState.State = {
          id,
          pid: server!.pid,
          startTime: server!.startTime,
          port: announce.port,
          token,
          workdir,
          python: resolved,
          serverVersion: announce.version,
          createdAtMs: Date.now(),
          idleTimeoutSeconds: spec.idleTimeout ? Duration.toSeconds(spec.idleTimeout) : 0
        }
        yield* Effect.try({
          try: () => LocalState.write(stateDir, state),
          catch: (e) => failWith("SpawnFailed", `cannot write the state file in ${stateDir}: ${String(e)}`)
        })
        const endpoint = detachedEndpoint(state, Deferred.await(died))
        return { ...endpoint, details: { ...endpoint.details, serverPid: announce.pid } }
      })

    const provision = (spec: SandboxProvider.Spec) => (spec.detach ? provisionDetached(spec) : provisionOwned(spec))

    // Attaching to a detached sandbox needs only its state file. Closing the scope detaches again. A
    // failure started nothing: it says what could not be done (see internal/startError).
    const connect = (id: string, spec: SandboxProvider.Spec) =>
      Effect.mapError(attach(id, spec), (error) => StartErrors.during(`attach to sandbox ${id}`, error))
    const attach = (id: string, _spec: SandboxProvider.Spec) =>
      Effect.suspend(() => {
        const state = LocalState.read(stateDir, id)
        if (state === undefined) {
          return Effect.fail(
            failWith(
              "NotReady",
              LocalState.ID_PATTERN.test(id)
                ? `no local sandbox ${id} in ${stateDir} (it was never created with this state directory, was killed, or stopped after its idle timeout)`
                : `"${id}" is not a local sandbox id (they look like local-1a2b3c4d5e6f)`
            )
          )
        }
        if (!LocalState.isRunning(state)) {
          const tail = LocalState.tailOf(LocalState.logPath(stateDir, id))
          LocalState.removeFiles(stateDir, id, state.workdir)
          return Effect.fail(
            failWith("ServerExited", `local sandbox ${id} is no longer running (idle timeout, or killed)`, tail)
          )
        }
        const gone = Effect.repeat(
          Effect.sync(() => LocalState.isRunning(state)),
          {
            schedule: Schedule.spaced("500 millis"),
            until: (running) => !running
          }
        ).pipe(
          Effect.zipRight(
            Effect.fail(
              failWith(
                "ServerExited",
                `local sandbox ${id} stopped`,
                LocalState.tailOf(LocalState.logPath(stateDir, id))
              )
            )
          )
        )
        return Effect.succeed(detachedEndpoint(state, gone))
      })

    return { name: "local", provision, connect } satisfies SandboxProvider.Service
  })

/**
 * The directory that holds detached local sandboxes' state files and logs: the `stateDir` option, else
 * `HF_SANDBOX_STATE_DIR`, else `$XDG_STATE_HOME/hf-sandbox/local`, else `~/.local/state/hf-sandbox/local`.
 *
 * @since 0.1.0
 * @category utils
 */
export const stateDirectory = (options: Pick<Options, "stateDir"> = {}): string =>
  options.stateDir !== undefined ? options.stateDir : LocalState.defaultDirectory()

/**
 * A detached local sandbox as {@link list} reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DetachedInfo {
  readonly id: string
  /** The sandbox's pid (and process group): on Linux its server's supervisor, elsewhere the server. */
  readonly pid: number
  readonly port: number
  /** The sandbox's working directory (its home for relative paths). */
  readonly workdir: string
  /** When it was made, as an ISO 8601 string. */
  readonly createdAt: string
  /** Seconds without a request after which it stops itself (0: never). */
  readonly idleTimeoutSeconds: number
  readonly serverVersion: string
}

/**
 * The live detached local sandboxes, oldest first. State left by sandboxes that are gone (idle timeout,
 * killed, machine restarted) is removed on the way, with their logs and working directories; so are the
 * working directories of owned sandboxes whose client and server both died without removing them
 * (in `tempDir`, default the OS temp directory; only those whose owner is provably gone).
 *
 * @since 0.1.0
 * @category operations
 */
export const list = (options: Pick<Options, "stateDir" | "tempDir"> = {}): Effect.Effect<ReadonlyArray<DetachedInfo>> =>
  Effect.zipRight(OwnedDirs.sweep(options.tempDir ?? NodeOs.tmpdir()), LocalState.list(stateDirectory(options))).pipe(
    Effect.map((states) =>
      states.map(
        (s): DetachedInfo => ({
          id: s.id,
          pid: s.pid,
          port: s.port,
          workdir: s.workdir,
          createdAt: new Date(s.createdAtMs).toISOString(),
          idleTimeoutSeconds: s.idleTimeoutSeconds,
          serverVersion: s.serverVersion
        })
      )
    )
  )

const unknownSandbox = (id: string, dir: string) =>
  new StartError({
    provider: "local",
    reason: "NotReady",
    detail: LocalState.ID_PATTERN.test(id)
      ? `no local sandbox ${id} in ${dir}`
      : `"${id}" is not a local sandbox id (they look like local-1a2b3c4d5e6f)`
  })

/**
 * Stops a detached local sandbox by id: SIGTERM to its server (which stops everything it started), then,
 * after `stopTimeout`, SIGKILL to its process group and whatever is left; then its state file, log and
 * working directory are removed. A sandbox that had already stopped is only cleaned up. Fails when there
 * is no such sandbox.
 *
 * @since 0.1.0
 * @category operations
 */
export const kill = (
  id: string,
  options: Pick<Options, "stateDir" | "stopTimeout"> = {}
): Effect.Effect<void, StartError> =>
  Effect.suspend(() => {
    const dir = stateDirectory(options)
    const state = LocalState.read(dir, id)
    return state === undefined
      ? Effect.fail(StartErrors.during(`kill sandbox ${id}`, unknownSandbox(id, dir)))
      : LocalState.stop(dir, state, Duration.decode(options.stopTimeout ?? "3 seconds"))
  })

/**
 * A detached local sandbox's log by id (its server's diagnostics): the lines so far (the last `tail`),
 * then with `follow` new ones until it stops.
 *
 * @since 0.1.0
 * @category operations
 */
export const logs = (
  id: string,
  options: SandboxProvider.LogOptions & Pick<Options, "stateDir"> = {}
): Stream.Stream<string, StartError> =>
  Stream.suspend(() => {
    const dir = stateDirectory(options)
    const state = LocalState.read(dir, id)
    return state === undefined
      ? Stream.fail(StartErrors.during(`read the log of sandbox ${id}`, unknownSandbox(id, dir)))
      : LocalState.logLines(LocalState.logPath(dir, id), options, () => LocalState.isRunning(state))
  })

/**
 * Provides the local provider. Needs `CommandExecutor` and `FileSystem`, e.g. from
 * `NodeContext.layer` of `@effect/platform-node`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<SandboxProvider.SandboxProvider, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Layer.effect(SandboxProvider.SandboxProvider, make(options))
