/**
 * The Hugging Face Jobs provider: every sandbox is an HF Job running any Docker image on any HF
 * hardware, with the in-sandbox server inside. The client reaches it through a Cloudflare quick tunnel
 * (found by following the job's logs) or through the HF Jobs proxy. The job is cancelled when the
 * sandbox's scope closes — on success, failure, interruption or Ctrl-C — and the job's own timeout and
 * the server's idle timeout stop the billing even if this process is killed outright.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const sb = yield* Sandbox.make({ image: "python:3.12", flavor: "cpu-basic" })
 *   yield* sb.exec("nvidia-smi || echo no gpu")
 * }).pipe(Effect.scoped, Effect.provide(HfJobs.layer()))
 * ```
 *
 * @since 0.1.0
 */

import * as FileSystem from "@effect/platform/FileSystem"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as HfConfig from "./internal/hfJobs/config.js"
import * as Provider from "./internal/hfJobs/provider.js"
import * as HfSandboxOptions from "./internal/hfJobs/sandboxOptions.js"
import * as Token from "./internal/hfJobs/token.js"
import * as Volumes from "./internal/hfJobs/volumes.js"
import type * as Sandbox from "./Sandbox.js"
import type { HubError, StartError } from "./SandboxError.js"
import * as SandboxProvider from "./SandboxProvider.js"
import type * as Schedules from "./Schedules.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * HF token. Default: found as `huggingface_hub` finds it — the OIDC exchange when `HF_OIDC_RESOURCE`
   * is set, else `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the token file (`HF_TOKEN_PATH`, else
   * `$HF_HOME/token`, else `~/.cache/huggingface/token`), an OAuth login's token refreshed near expiry.
   * Blank counts as unset; CR/LF and surrounding spaces are removed.
   */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Hub endpoint. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string | undefined
  /** Default namespace (user or org) for jobs. Default: the token's user, asked once per layer. */
  readonly namespace?: string | undefined
  /** Domain of the Jobs proxy's exposed URLs. Default `hf.jobs`. */
  readonly jobsDomain?: string | undefined
  /**
   * Public DNS resolvers (`ip` or `ip:port`) asked when the system resolver cannot find a fresh tunnel
   * name, which it may cache as missing for 30 minutes. `false` turns the fallback off. Default
   * `["1.1.1.1", "8.8.8.8"]`. The fallback needs `@effect/platform-node`.
   */
  readonly publicDns?: ReadonlyArray<string> | false | undefined
  /**
   * Schedules of the operations by id (`logs`): `logReconnect`, `logQuietWindow` and `logFirstByte`
   * are used; sandboxes take theirs from `Sandbox.make({ schedules })`.
   */
  readonly schedules?: Pick<Schedules.Overrides, "logReconnect" | "logQuietWindow" | "logFirstByte"> | undefined
  /**
   * A directory where the token's namespace is kept between processes (one 0600 file per token and
   * endpoint, named by a hash of them, holding only the name; asked again after a day). The Hub's
   * `whoami-v2` is strictly rate-limited: a program that starts often (a CLI) should set it. Default:
   * none, the namespace is asked once per layer. The CLI keeps it in its state directory.
   */
  readonly namespaceCache?: string | undefined
}

/**
 * The options of a sandbox that only HF Jobs reads: its flavor, namespace, transport, cloudflared,
 * labels, token forwarding, ports, volumes, SSH and spend cap (documented on `Sandbox.MakeOptions`, where one `make` can also give them).
 *
 * @since 0.2.0
 * @category models
 */
export type SandboxOptions = Pick<
  Sandbox.MakeOptions,
  | "flavor"
  | "namespace"
  | "transport"
  | "cloudflared"
  | "labels"
  | "forwardHfToken"
  | "ports"
  | "volumes"
  | "ssh"
  | "maxCost"
>

/**
 * A Hub repo or bucket mounted in a sandbox job's container, in the Jobs API's own shape (what
 * `huggingface_hub`'s `Volume` sends). Models, datasets and Spaces are always read-only; a bucket is
 * read-write unless `readOnly`. Files are fetched lazily as they are read, authorized with the identity
 * that created the job: the sandbox needs no token for them.
 *
 * ```ts
 * const volumes: ReadonlyArray<HfJobs.Volume> = [
 *   { type: "model", source: "openai/gpt-oss-20b", mountPath: "/model" },
 *   { type: "dataset", source: "stanfordnlp/imdb", mountPath: "/data", path: "plain_text" },
 *   { type: "bucket", source: "acme/checkpoints", mountPath: "/out" }
 * ]
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Volume {
  readonly type: "model" | "dataset" | "space" | "bucket"
  /** The repo or bucket id, `namespace/name`. */
  readonly source: string
  /** Where it appears in the container: an absolute path other than `/`, e.g. `/data`. */
  readonly mountPath: string
  /** A branch, tag or commit of a repo (default `main`); buckets have none. */
  readonly revision?: string | undefined
  /** Mount read-only. Repos are always read-only (`false` is refused); buckets default to read-write. */
  readonly readOnly?: boolean | undefined
  /** A folder inside the repo or bucket to mount instead of its root, e.g. `"train"`. */
  readonly path?: string | undefined
}

/**
 * One `--volume` in `hf jobs run -v`'s grammar, `hf://[TYPE/]SOURCE[@REVISION][/PATH]:/MOUNT_PATH[:ro|:rw]`
 * (TYPE `models` by default, or `datasets`, `spaces`, `buckets`), as a {@link Volume}; throws an `Error`
 * naming what is wrong.
 *
 * @since 0.2.0
 * @category utils
 */
export const parseVolume: (spec: string) => Volume = Volumes.parse

/**
 * The HF options in force for the sandboxes made under it, as a Context value (none by default). A
 * `make`'s own options win over it, option by option; labels and cloudflared overrides merge key by key.
 *
 * @since 0.2.0
 * @category tags
 */
export class CurrentSandboxOptions extends Context.Reference<CurrentSandboxOptions>()(
  "hf-sandbox/HfJobs/CurrentSandboxOptions",
  { defaultValue: (): SandboxOptions => ({}) }
) {}

/**
 * Sets HF options for the sandboxes `self` makes, over those already in force:
 *
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as HfJobs from "hf-sandbox/HfJobs"
 * import * as Sandbox from "hf-sandbox/Sandbox"
 *
 * const onGpu = Sandbox.make({ image: "pytorch/pytorch" }).pipe(
 *   HfJobs.withSandboxOptions({ flavor: "a10g-small", labels: { team: "ml" } })
 * )
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const withSandboxOptions: {
  (options: SandboxOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: SandboxOptions): Effect.Effect<A, E, R>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, options: SandboxOptions): Effect.Effect<A, E, R> =>
    Effect.flatMap(CurrentSandboxOptions, (current) =>
      Effect.provideService(self, CurrentSandboxOptions, HfSandboxOptions.merge(current, options))
    )
)

/**
 * Sets HF options for every sandbox made under this layer (e.g. a suite's flavor and labels), over
 * those already in force.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerSandboxOptions = (options: SandboxOptions): Layer.Layer<never> =>
  Layer.effectContext(
    Effect.map(CurrentSandboxOptions, (current) =>
      Context.make(CurrentSandboxOptions, HfSandboxOptions.merge(current, options))
    )
  )

/**
 * The sandbox token is derived from the HF token and a nonce kept in a job label, so a client holding the
 * same HF token can re-attach to a sandbox with nothing stored.
 *
 * @since 0.1.0
 * @category utils
 */
export const deriveSandboxToken: (hfToken: Redacted.Redacted<string>, nonce: string) => Redacted.Redacted<string> =
  Token.deriveSandboxToken

/**
 * A sandbox job as `list` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxInfo {
  readonly id: string
  readonly namespace: string
  /** The job's stage, e.g. `RUNNING` (an open set: the Hub may add stages). */
  readonly stage: string
  readonly image: string | undefined
  readonly flavor: string | undefined
  readonly createdAt: string | undefined
  readonly labels: Readonly<Record<string, string>>
  /** The job's page on the Hub. */
  readonly url: string
  /**
   * Its name (`Sandbox.make({ name })`, kept as the job label `hf-sandbox-name`), if it has one.
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
}

/**
 * Options of {@link list}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ListOptions {
  /** The user or organization whose jobs to list. Default: the token's user. */
  readonly namespace?: string | undefined
  /** Include sandboxes that have ended (every stage). */
  readonly all?: boolean | undefined
  /** Only jobs carrying every one of these labels (filtered by the Hub). @since 0.2.0 */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** Only jobs in this stage, or any of these (e.g. `"RUNNING"`; filtered by the Hub). @since 0.2.0 */
  readonly stage?: string | ReadonlyArray<string> | undefined
  /** Only the sandbox with this name. @since 0.2.0 */
  readonly name?: string | undefined
}

/**
 * Options of {@link sweep}: which live sandboxes to stop. Filters combine (AND); with none, every live
 * sandbox of the namespace.
 *
 * @since 0.2.0
 * @category models
 */
export interface SweepOptions {
  /** The user or organization whose sandboxes to stop. Default: the token's user. */
  readonly namespace?: string | undefined
  /** Only sandboxes carrying every one of these labels. */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** Only the sandbox with this name. */
  readonly name?: string | undefined
  /** Only sandboxes created longer ago than this (a Duration, or `"90s"`, `"30m"`, `"2h"`, `"1d"`). */
  readonly olderThan?: Duration.DurationInput | string | undefined
  /** Stop nothing: only say which sandboxes would be stopped. */
  readonly dryRun?: boolean | undefined
}

/**
 * Operations on sandboxes by id, beyond the one a program holds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Sandbox jobs of the namespace (default: the token's user); only live ones unless `all` or `stage`,
   * filtered by `labels`, `stage` and `name` on the Hub.
   */
  readonly list: (options?: ListOptions) => Effect.Effect<ReadonlyArray<SandboxInfo>, HubError | StartError>
  /**
   * Stops a sandbox by id (cancels its job). Refuses jobs that are not sandboxes. The id may be
   * `namespace/id`; anything but a job id fails with `StartError` (`InvalidOptions`) before any request.
   */
  readonly kill: (
    id: string,
    options?: { readonly namespace?: string | undefined }
  ) => Effect.Effect<void, HubError | StartError>
  /** A sandbox's log by id (or `namespace/id`). */
  readonly logs: (
    id: string,
    options?: SandboxProvider.LogOptions & { readonly namespace?: string | undefined }
  ) => Stream.Stream<string, HubError | StartError>
  /**
   * The Jobs hardware catalog: every flavor with its specs and price (`GET /api/jobs/hardware`).
   *
   * @since 0.2.0
   */
  readonly hardware: Effect.Effect<ReadonlyArray<Hardware>, HubError | StartError>
  /**
   * Stops the live sandboxes that match every filter and returns them (with `dryRun`, only returns
   * them). @since 0.2.0
   */
  readonly sweep: (options?: SweepOptions) => Effect.Effect<ReadonlyArray<SandboxInfo>, HubError | StartError>
}

/**
 * A flavor of the Jobs hardware catalog, as {@link hardware} lists it (the Hub's `JobHardwareInfo`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Hardware {
  /** What `flavor` takes, e.g. `"a10g-small"`. */
  readonly name: string
  /** e.g. `"Nvidia A10G - small"`. */
  readonly prettyName: string
  /** As the Hub words it, e.g. `"4 vCPU"`. */
  readonly cpu: string
  /** e.g. `"15 GB"`. */
  readonly ram: string
  /** Ephemeral disk, e.g. `"110 GB"`, when the Hub says. */
  readonly storage: string | undefined
  /** The GPUs (or other accelerators); absent on CPU flavors. `vram` is their total. */
  readonly accelerator:
    | {
        readonly type: string
        readonly model: string
        readonly quantity: number
        readonly vram: string
        readonly manufacturer: string
      }
    | undefined
  /** The price per `unitLabel`, in US dollars. */
  readonly unitCostUsd: number
  /** The same in millionths of a dollar (the Hub's exact figure). */
  readonly unitCostMicroUsd: number
  /** What the unit price is for: `"minute"` (Jobs are billed by the minute). */
  readonly unitLabel: string
  /**
   * The price of an hour in US dollars (to a hundredth of a cent); undefined if the Hub prices by a unit
   * this version does not know.
   */
  readonly pricePerHour: number | undefined
}

/**
 * The HF Jobs operations service, provided by {@link layer} next to the provider.
 *
 * @since 0.1.0
 * @category tags
 */
export class HfJobs extends Context.Tag("hf-sandbox/HfJobs")<HfJobs, Service>() {}

/** The provider and its operations service, over the configuration `config` resolves. */
const build = <E>(config: Effect.Effect<HfConfig.Resolved, E>) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.flatMap(config, (resolved) => Provider.make(resolved, fs, CurrentSandboxOptions))
  )

/** Both services, as the layers provide them. */
const contextOf = (built: Effect.Effect.Success<ReturnType<typeof Provider.make>>) =>
  Context.make(SandboxProvider.SandboxProvider, built.provider).pipe(Context.add(HfJobs, built.service))

/**
 * Builds the provider. What `options` leave out is read from the environment once, here, through
 * `Config` (`HF_ENDPOINT` and the token discovery's variables); credentials and the namespace are
 * resolved on first use and kept for the provider's life.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<SandboxProvider.Service, never, FileSystem.FileSystem> =>
  Effect.map(build(HfConfig.resolve(options)), (built) => built.provider)

/**
 * Provides the HF Jobs provider. Needs `FileSystem` (e.g. `NodeContext.layer`); sandboxes also need an
 * `HttpClient`. What `options` leave out is read as {@link make} reads it, when the layer is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<SandboxProvider.SandboxProvider | HfJobs, never, FileSystem.FileSystem> =>
  Layer.effectContext(Effect.map(build(HfConfig.resolve(options)), contextOf))

/**
 * Sandbox jobs of a namespace (default: the token's user); only live ones unless `all` or `stage`. The
 * `labels`, `stage` (@since 0.2.0) and `name` (@since 0.2.0) filters are applied by the Hub:
 *
 * ```ts
 * import * as HfJobs from "hf-sandbox/HfJobs"
 *
 * const ciSandboxes = HfJobs.list({ labels: { team: "ci" }, stage: "RUNNING" })
 * ```
 *
 * @since 0.1.0
 * @category operations
 */
export const list = (options?: ListOptions) => Effect.flatMap(HfJobs, (s) => s.list(options))

/**
 * Stops the live sandboxes of a namespace that match every filter given — `labels`, `name`, created
 * longer ago than `olderThan` — and returns them; with `dryRun`, stops nothing and returns what it would
 * stop. Every match is tried; if some could not be stopped, it fails with the first error after the rest.
 *
 * ```ts
 * import * as HfJobs from "hf-sandbox/HfJobs"
 *
 * const stale = HfJobs.sweep({ labels: { team: "ci" }, olderThan: "1h" })
 * ```
 *
 * @since 0.2.0
 * @category operations
 */
export const sweep = (options?: SweepOptions) => Effect.flatMap(HfJobs, (s) => s.sweep(options))

/**
 * Stops a sandbox by id (cancels its job). The id may be `namespace/id`, as the job's page shows it.
 *
 * @since 0.1.0
 * @category operations
 */
export const kill = (id: string, options?: Parameters<Service["kill"]>[1]) =>
  Effect.flatMap(HfJobs, (s) => s.kill(id, options))

/**
 * A sandbox's log by id (or `namespace/id`): the log so far (ended by `Schedules.logQuietWindow` of
 * silence after its first line), or with `follow` until the sandbox ends.
 *
 * @since 0.1.0
 * @category operations
 */
export const logs = (id: string, options?: Parameters<Service["logs"]>[1]) =>
  Stream.unwrap(Effect.map(HfJobs, (s) => s.logs(id, options)))

/**
 * The Jobs hardware catalog: every flavor with its specs and price per hour (`GET /api/jobs/hardware`),
 * retried like every Hub call.
 *
 * ```ts
 * const gpuFlavors = HfJobs.hardware().pipe(
 *   Effect.map((catalog) => catalog.filter((h) => h.accelerator !== undefined))
 * )
 * ```
 *
 * @since 0.2.0
 * @category operations
 */
export const hardware = (): Effect.Effect<ReadonlyArray<Hardware>, HubError | StartError, HfJobs> =>
  Effect.flatMap(HfJobs, (s) => s.hardware)

/**
 * Provides the HF Jobs provider from configuration. Each option is a `Config` (or the whole `Options`
 * one); what is left out is read as `layer` reads it: the token is found as `huggingface_hub` finds it
 * (`HF_OIDC_RESOURCE`, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the token file; see {@link Options}), the
 * endpoint is `HF_ENDPOINT`, and the namespace `HF_SANDBOX_NAMESPACE`. Blank values count as unset.
 *
 * ```ts
 * import * as Config from "effect/Config"
 * import * as HfJobs from "hf-sandbox/HfJobs"
 *
 * const Provider = HfJobs.layerConfig({ namespace: Config.string("MY_ORG") })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = {}
): Layer.Layer<SandboxProvider.SandboxProvider | HfJobs, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Layer.effectContext(Effect.map(build(HfConfig.fromConfig(config)), contextOf))
