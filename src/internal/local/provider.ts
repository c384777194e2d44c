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
import { serverMainPath } from "../serverScript.js"
import { DEFAULT_STOP_TIMEOUT, type LocalContext, resolveStateDir } from "./context.js"
import * as Detached from "./detached.js"
import * as Interpreter from "./interpreter.js"
import { listing } from "./listing.js"
import { kill, logs } from "./operations.js"
import * as Owned from "./owned.js"
import { refuseUnsupported } from "./refusals.js"

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
      script: options.serverScript ?? serverMainPath,
      tempDir: options.tempDir,
      stopTimeout: Duration.decode(options.stopTimeout ?? DEFAULT_STOP_TIMEOUT),
      stateDir: yield* resolveStateDir(options),
      interpreter: yield* Interpreter.make(executor, python)
    }
    return {
      name: "local",
      provision: (spec) =>
        Effect.zipRight(
          refuseUnsupported(spec),
          spec.detach ? Detached.provision(ctx, spec) : Owned.provision(ctx, spec)
        ),
      connect: (id) => Detached.connect(ctx, id),
      list: (listOptions) => listing(ctx, listOptions),
      kill: (id) => kill(id, { stateDir: ctx.stateDir, stopTimeout: ctx.stopTimeout }),
      logs: (id, logOptions) => logs(id, { ...logOptions, stateDir: ctx.stateDir })
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
