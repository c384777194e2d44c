/**
 * The providers the Promise facade and the CLI can choose, each as one adapter: its name, how its layer
 * is built from their options, which ids are its own, whether usage telemetry applies. Upper layers pick
 * an adapter here instead of branching on provider names.
 */
import type * as NodeContext from "@effect/platform-node/NodeContext"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LocalSandboxOptions from "../LocalSandbox.js"
import type * as SandboxProvider from "../SandboxProvider.js"
import * as LocalState from "./local/state.js"
import * as LocalStop from "./local/stop.js"

/** What the CLI knows when it builds a provider: the invocation's state directories, and whether it runs against the emulator. */
export interface CliSetting {
  readonly stateDir: string
  readonly namespaceCache: string
  readonly emulated: boolean
}

/** What an open sandbox's endpoint says about itself (see `SandboxProvider.Endpoint`). */
export interface Facts {
  readonly hardware: string | undefined
  readonly lifetime: Duration.Duration | undefined
  readonly onThisMachine: boolean
  readonly backstop: SandboxProvider.Backstop | undefined
}

export interface Adapter {
  /** The facade's `provider` option (`"hf"`, `"local"`). */
  readonly name: string
  /** What it is, in words. */
  readonly title: string
  /** The provider's own name (`SandboxProvider.Service.name`, `Sandbox.provider`). */
  readonly providerName: string
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
  /** The endpoint facts of one of its sandboxes, from its `details` and the lifetime asked for (see `factsOf`). */
  readonly factsOf: (details: Readonly<Record<string, unknown>>, lifetime: Duration.Duration | undefined) => Facts
}

// Loaded only when HF Jobs is used (with the Hub client under it): local sandboxes, `exec -i` among
// them, start without evaluating it.
const hfJobs = () => import("../HfJobs.js")
const localSandbox = () => import("../LocalSandbox.js")

const hf: Adapter = {
  name: "hf",
  title: "Hugging Face Jobs",
  providerName: "hf-jobs",
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
  telemetry: true,
  factsOf: (details, lifetime) => ({
    hardware: typeof details.flavor === "string" ? details.flavor : undefined,
    // HF Jobs end a job after an hour unless told otherwise.
    lifetime: lifetime ?? Duration.hours(1),
    onThisMachine: false,
    backstop: undefined
  })
}

const local: Adapter = {
  name: "local",
  title: "this machine",
  providerName: "local",
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
  telemetry: false,
  factsOf: (details, lifetime) => ({
    hardware: "local",
    lifetime,
    onThisMachine: true,
    backstop:
      typeof details.pid === "number"
        ? LocalStop.backstop(details.pid, typeof details.workdir === "string" ? details.workdir : undefined)
        : undefined
  })
}

/** Every adapter; the first is the default. */
export const adapters: ReadonlyArray<Adapter> = [hf, local]

/** The default provider (HF Jobs). */
export const defaultAdapter: Adapter = hf

/** The adapter of a facade `provider` option, if there is one. */
export const byName = (name: string): Adapter | undefined => adapters.find((a) => a.name === name)

/** The adapter of a provider's own name (`Sandbox.provider`), if there is one. */
export const byProviderName = (name: string): Adapter | undefined => adapters.find((a) => a.providerName === name)

/** The adapter whose shape of ids all of `ids` have (none given, or no single owner: the default). */
export const owning = (ids: ReadonlyArray<string>): Adapter =>
  (ids.length > 0 ? adapters.find((a) => a !== defaultAdapter && ids.every(a.ownsId)) : undefined) ?? defaultAdapter

/** The adapter for a CLI invocation: a provider flag given, else the one the ids belong to. */
export const forCli = (flags: ReadonlyArray<string>, ids: ReadonlyArray<string>): Adapter =>
  adapters.find((a) => a.flag !== undefined && flags.includes(a.flag)) ?? owning(ids)

/** An open sandbox as `factsOf` reads it: the facts of its endpoint where it carries them. */
export interface Opened {
  readonly provider: string
  readonly details: Readonly<Record<string, unknown>>
  readonly hardware?: string | undefined
  readonly lifetime?: Duration.Duration | undefined
  readonly onThisMachine?: boolean | undefined
  readonly backstop?: SandboxProvider.Backstop | undefined
}

/**
 * The facts of an open sandbox, `lifetime` being the one asked for. The one place that reads them.
 * Lead's follow-up (issue 13): `Sandbox.Sandbox` does not carry the endpoint's facts yet, so they are
 * derived from its `details` by its adapter (none for a provider outside the registry); once `Sandbox`
 * copies `Endpoint.hardware`/`lifetime`/`onThisMachine`/`backstop`, the first branch takes them and the
 * adapters' `factsOf` can go.
 */
export const factsOf = (sb: Opened, lifetime?: Duration.Duration | undefined): Facts =>
  sb.onThisMachine !== undefined
    ? { hardware: sb.hardware, lifetime: sb.lifetime, onThisMachine: sb.onThisMachine, backstop: sb.backstop }
    : (byProviderName(sb.provider)?.factsOf(sb.details, lifetime) ?? {
        hardware: undefined,
        lifetime,
        onThisMachine: false,
        backstop: undefined
      })
