/**
 * The local provider: runs the same in-sandbox server as a child process of this machine, in a
 * fresh temp directory. It needs no account and starts in milliseconds, which makes it the default
 * for the quick start and for tests. It is **not** an isolation boundary: commands run as your user.
 *
 * @since 0.1.0
 */

import { randomBytes } from "node:crypto"
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as ProcessTree from "./internal/processTree.js"
import { serverScriptPath } from "./internal/serverScript.js"
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
}

/** Host variables a command needs to behave normally; everything else (tokens, keys) stays out. */
const INHERITED_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"]

const STDERR_TAIL_BYTES = 8 * 1024
const LOG_LINES = 10_000

const decodeListening = Schema.decodeUnknownOption(Schema.parseJson(Protocol.ListeningLine))

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

    const provision = (spec: SandboxProvider.Spec) =>
      Effect.gen(function* () {
        const fail = (reason: StartError["reason"], detail: string, stderrTail?: string, cause?: unknown) =>
          new StartError({ provider: "local", reason, detail, stderrTail, cause })

        // Acquired first, so released last: after every process that could still write into it is gone.
        const workdir = yield* Effect.acquireRelease(
          fs
            .makeTempDirectory({ prefix: "hf-sandbox-", ...(options.tempDir ? { directory: options.tempDir } : {}) })
            .pipe(Effect.mapError((e) => fail("SpawnFailed", `cannot create a working directory: ${e.message}`))),
          (dir) =>
            fs.remove(dir, { recursive: true }).pipe(Effect.interruptible, Effect.timeout("10 seconds"), Effect.ignore)
        )

        const token = randomBytes(32).toString("hex")
        const inherited = Object.fromEntries(
          INHERITED_ENV.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]]))
        )
        const args = [
          "-u", // unbuffered: the listening line and any error reach us at once
          "-S", // no site-packages: the server is stdlib-only, and skipping them saves start time
          script,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          // The server watches its stdin: when this process dies, even by SIGKILL, the pipe closes and
          // the server shuts down and kills what it started, so a crashed client leaks nothing.
          "--exit-on-stdin-eof",
          ...(spec.idleTimeout ? ["--idle-timeout", String(Duration.toSeconds(spec.idleTimeout))] : [])
        ]
        const resolved = yield* interpreter(spec.env.PATH ?? process.env.PATH)
        const command = Command.make(resolved, ...args).pipe(
          Command.workingDirectory(workdir),
          Command.env(
            {
              ...inherited,
              TMPDIR: workdir,
              ...spec.env,
              ...Object.fromEntries(Object.entries(spec.secrets).map(([k, v]) => [k, Redacted.value(v)])),
              SBX_TOKEN: token
            },
            { extendEnv: false }
          )
        )

        const proc = yield* executor
          .start(command)
          .pipe(
            Effect.mapError((e) =>
              fail(
                "SpawnFailed",
                /ENOENT/.test(e.message)
                  ? `cannot run "${python}": not found. Install Python 3.8+ or pass { python: "/path/to/python3" } to LocalSandbox.layer`
                  : `cannot run "${python}": ${e.message}`,
                undefined,
                e
              )
            )
          )

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

        yield* proc.stdout.pipe(
          Stream.decodeText(),
          Stream.splitLines,
          Stream.runForEach((line) =>
            Option.match(decodeListening(line), {
              onNone: () => Effect.void,
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
              yield* stderrDone.await.pipe(Effect.timeout("1 second"), Effect.ignore)
              const how = exit._tag === "Right" ? `exit code ${exit.right}` : exit.left.message
              const error = fail("ServerExited", `the sandbox server exited (${how})`, tail.get())
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
          logs,
          details: { pid: proc.pid, workdir, python: resolved, port: announce.port, serverVersion: announce.version }
        }
        return endpoint
      })

    return { name: "local", provision } satisfies SandboxProvider.Service
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
