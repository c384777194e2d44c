/**
 * A faithful, offline **Hugging Face Hub emulator** for tests: a real HTTP server on 127.0.0.1 that
 * implements the subset of the Jobs API hf-sandbox uses, runs every job's command as a real local
 * process, emulates the Jobs exposed-port proxy and the Cloudflare quick-tunnel edge, and injects the
 * faults the real services are known for. Nothing it does reaches the internet.
 *
 * ```ts
 * import * as Testing from "hf-sandbox/testing"
 *
 * const program = Effect.gen(function* () {
 *   const hub = yield* Testing.make()            // scoped: everything it started is gone on release
 *   // use hub.url as HF_ENDPOINT / hubUrl and Redacted.value(hub.token) as the HF token
 * })
 * ```
 *
 * **Hub API** (`url`): `GET /api/whoami-v2`, `POST /api/jobs/{ns}` (create, validated like the Hub, labels included),
 * `GET /api/jobs/{ns}/{id}`, `GET /api/jobs/{ns}/{id}/logs` (SSE, replayed from the start on every
 * request, `?tail=N`), `POST /api/jobs/{ns}/{id}/cancel` (200 with an **empty** body, as the Hub
 * answers), `GET /api/jobs/{ns}` (`stage=`/`label=k=v` filters, pages of 20 with a `Link: <…>;
 * rel="next"` header), `GET /api/jobs/hardware`, `HEAD /api/telemetry/{topic…}`. Every route except
 * telemetry and hardware needs `Authorization: Bearer <token>`; every JSON error body is
 * `{"error": "…"}`. The namespace is the user (`alice`) or its org `acme`.
 *
 * **Jobs** run on this machine: after the scheduling delay the job becomes RUNNING and `[...command,
 * ...arguments]` is spawned in its own process group, in a fresh temp directory (also `HOME` and `TMPDIR`: each container has its own /tmp), with
 * only `PATH` (the stand-in bin directory first), `HOME`, `TMPDIR`, `LANG=C.UTF-8`, `HF_EMULATOR_CONTROL`,
 * `HF_EMULATOR_JOB_ID`, then the job's `environment`, then its `secrets` — nothing else from the test
 * process (never `HF_TOKEN`). The `dockerImage`/`spaceId` is recorded but not used. stdout and stderr
 * become the job's log, line by line. When the command exits the "container" stops: whatever else is
 * left in it is killed (its process group, and on Linux every process started with its
 * `HF_EMULATOR_JOB_ID`, even one that left the group). Exit 0 → COMPLETED; otherwise ERROR with
 * `Job failed with exit code: N` (128 + signal number for a signal). `timeoutSeconds` → CANCELED with
 * message `timeout`.
 *
 * **Exposed ports share this machine's network.** Emulated jobs cannot all listen on the port they
 * declare, so every port `p` of `expose.ports` is mapped to a free loopback port `L`: **each variable
 * of the job's `environment` whose value is exactly `String(p)` (e.g. `SBX_PORT=49983`) is rewritten
 * to `String(L)`** in the process environment (the JobInfo still shows `p`), and the proxy for
 * `https://<jobId>--<p>.hf.jobs` forwards to `127.0.0.1:L`. A job whose environment does not carry the
 * port must listen on `p` itself. The same applies to tunnels: the stand-in cloudflared forwards to
 * whatever `--url` the job gives it.
 *
 * **Proxy and tunnel hosts** are reached through {@link routeHttpClient} (or {@link layerHttpClient}),
 * which sends requests for `*.hf.jobs` and `*.trycloudflare.com` to the emulator.
 *
 * **Stand-in `cloudflared`**: first on every job's PATH. `cloudflared tunnel --no-autoupdate
 * --protocol http2 --no-prechecks --metrics 127.0.0.1:M --url http://127.0.0.1:P` prints what the real
 * one prints (disclaimer, request line, the URL box, version/settings lines, `Starting metrics server
 * on …`, `Registered tunnel connection connIndex=0 …`), serves `/quicktunnel`, `/ready`,
 * `/healthcheck` and `/metrics` on M, and asks the emulator (over loopback HTTP at
 * `HF_EMULATOR_CONTROL`) for a random `<w>-<w>-<w>-<w>.trycloudflare.com` hostname. On SIGTERM/SIGINT
 * it unregisters and exits 0.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/testing/emulator.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface EmulatorOptions {
  /**
   * The one valid HF token. Default `"hf_emulator_0123456789abcdef"`. It must start with `hf_`:
   * `@huggingface/hub` refuses any other token before sending a request.
   */
  readonly token?: string | undefined
  /** The whoami name, which is the default namespace. Default `"alice"`. The user also belongs to the org `"acme"`. */
  readonly user?: string | undefined
  /** Time a job spends in SCHEDULING before it becomes RUNNING. Default 150 ms. */
  readonly schedulingDelay?: Duration.DurationInput | undefined
  /** Interval of the `: keep-alive` comments on log streams. Default 1 s (the Hub sends one about every 30 s). */
  readonly keepAliveInterval?: Duration.DurationInput | undefined
}

/**
 * The Hub API routes, as recorded in {@link HubEmulator.requests} and matched by {@link HubErrorFault}.
 *
 * @since 0.1.0
 * @category models
 */
export type HubRoute =
  | "whoami"
  | "create"
  | "inspect"
  | "logs"
  | "cancel"
  | "list"
  | "hardware"
  | "telemetry"
  | "unknown"

/**
 * The next `times` Hub requests on `route` (`"any"`: every authenticated Hub route) are answered with
 * `status` and `{"error": "…"}`, plus `Retry-After: <retryAfterSeconds>` when given; `times` counts down.
 *
 * @since 0.1.0
 * @category models
 */
export interface HubErrorFault {
  readonly route: "whoami" | "create" | "inspect" | "logs" | "cancel" | "list" | "any"
  readonly status: number
  times: number
  readonly retryAfterSeconds?: number | undefined
}

/**
 * Faults to inject, mutable at runtime: tests assign to the fields of {@link HubEmulator.faults}.
 * The defaults inject nothing.
 *
 * @since 0.1.0
 * @category models
 */
export interface Faults {
  /** Error answers for the next matching Hub requests, checked before authentication. */
  hubErrors: Array<HubErrorFault>
  /** The next N log streams (of RUNNING or finished jobs) are cut — socket destroyed — right after the start line and one log line. */
  cutLogStreams: number
  /** Overrides the `schedulingDelay` option for jobs created from now on. */
  schedulingDelay: Duration.DurationInput | undefined
  /** The next N quick-tunnel creations are refused with 429 `error code: 1015`; the stand-in prints the two error lines and exits 1. */
  tunnelCreate429: number
  /** After a tunnel registers, the edge answers 530 `error code: 1033` for this many milliseconds. Default 0. */
  tunnelWarmup530Ms: number
  /** Delay between the stand-in printing the URL box and registering its connection. Default 100 ms. */
  tunnelRegisterDelayMs: number
  /**
   * Requests to a `*.trycloudflare.com` host no tunnel ever had fail like a DNS miss: a transport
   * error whose cause has `code: "ENOTFOUND"`. When false, the edge answers 530 `error code: 1033`. Default true.
   */
  unknownTunnelHostsDnsFail: boolean
  /** The next N jobs created die (SIGKILL of their process group → ERROR, exit code 137) right after their first log line. */
  crashBeforeReady: number
  /**
   * Every log stream answers only after this many milliseconds (status line included), as the Hub does
   * when its log backend is slow. Default 0.
   *
   * @since 0.2.0
   */
  logFirstByteDelayMs: number
  /**
   * The next N log streams of RUNNING jobs send the `===== Job started … =====` line and then only
   * `: keep-alive` comments, never a log line, and stay open until the job ends: the Hub's "infinite
   * empty stream". Default 0.
   *
   * @since 0.2.0
   */
  silentLogStreams: number
  /**
   * Telemetry pings are recorded, then answered never (`"hang"`: the connection stays open until the
   * client drops it) or with a reset connection (`"reset"`). Default `undefined`: 200 at once.
   *
   * @since 0.2.0
   */
  telemetry: "hang" | "reset" | undefined
}

/**
 * Faults that inject nothing, the emulator's initial state: `Object.assign(emulator.faults, noFaults())`
 * resets an emulator shared by several tests.
 *
 * @since 0.1.0
 * @category models
 */
export const noFaults = (): Faults => internal.defaultFaults()

/**
 * A snapshot of one job, for assertions.
 *
 * @since 0.1.0
 * @category models
 */
export interface JobRecord {
  readonly id: string
  readonly namespace: string
  /** The create body exactly as received (parsed JSON). */
  readonly spec: unknown
  readonly stage: string
  readonly message: string | null
  /** The pid (and process group id) of the job's command once it runs. */
  readonly pid: number | undefined
  readonly cancelRequests: number
  /** The captured output lines, without the `===== Job started … =====` line the log stream adds. */
  readonly logs: ReadonlyArray<string>
  /** The complete environment the process gets (platform variables, rewritten ports and secrets included). */
  readonly environment: Record<string, string>
  /** The secrets as received. */
  readonly secrets: Record<string, string>
  /** The job's temp directory (its cwd and HOME); removed when the emulator is released. */
  readonly workdir: string
  /** Exposed port → loopback port the job's server really listens on (see the module docs). */
  readonly ports: Record<string, number>
}

/**
 * One Hub API request as the emulator saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestRecord {
  readonly method: string
  /** Path and query. */
  readonly path: string
  readonly route: HubRoute
  readonly status: number
  readonly authorization: string | undefined
}

/**
 * One telemetry ping (`HEAD /api/telemetry/…`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TelemetryRecord {
  readonly path: string
  readonly userAgent: string
  readonly authorization: string | undefined
}

/**
 * A running emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface HubEmulator {
  /** The base URL, e.g. `http://127.0.0.1:41234`: use it as `HF_ENDPOINT` / `hubUrl`. */
  readonly url: string
  /** The one valid HF token. */
  readonly token: Redacted.Redacted<string>
  /** The user's name (the default namespace). */
  readonly user: string
  /** The faults to inject; mutate its fields. */
  readonly faults: Faults
  /** Every job created so far, oldest first. */
  readonly jobs: Effect.Effect<ReadonlyArray<JobRecord>>
  readonly job: (id: string) => Effect.Effect<JobRecord | undefined>
  /** Every Hub API request so far (telemetry included, proxy/tunnel traffic not), oldest first. */
  readonly requests: Effect.Effect<ReadonlyArray<RequestRecord>>
  /** The job's container dies: SIGKILL of its process group → ERROR with `Job failed with exit code: 137`. */
  readonly killJob: (id: string) => Effect.Effect<void>
  /**
   * The job's running cloudflared dies (SIGKILL), as a real one may: its hostname answers 530
   * `error code: 1033` from now on and the requests in flight through it are cut. The in-sandbox server
   * restarts cloudflared, which gets a new hostname and prints a new marker line. Returns the URLs of
   * the tunnels that died (none when the job has no live tunnel).
   */
  readonly killTunnel: (id: string) => Effect.Effect<ReadonlyArray<string>>
  /** Every telemetry ping so far. */
  readonly telemetry: Effect.Effect<ReadonlyArray<TelemetryRecord>>
}

/**
 * Starts an emulator. Its release kills every job's processes (SIGTERM, then SIGKILL after 2 s) —
 * process group, descendants, and on Linux every process whose environment carries this emulator's
 * `HF_EMULATOR_CONTROL` (which catches `setsid`/`start_new_session` escapees, as a container would) —
 * closes the servers and sockets and removes its temp directories; it is bounded and never hangs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: EmulatorOptions) => Effect.Effect<HubEmulator, never, Scope.Scope> = internal.make

/**
 * @since 0.1.0
 * @category tags
 */
export class HubEmulatorService extends Context.Tag("hf-sandbox/Testing/HubEmulator")<
  HubEmulatorService,
  HubEmulator
>() {}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: EmulatorOptions): Layer.Layer<HubEmulatorService> =>
  Layer.scoped(HubEmulatorService, make(options))

/**
 * Wraps an `HttpClient` so that requests to `https://<jobId>--<port>.hf.jobs/…` (Jobs proxy) and
 * `https://<name>.trycloudflare.com/…` (quick-tunnel edge) go to the emulator instead: same method,
 * path, query, headers and body, plus `x-emulator-host: <original host>`. A `*.trycloudflare.com` host
 * no tunnel ever had fails at once like a DNS miss (`RequestError` with reason `"Transport"` whose cause
 * is an `Error` with `code: "ENOTFOUND"`), unless `faults.unknownTunnelHostsDnsFail` is false. Every
 * other request passes through unchanged. Wrap the platform's client itself (as {@link layerHttpClient}
 * does), before any `mapRequest`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const routeHttpClient: (
  emulator: HubEmulator
) => <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E | HttpClientError.RequestError, R> =
  internal.routeHttpClient

/**
 * Replaces the `HttpClient` with the underlying one wrapped by {@link routeHttpClient}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttpClient: Layer.Layer<HttpClient.HttpClient, never, HttpClient.HttpClient | HubEmulatorService> =
  Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function* () {
      const emulator = yield* HubEmulatorService
      const client = yield* HttpClient.HttpClient
      return routeHttpClient(emulator)(client)
    })
  )
