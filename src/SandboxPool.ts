/**
 * Many small sandboxes packed into a few **host** sandboxes: a host is a sandbox whose server runs in
 * host mode and holds up to `sandboxesPerHost` sandboxes, each with its own id, token, home and (as root)
 * uid. Leasing one from a warm host is one round trip instead of a sandbox start, which is what RL
 * rollouts, evals and batch tool calls need by the hundred. The same pool as Hugging Face's own
 * `SandboxPool` (`huggingface_hub`), on any provider: HF Jobs, or this machine.
 *
 * ```ts
 * import * as SandboxPool from "hf-sandbox/SandboxPool"
 *
 * declare const tasks: ReadonlyArray<string>
 * const program = Effect.forEach(tasks, (task) =>
 *   Effect.scoped(Effect.gen(function*() {
 *     const sb = yield* SandboxPool.make()           // a pooled Sandbox: the same interface as Sandbox.make's
 *     return yield* sb.exec(["python3", "-c", task])
 *   })), { concurrency: 200 }
 * ).pipe(Effect.provide(SandboxPool.layer({ sandboxesPerHost: 50, maxHosts: 4 })))
 * ```
 *
 * A lease's scope deletes only its sandbox (its processes, its home) and frees its slot; the pool's scope
 * terminates every host it started, on success, failure or interruption. What is and is not isolated
 * between the sandboxes of a host: docs/pools.md.
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/pool/pool.js"
import type * as Sandbox from "./Sandbox.js"
import type { PoolError, StartError } from "./SandboxError.js"
import type * as SandboxProvider from "./SandboxProvider.js"

/**
 * Options of {@link layer}. Besides the pool's own, the options of `Sandbox.make` that describe a host
 * (`image`, `flavor`, `namespace`, `labels`, `transport`, `lifetime`, `startTimeout`, `schedules`,
 * `timeouts`, …) go to every host's start as they would to a sandbox's.
 *
 * @since 0.2.0
 * @category models
 */
export interface LayerOptions
  extends Omit<Sandbox.MakeOptions, "env" | "secrets" | "detach" | "name" | "idleTimeout" | "cwd" | "forwardHfToken"> {
  /**
   * Leave the hosts running when the pool's scope closes (a failed start still stops them): another
   * process finds them by the pool's name (`hf-sandbox-pool` label) and makes sandboxes there, and each
   * ends after `idleTimeout` without sandboxes. HF's `SandboxPool.warm`; what the CLI's `pool up` uses.
   * Default false.
   */
  readonly detach?: boolean | undefined
  /** The pool's name: HF's `hf-sandbox-pool` label on its hosts. Default `default`. */
  readonly name?: string | undefined
  /**
   * Adopt the running hosts of the pool's name when the layer is built, as HF's `SandboxPool` does: hosts
   * another process left running (`detach`, the CLI's `pool up`, HF's `SandboxPool.warm`) take leases
   * before any host boots, and count towards `warmUp`, so only the shortfall is started. An adopted
   * host's capacity and the sandboxes it already holds are read from it; a host that does not answer is
   * skipped. The pool did not start them, so its close never terminates them: it detaches, and each ends
   * after its own idle timeout without sandboxes. Default true (HF's); false: only hosts it starts.
   */
  readonly adopt?: boolean | undefined
  /** How many sandboxes one host holds at most (the host's `SBX_CAPACITY`). Default 50, HF's. */
  readonly sandboxesPerHost?: number | undefined
  /**
   * How many hosts the pool runs at most; when all are full, a lease waits for a free slot (at most
   * `acquireTimeout`). Default: no limit (a host is booted whenever every running one is full).
   */
  readonly maxHosts?: number | undefined
  /** How many hosts are started (in parallel) when the layer is built, and kept running. Default 1. */
  readonly warmUp?: number | undefined
  /**
   * A host exits after it has had no sandboxes for this long, so an abandoned pool stops billing (HF's
   * semantics). Default 10 minutes, HF's; `Duration.infinity`: never.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * How long {@link make} may wait for a slot (a free one on a running host, or one on a host being
   * booted) before it fails with `PoolError("AcquireTimeout")`. Default 10 minutes.
   */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** Environment of every pooled sandbox (a lease's own `env` is added over it). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * Accept hosts that cannot isolate their sandboxes fully (a server not running as root, or a kernel
   * without Landlock): the server's `SBX_HOST_WEAK_ISOLATION=1`. Without it such a host refuses to
   * start and says what is missing. Default false.
   */
  readonly weakIsolation?: boolean | undefined
  /**
   * Let the host token act on the hosts' sandboxes too (the server's `SBX_HOST_TOKEN_ACTS=1`), so that
   * HF's Python client, which sends the host token everywhere, can drive them (`Sandbox.connect` of a
   * pooled id in `huggingface_hub`). Whoever holds the host token (anyone with your HF token, on HF Jobs)
   * can then act in every sandbox of the host. Default false: a sandbox's routes take its own token only.
   */
  readonly hostTokenActs?: boolean | undefined
}

/**
 * Options of {@link make}.
 *
 * @since 0.2.0
 * @category models
 */
export interface MakeOptions {
  /** Environment of this sandbox's commands, over the pool's `env` (names as in `Sandbox.MakeOptions.env`). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * The host deletes the sandbox after this long with no request to it and no process running in it.
   * Default: never (it lives until its scope closes). `Duration.infinity`: never.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** Default working directory of its commands (relative paths resolve against its home). */
  readonly cwd?: string | undefined
}

/**
 * One host of a pool, as {@link SandboxPool.hosts} lists it.
 *
 * @since 0.2.0
 * @category models
 */
export interface HostInfo {
  /** The host's id (its provider's sandbox id: an HF job id, a `local-…` id). */
  readonly id: string
  /** How many sandboxes it holds at most. */
  readonly capacity: number
  /** How many of its slots are leased (or being leased) now. */
  readonly leased: number
  /** Its provider's facts (e.g. `{ pid, workdir }` locally, `{ jobId, url }` on HF Jobs). */
  readonly details: Readonly<Record<string, unknown>>
}

/**
 * A running pool.
 *
 * @since 0.2.0
 * @category models
 */
export interface SandboxPool {
  /** Its name (the `hf-sandbox-pool` label of its hosts). */
  readonly name: string
  /** Its running hosts (booting ones are not listed until they answer). */
  readonly hosts: Effect.Effect<ReadonlyArray<HostInfo>>
  /** {@link make}, on this pool. */
  readonly make: (options?: MakeOptions) => Effect.Effect<Sandbox.Sandbox, PoolError | StartError, Scope.Scope>
}

/**
 * The pool in use, provided by {@link layer}.
 *
 * @since 0.2.0
 * @category tags
 */
export const SandboxPool: Context.Tag<SandboxPool, SandboxPool> =
  Context.GenericTag<SandboxPool>("hf-sandbox/SandboxPool")

/**
 * Leases a sandbox from the pool in context: a `Sandbox` with the same interface as `Sandbox.make`'s,
 * whose id is `<host id>.<local id>` (`Sandbox.connect` reaches it from anywhere). It goes on a host with
 * a free slot, else on a host booted for it (a burst boots only the hosts it needs), else waits for a
 * slot (`acquireTimeout`). Closing the scope deletes the sandbox on its host and frees its slot. Fails
 * with `PoolError` (a bad option, no slot in time, a host that failed or ended), or the `StartError` of
 * a host that did not start.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: MakeOptions = {}
): Effect.Effect<Sandbox.Sandbox, PoolError | StartError, SandboxPool | Scope.Scope> =>
  Effect.flatMap(SandboxPool, (pool) => pool.make(options))

/**
 * A pool as a scoped resource: running hosts of its name are adopted (`adopt`), `warmUp` hosts in all
 * are ready when it is built (those it starts, in parallel: their failure is the layer's), more start as
 * leases need them, and every host it started is terminated when the layer's scope closes.
 * A host that ends on its own is dropped (its leased sandboxes fail with `ConnectionLostError` naming
 * it) and replaced. Fails with `PoolError("InvalidOptions")` naming a bad option before anything starts.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: LayerOptions = {}
): Layer.Layer<SandboxPool, PoolError | StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient> =>
  Layer.scoped(SandboxPool, internal.make(options))
