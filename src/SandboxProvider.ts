/**
 * The seam between the `Sandbox` module and the backends that run sandboxes. A provider turns a
 * {@link Spec} into a running server and an {@link Endpoint} to reach it; the endpoint's lifetime is
 * the scope it was provisioned in, and closing that scope tears the sandbox down.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/providerSeam.js"
import type * as Sandbox from "./Sandbox.js"
import type { HubError, OperationError, StartError } from "./SandboxError.js"

/**
 * What to start: what every provider honours. Options meant for one provider (HF Jobs' `flavor`,
 * `transport`, …) travel untouched in {@link Spec.providerOptions}, and each provider reads its own
 * there and in its own Context values (e.g. `HfJobs.withSandboxOptions`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Spec {
  /** Docker image (or `hf.co/spaces/…`) the sandbox runs; providers that run no image ignore it. */
  readonly image: string
  /** Environment given to the server, and so to every command in the sandbox. */
  readonly env: Readonly<Record<string, string>>
  /** The server exits when nothing has happened for this long (`undefined`: never). */
  readonly idleTimeout: Duration.Duration | undefined
  /** How long starting may take in all (the caller's, else the provider's {@link Service.startTimeout}). */
  readonly startTimeout: Duration.Duration
  /** Secrets for the sandbox's environment; remote providers keep them out of anything visible. */
  readonly secrets: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Hard limit on the sandbox's life (the HF job's timeout, the local server's `--lifetime`). */
  readonly lifetime: Duration.Duration | undefined
  /**
   * Leave the sandbox running when the provisioning scope closes after a successful start (the scope's
   * exit is then a success): the provider only detaches, and sets the endpoint's `kill`. A failed or
   * interrupted start still stops it. Optional, so providers and specs written before it keep working.
   */
  readonly detach?: boolean | undefined
  /**
   * The options of `Sandbox.make` (or `connect`) that the generic layer does not use, as the caller gave
   * them (e.g. `flavor`, `transport`, `labels` for HF Jobs). A provider checks the ones it reads and
   * ignores the rest. The schedules in force are not here: providers read `Schedules.Schedules`, which
   * `make` provides with its own `schedules` applied.
   *
   * @since 0.2.0
   */
  readonly providerOptions: Readonly<Record<string, unknown>>
  /**
   * The sandbox's name, unique among the provider's running sandboxes (checked by `make`: 1 to 63 of
   * `A-Z a-z 0-9 . _ -`). A provider that honours it refuses a second live sandbox of that name with
   * `StartError("NameTaken")` — before creating one, and after, when two creates raced — and finds it
   * again with `list({ name })`. Optional, so providers and specs written before it keep working.
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
  /**
   * Start the server as a pool host (`SandboxPool`): it holds many sandboxes, made and deleted through
   * its `/v1/sandboxes` routes, instead of being one. Absent: a dedicated sandbox. Every provider that
   * can run a host honours it (the server's `SBX_HOST_MODE=1`, `SBX_CAPACITY`, and on HF Jobs the pool's
   * labels); one that cannot refuses it with `StartError("InvalidOptions")`.
   *
   * @since 0.2.0
   */
  readonly host?: HostSpec | undefined
}

/**
 * What a pool host is started with (see {@link Spec.host}).
 *
 * @since 0.2.0
 * @category models
 */
export interface HostSpec {
  /** How many sandboxes it holds at most (the server's `SBX_CAPACITY`). */
  readonly capacity: number
  /** The pool it belongs to (HF Jobs: the `hf-sandbox-pool` label; locally: a label in its state file). */
  readonly pool: string
  /** How many hosts the pool may run (HF's `SBX_MAX_HOSTS`, kept with the host for whoever adopts it). */
  readonly maxHosts?: number | undefined
  /**
   * Accept weaker isolation where the host cannot have it all (not root, no Landlock): the server's
   * `SBX_HOST_WEAK_ISOLATION=1`. Without it such a host refuses to start and says what is missing.
   */
  readonly weakIsolation: boolean
  /**
   * The host token also acts on its sandboxes' routes (the server's `SBX_HOST_TOKEN_ACTS=1`), as HF's
   * Python client sends it there: needed only for that client to drive this host's sandboxes.
   */
  readonly hostTokenActs?: boolean | undefined
}

/**
 * How to reach a provisioned sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface Endpoint {
  /** Unique id of the sandbox (an HF job id, or `local-…`). */
  readonly id: string
  /** Which provider runs it, e.g. `"local"` or `"hf-jobs"`. */
  readonly provider: string
  /** Base URL of the in-sandbox server (when `currentBaseUrl` is set: the one it had when it started). */
  readonly baseUrl: string
  /**
   * The base URL as of now, read before every request, for a sandbox whose address can change while it
   * runs (a restarted quick tunnel gets a new hostname). Without it, every request goes to `baseUrl`.
   */
  readonly currentBaseUrl?: Effect.Effect<string> | undefined
  /** The sandbox token (sent as `X-Sandbox-Token`). */
  readonly token: Redacted.Redacted<string>
  /** Extra headers resolved per request, e.g. a proxy's bearer. */
  readonly headers?: Effect.Effect<Record<string, string>> | undefined
  /**
   * Fails as soon as the provider knows the sandbox died (the server exited, the job ended).
   * Readiness polling races against it so that a crash is reported at once, with its evidence.
   */
  readonly died: Effect.Effect<never, StartError>
  /**
   * Why the server ended, in words (`the sandbox server exited (signal 9)`), when the provider knows it
   * now or learns it within a moment; `None` otherwise. A request that then fails on the socket reports
   * this instead of the transport's error.
   *
   * @since 0.2.0
   */
  readonly exitReason?: Effect.Effect<Option.Option<string>> | undefined
  /**
   * Adapts the application's HttpClient for this sandbox's traffic (e.g. a DNS fallback for a fresh
   * tunnel name). Runs on the client the application provided, before any request is made.
   */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  /** Provider facts for diagnostics, e.g. `{ pid, workdir }` locally or `{ jobId, url }` on HF. */
  readonly details: Readonly<Record<string, unknown>>
  /** The sandbox's own log (the server's and the job's output), replayed from the start. */
  readonly logs?: ((options: LogOptions) => Stream.Stream<string, HubError>) | undefined
  /**
   * Stops a sandbox this endpoint does not own: one attached to with `connect`, or a detached one
   * (`Spec.detach`). Owned sandboxes stop when their scope closes.
   */
  readonly kill?: Effect.Effect<void> | undefined
  /**
   * The range a read into memory asks for by default (otherwise 8 MiB, 8 at a time). Parallel ranges
   * hide a long round trip; with no network in between (the local provider) the client is the limit,
   * and one request is fastest.
   */
  readonly readRangeSize?: number | undefined
  /**
   * File reads skip the HttpClient: each answer's body goes from the socket straight into the result's
   * memory (or, for downloads and streams, into 1 MiB parts). Plain `http:` only. For a server the
   * client reaches directly, such as the local provider on loopback, where the HttpClient's work per
   * 64 KiB chunk is what limits a read. Such requests carry the endpoint's headers but pass no
   * HttpClient middleware (no HttpClient span).
   */
  readonly directReads?: boolean | undefined
  /**
   * What the sandbox runs on, as usage telemetry reports it: the HF flavor on HF Jobs, `"local"` for a
   * sandbox on this machine.
   *
   * @since 0.2.0
   */
  readonly hardware?: string | undefined
  /**
   * The hard limit on the sandbox's life in force (the one asked for, or the provider's default); absent:
   * none (it runs until it is stopped or idles out).
   *
   * @since 0.2.0
   */
  readonly lifetime?: Duration.Duration | undefined
  /**
   * Whether the sandbox runs on this machine (its server is a process here).
   *
   * @since 0.2.0
   */
  readonly onThisMachine?: boolean | undefined
  /**
   * What a process that is exiting can still do synchronously about a sandbox it owns (a local server is
   * a child process): `unref` lets the event loop end while it runs, `killSync` ends it and its files.
   *
   * @since 0.2.0
   */
  readonly backstop?: Backstop | undefined
  /**
   * Whether the caller's HF token was given to the sandbox (usage telemetry reports it). Absent: no.
   *
   * @since 0.2.0
   */
  readonly forwardsHfToken?: boolean | undefined
  /**
   * The provider's own way to a port served in the sandbox (`sb.expose(port)`): the loopback address on
   * this machine, a Jobs proxy host on HF Jobs, or the port's quick tunnel, which `server.tunnel` asks
   * the sandbox server for. Absent: ports are reached through the sandbox server's port proxy.
   *
   * @since 0.2.0
   */
  /**
   * The sandbox's SSH URL as its provider has it now (`ssh://<job id>@ssh.hf.jobs` on HF Jobs), `None`
   * when it was made without SSH. Absent: the provider has no SSH.
   *
   * @since 0.2.0
   */
  readonly sshUrl?: Effect.Effect<Option.Option<string>, HubError> | undefined
  readonly expose?: ((port: number, server: PortServer) => Effect.Effect<Exposure, OperationError>) | undefined
  /**
   * The sandbox's resource samples from the platform (HF Jobs: its metrics stream). Absent: the sandbox's
   * own server measures them (`/v1/metrics`), as on the local provider.
   *
   * @since 0.2.0
   */
  readonly metrics?: ((options: Sandbox.MetricsOptions) => Stream.Stream<Sandbox.MetricsSample, HubError>) | undefined
  /**
   * The Hub this provider works with, for transfers that run in the sandbox (`files.fromHub`). Absent:
   * `HF_ENDPOINT` (else huggingface.co) and the token `huggingface_hub` would find on this machine.
   *
   * @since 0.2.0
   */
  readonly hub?: HubAccess | undefined
  /**
   * A sandbox held by a pool host: its routes are the host's `/v1/sandboxes/{localId}/…` instead of
   * `/v1/…`, and a lost connection names the host. Absent: a dedicated sandbox.
   *
   * @since 0.2.0
   */
  readonly hosted?: Hosted | undefined
}

/**
 * Where a pooled sandbox lives (see {@link Endpoint.hosted}).
 *
 * @since 0.2.0
 * @category models
 */
export interface Hosted {
  /** The host's own id (its provider's sandbox id: an HF job id, a `local-…` id). */
  readonly hostId: string
  /** The sandbox's id on its host (16 hex characters). */
  readonly localId: string
}

/**
 * A Hub endpoint and the token for it.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubAccess {
  /** The Hub's base URL, without a trailing slash. */
  readonly endpoint: string
  /** The current token (read when a transfer starts), or none. */
  readonly token: Effect.Effect<Option.Option<Redacted.Redacted<string>>>
}

/**
 * What the sandbox server offers a provider's `expose`.
 *
 * @since 0.2.0
 * @category models
 */
export interface PortServer {
  /** The URL of the port's own quick tunnel, started on first use (idempotent per port). */
  readonly tunnel: (port: number) => Effect.Effect<string, OperationError>
}

/**
 * How to reach a port served in the sandbox.
 *
 * @since 0.2.0
 * @category models
 */
export interface Exposure {
  /** The port's base URL (no trailing slash): requests go to `${url}/path`, WebSockets to its `ws(s):` twin. */
  readonly url: string
  /** Headers every request to `url` needs (a token: keep them out of logs); empty when none. */
  readonly headers: Readonly<Record<string, string>>
  /**
   * Which way it goes: `loopback` (this machine), `proxy` (a Jobs proxy host), `tunnel` (the port's
   * quick tunnel: public, no token), `server` (the sandbox server's port proxy).
   */
  readonly via: "loopback" | "proxy" | "tunnel" | "server"
}

/**
 * The synchronous exit backstop of a sandbox whose server is a process on this machine.
 *
 * @since 0.2.0
 * @category models
 */
export interface Backstop {
  /** Stops the server's process and pipes from keeping the event loop alive. */
  readonly unref: () => void
  /** Kills the server and everything below it, and removes its files, synchronously. */
  readonly killSync: () => void
}

/**
 * A provider's running sandboxes, as `list` returns them: the columns of a table for people, and a row
 * per sandbox.
 *
 * @since 0.2.0
 * @category models
 */
export interface Listing {
  /** The table's headings, in the provider's own terms (e.g. `PID`, `PORT` locally; `STAGE`, `FLAVOR` on HF). */
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<Listed>
}

/**
 * One sandbox of a {@link Listing}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Listed {
  readonly id: string
  /** The provider's name, e.g. `"local"` or `"hf-jobs"`. */
  readonly provider: string
  /** When it was created (ISO 8601), when the provider knows. */
  readonly createdAt: string | undefined
  /** The row's cells under the listing's columns. */
  readonly cells: ReadonlyArray<string>
  /** The whole record, with `provider`, as `--json` prints it. */
  readonly record: Readonly<Record<string, unknown>>
  /**
   * Its name (`Sandbox.make({ name })`), if it has one.
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
}

/**
 * Options of `list`.
 *
 * @since 0.2.0
 * @category models
 */
export interface ListOptions {
  /** Include sandboxes that have ended, where the provider keeps them (HF Jobs). */
  readonly all?: boolean | undefined
  /**
   * Only sandboxes carrying every one of these labels (HF Jobs: filtered by the Hub; local: the labels a
   * sandbox was made with).
   *
   * @since 0.2.0
   */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /**
   * Only the sandbox with this name (`Sandbox.make({ name })`).
   *
   * @since 0.2.0
   */
  readonly name?: string | undefined
  /**
   * The options of `connect` the generic layer does not read, as given (e.g. HF Jobs' `namespace`), so
   * that a lookup by name asks where the sandbox lives.
   *
   * @since 0.2.0
   */
  readonly providerOptions?: Readonly<Record<string, unknown>> | undefined
}

/**
 * Options of {@link sweep}: which running sandboxes to stop. Filters combine (AND); with none, every
 * running sandbox of the provider.
 *
 * @since 0.2.0
 * @category models
 */
export interface SweepOptions {
  /** Only sandboxes carrying every one of these labels. */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** Only the sandbox with this name. */
  readonly name?: string | undefined
  /**
   * Only sandboxes created longer ago than this (a Duration, or `"90s"`, `"30m"`, `"2h"`, `"1d"`).
   * Sandboxes whose creation time the provider does not know are kept.
   */
  readonly olderThan?: Duration.DurationInput | string | undefined
  /** Stop nothing: only say which sandboxes would be stopped. */
  readonly dryRun?: boolean | undefined
  /** As for {@link ListOptions.providerOptions}. */
  readonly providerOptions?: Readonly<Record<string, unknown>> | undefined
}

/**
 * Options of a sandbox's log stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface LogOptions {
  /** Keep following new lines until the sandbox ends. Default false: the log so far. */
  readonly follow?: boolean | undefined
  /** Only the last N lines (of the log so far). */
  readonly tail?: number | undefined
}

/**
 * A backend that runs sandboxes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Short name used in errors and spans, e.g. `"local"`. */
  readonly name: string
  /**
   * Starts a sandbox. The returned endpoint lives as long as the scope; the scope's release must
   * stop the sandbox and everything it started, within a bound, whatever state it is in.
   */
  readonly provision: (spec: Spec) => Effect.Effect<Endpoint, StartError, Scope.Scope>
  /**
   * Attaches to a running sandbox by id, when the provider can. Closing the scope detaches; the
   * endpoint's `kill` stops the sandbox.
   */
  readonly connect?: ((id: string, spec: Spec) => Effect.Effect<Endpoint, StartError, Scope.Scope>) | undefined
  /**
   * The provider's sandboxes that are running (with `all`, ended ones too where it keeps them).
   * Optional, so providers written before it keep compiling: {@link list} fails for those.
   *
   * @since 0.2.0
   */
  readonly list?: ((options: ListOptions) => Effect.Effect<Listing, StartError | HubError>) | undefined
  /**
   * Stops a sandbox by id, whoever started it.
   *
   * @since 0.2.0
   */
  readonly kill?: ((id: string) => Effect.Effect<void, StartError | HubError>) | undefined
  /**
   * A sandbox's log by id, replayed from the start (with `follow`, until it ends).
   *
   * @since 0.2.0
   */
  readonly logs?: ((id: string, options: LogOptions) => Stream.Stream<string, StartError | HubError>) | undefined
  /**
   * A running sandbox's resource samples by id, where the platform measures them without the sandbox's
   * server (HF Jobs: the job's metrics stream), so nothing connects to the sandbox; the stream ends when
   * the sandbox does. Absent: only the sandbox's own server measures them (attach, then `sb.metrics`).
   *
   * @since 0.2.0
   */
  readonly metrics?:
    | ((id: string, options: Sandbox.MetricsOptions) => Stream.Stream<Sandbox.MetricsSample, StartError | HubError>)
    | undefined
  /**
   * How long starting this spec may take when the caller sets no `startTimeout` (its
   * `startTimeout` is not yet set). Absent: 3 minutes. Fails, before anything starts, when the
   * provider's own options for the spec are invalid.
   *
   * @since 0.2.0
   */
  readonly startTimeout?:
    | ((spec: Omit<Spec, "startTimeout">) => Effect.Effect<Duration.Duration, StartError>)
    | undefined
}

/**
 * The provider in use. Provide one with `LocalSandbox.layer()` or `HfJobs.layer()`.
 *
 * @since 0.1.0
 * @category tags
 */
export class SandboxProvider extends Context.Tag("hf-sandbox/SandboxProvider")<SandboxProvider, Service>() {}

/**
 * The provider's running sandboxes (with `all`, ended ones too where it keeps them). Fails with a
 * `StartError` naming the provider when it cannot list.
 *
 * @since 0.2.0
 * @category accessors
 */
export const list: (options?: ListOptions) => Effect.Effect<Listing, StartError | HubError, SandboxProvider> =
  internal.list(SandboxProvider)

/**
 * Stops a sandbox of the provider by id. Fails with a `StartError` naming the provider when it cannot.
 *
 * A pooled id (`<host id>.<local id>`, a `SandboxPool`'s sandbox) deletes only that sandbox on its host,
 * with the host token, and the host keeps running; `StartError("NotFound")` when the host no longer has
 * it. Its host is reached through the application's `HttpClient` when one is provided, else `fetch`.
 *
 * @since 0.2.0
 * @category accessors
 */
export const kill: (id: string) => Effect.Effect<void, StartError | HubError, SandboxProvider> =
  internal.kill(SandboxProvider)

/**
 * A sandbox's log by id. Fails with a `StartError` naming the provider when it cannot read one.
 *
 * A pooled id's log is its host's log filtered to the lines that name the sandbox (the host server logs
 * each sandbox's creation, idle eviction and delete); with `follow` it ends with the sandbox's delete.
 *
 * @since 0.2.0
 * @category accessors
 */
export const logs: (id: string, options?: LogOptions) => Stream.Stream<string, StartError | HubError, SandboxProvider> =
  internal.logs(SandboxProvider)

/**
 * A running sandbox's resource samples by id, until it ends (or the stream is interrupted): the
 * platform's where it measures them without the sandbox's server ({@link Service.metrics}, HF Jobs),
 * else the sandbox's own server's, attached to by id as `Sandbox.connect` attaches (through the
 * application's `HttpClient` when one is provided, else `fetch`). A pooled id's come from its own routes
 * on its host (`/v1/sandboxes/{id}/metrics`), which measure the whole host. Fails with a `StartError`
 * when the sandbox cannot be reached.
 *
 * @since 0.2.0
 * @category accessors
 */
export const metrics: (
  id: string,
  options?: Sandbox.MetricsOptions
) => Stream.Stream<Sandbox.MetricsSample, StartError | HubError | OperationError, SandboxProvider> =
  internal.metrics(SandboxProvider)

/**
 * Attaches to a running sandbox by id; closing the scope detaches. Fails with a `StartError` naming the
 * provider when it cannot attach.
 *
 * @since 0.2.0
 * @category accessors
 */
export const connect: (id: string, spec: Spec) => Effect.Effect<Endpoint, StartError, SandboxProvider | Scope.Scope> =
  internal.connect(SandboxProvider)

/**
 * Stops the provider's running sandboxes that match every filter given (labels, name, age), and returns
 * them — with `dryRun`, only returns them. Every match is tried; when some could not be stopped, it fails
 * with the first error after trying the rest. Fails with a `StartError("InvalidOptions")` naming the
 * option for a bad filter, and as {@link list} and {@link kill} fail for a provider without them.
 *
 * @since 0.2.0
 * @category accessors
 */
export const sweep: (
  options?: SweepOptions
) => Effect.Effect<ReadonlyArray<Listed>, StartError | HubError, SandboxProvider> = internal.sweep(SandboxProvider)
