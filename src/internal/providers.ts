/**
 * The providers the Promise facade and the CLI can choose, each as one adapter: its name, how its layer
 * is built from their options, which ids are its own, whether usage telemetry applies. Upper layers pick
 * an adapter here instead of branching on provider names.
 */
import type * as NodeContext from "@effect/platform-node/NodeContext"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LocalSandboxOptions from "../LocalSandbox.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as LocalState from "./local/state.js"

/** What the CLI knows when it builds a provider: the invocation's state directories, and whether it runs against the emulator. */
interface CliSetting {
  readonly stateDir: string
  readonly namespaceCache: string
  readonly emulated: boolean
}

export interface Adapter {
  /** The facade's `provider` option (`"hf"`, `"local"`). */
  readonly name: string
  /** What it is, in words. */
  readonly title: string
  /** The CLI's global flag that chooses it (without `--`), if any. */
  readonly flag: string | undefined
  /** The facade's options its layer takes; everything else goes to `Sandbox.make`/`connect`. */
  readonly optionKeys: ReadonlyArray<string>
  /** Its layer, from the facade's options (only those of `optionKeys`, `token` already redacted). */
  readonly layer: (
    options: Readonly<Record<string, unknown>>
  ) => Layer.Layer<SandboxProvider.SandboxProvider, never, NodeContext.NodeContext>
  /** Its layer for a CLI invocation. */
  readonly cliLayer: (
    setting: CliSetting
  ) => Layer.Layer<SandboxProvider.SandboxProvider, ConfigError.ConfigError, NodeContext.NodeContext>
  /** Whether an id is one of its sandboxes' by its shape alone. */
  readonly ownsId: (id: string) => boolean
  /** Whether the original hf-sandbox's anonymous usage events are sent for its sandboxes. */
  readonly telemetry: boolean
}

// Loaded only when HF Jobs is used (with the Hub client under it): local sandboxes, `exec -i` among
// them, start without evaluating it.
const hfJobs = () => import("../HfJobs.js")
const localSandbox = () => import("../LocalSandbox.js")

const hf: Adapter = {
  name: "hf",
  title: "Hugging Face Jobs",
  flag: undefined,
  optionKeys: ["token", "endpoint", "jobsDomain", "publicDns"],
  layer: (options) => Layer.unwrapEffect(Effect.map(Effect.promise(hfJobs), (HfJobs) => HfJobs.layer(options))),
  cliLayer: (setting) =>
    Layer.unwrapEffect(
      Effect.map(Effect.promise(hfJobs), (HfJobs) =>
        // The same configuration as the library's (token discovery included); against the emulator no
        // public resolver is ever asked; whoami-v2 is strictly rate-limited, so it is asked once per token.
        HfJobs.layerConfig({
          ...(setting.emulated ? { publicDns: Config.succeed(false as const) } : {}),
          namespaceCache: Config.succeed(setting.namespaceCache)
        })
      )
    ),
  // HF job ids have no shape of their own: as the default, HF Jobs takes every id no other provider owns.
  ownsId: () => false,
  telemetry: true
}

const local: Adapter = {
  name: "local",
  title: "this machine",
  flag: "local",
  optionKeys: ["python", "serverScript", "tempDir", "stopTimeout", "stateDir"],
  layer: (options) =>
    Layer.unwrapEffect(
      Effect.map(Effect.promise(localSandbox), (LocalSandbox) =>
        LocalSandbox.layer(options as LocalSandboxOptions.Options)
      )
    ),
  cliLayer: (setting) =>
    Layer.unwrapEffect(
      Effect.map(Effect.promise(localSandbox), (LocalSandbox) => LocalSandbox.layer({ stateDir: setting.stateDir }))
    ),
  ownsId: LocalState.ownsId,
  // A local sandbox never leaves this machine.
  telemetry: false
}

/** Every adapter; the first is the default. */
export const adapters: ReadonlyArray<Adapter> = [hf, local]

/** The default provider (HF Jobs). */
export const defaultAdapter: Adapter = hf

/** The adapter of a facade `provider` option, if there is one. */
export const byName = (name: string): Adapter | undefined => adapters.find((a) => a.name === name)

/** The adapter whose shape of ids all of `ids` have (none given, or no single owner: the default). */
export const owning = (ids: ReadonlyArray<string>): Adapter =>
  (ids.length > 0 ? adapters.find((a) => a !== defaultAdapter && ids.every(a.ownsId)) : undefined) ?? defaultAdapter

/** The adapter for a CLI invocation: a provider flag given, else the one the ids belong to. */
export const forCli = (flags: ReadonlyArray<string>, ids: ReadonlyArray<string>): Adapter =>
  adapters.find((a) => a.flag !== undefined && flags.includes(a.flag)) ?? owning(ids)
