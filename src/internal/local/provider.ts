/** The local provider's service: one `make` resolves the options into a context its parts share. */
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LocalSandbox from "../../LocalSandbox.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import { serverScriptPath } from "../serverScript.js"
import * as StateHome from "../stateHome.js"
import type { LocalContext } from "./context.js"
import * as Detached from "./detached.js"
import * as Interpreter from "./interpreter.js"
import * as Owned from "./owned.js"

/** The default of `stopTimeout`. */
export const DEFAULT_STOP_TIMEOUT = "3 seconds"

/** The `stateDir` option, else the default directory of the environment `Config` reads (read once here). */
export const resolveStateDir = (options: Pick<LocalSandbox.Options, "stateDir">): Effect.Effect<string> =>
  options.stateDir !== undefined ? Effect.succeed(options.stateDir) : Effect.orDie(StateHome.localDirectoryConfig)

export const make = (
  options: LocalSandbox.Options = {}
): Effect.Effect<SandboxProvider.Service, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const executor = yield* CommandExecutor.CommandExecutor
    const python = options.python ?? "python3"
    const ctx: LocalContext = {
      executor,
      fs: yield* FileSystem.FileSystem,
      python,
      script: options.serverScript ?? serverScriptPath,
      tempDir: options.tempDir,
      stopTimeout: Duration.decode(options.stopTimeout ?? DEFAULT_STOP_TIMEOUT),
      stateDir: yield* resolveStateDir(options),
      interpreter: yield* Interpreter.make(executor, python)
    }
    return {
      name: "local",
      provision: (spec) => (spec.detach ? Detached.provision(ctx, spec) : Owned.provision(ctx, spec)),
      connect: (id) => Detached.connect(ctx, id)
    } satisfies SandboxProvider.Service
  })

export const layer = (
  options: LocalSandbox.Options = {}
): Layer.Layer<SandboxProvider.SandboxProvider, never, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Layer.effect(SandboxProvider.SandboxProvider, make(options))

export const layerConfig = (
  config: Config.Config.Wrap<LocalSandbox.Options> = {}
): Layer.Layer<
  SandboxProvider.SandboxProvider,
  ConfigError.ConfigError,
  CommandExecutor.CommandExecutor | FileSystem.FileSystem
> =>
  Layer.unwrapEffect(
    // `Config.unwrap` cannot take an empty record.
    (!Config.isConfig(config) && Object.keys(config).length === 0
      ? Effect.succeed<LocalSandbox.Options>({})
      : Config.unwrap<LocalSandbox.Options>(config)
    ).pipe(Effect.map(layer))
  )
