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
 * answers), `GET /api/jobs/{ns}` (`stage=`/`label=k=v` filters, newest first, pages of 20 —
 * `listPageSize` — with an absolute `Link: <…?cursor=…>; rel="next"` header, as `huggingface_hub`
 * follows it), `GET /api/jobs/{ns}/{id}/metrics` (SSE, one `event: metric` sample per `metricsInterval`
 * while the job runs, measured on its process tree; open but silent after it ends; 500 for a job that has
 * ended), `GET /api/jobs/hardware` (the documented catalog, specs and prices), `HEAD /api/telemetry/{topic…}`. Every route except
 * telemetry and hardware needs `Authorization: Bearer <token>`; every JSON error body is
 * `{"error": "…"}`. The namespace is the user (`alice`) or its org `acme`. A 429 carries the Hub's
 * headers, `RateLimit: "api";r=0;t=<seconds to reset>` and `RateLimit-Policy: "fixed window";"api";q=…;w=…`,
 * never `Retry-After`; the `rateLimit` option runs a fixed-window limiter across every route.
 *
 * **Credentials**: besides `token`, the Hub accepts the OAuth tokens it issued until they expire (then
 * 401 like any invalid token). `POST /oauth/token` (route `"oauth"`) implements the refresh of `hf auth
 * login` tokens (form-encoded `grant_type=refresh_token`, `refresh_token`, `client_id` = the device-code
 * client of `huggingface_hub`; refresh tokens rotate: each is spent by one refresh; `invalid_grant` for
 * a spent or unknown one) and the Trusted Publishers exchange (JSON, RFC 8693, `hf_jwt_…` for a repo,
 * `hf_oauth_…` for a user, 3600 s; `invalid_request`/`invalid_grant` as 400 `{"error",
 * "error_description"}`). A Trusted Publisher token authenticates (whoami answers) but gets 403 on Jobs:
 * per the Hub's docs it writes one repo or reads gated repos. See {@link HubEmulator.login} and
 * {@link HubEmulator.trustPublisher}.
 *
 * **Jobs** run on this machine: after the scheduling delay the job becomes RUNNING and `[...command,
 * ...arguments]` is spawned in its own process group, in a fresh temp directory (also `HOME` and `TMPDIR`: each container has its own /tmp), with
 * only `PATH` (the stand-in bin directory first, then the directory of the interpreter `python3` resolves
 * to, as an image has python3 itself rather than a pyenv or asdf shim), `HOME`, `TMPDIR`, `LANG=C.UTF-8`, `HF_EMULATOR_CONTROL`,
 * `HF_EMULATOR_JOB_ID`, then the job's `environment`, then its `secrets` — nothing else from the test
 * process (never `HF_TOKEN`). The `dockerImage`/`spaceId` is recorded but not used. stdout and stderr
 * become the job's log, line by line. When the command exits the "container" stops: whatever else is
 * left in it is killed (its process group, and on Linux every process started with its
 * `HF_EMULATOR_JOB_ID`, even one that left the group). Exit 0 → COMPLETED; otherwise ERROR with
 * `Job failed with exit code: N` (128 + signal number for a signal). `timeoutSeconds` → CANCELED with
 * message `timeout`.
 *
 * **Volumes and SSH**: a create's `volumes` and `ssh` are checked as the Hub's Jobs API takes them
 * (`huggingface_hub`'s `Volume.to_dict`; `ssh: { enabled: true }`), and shown back in the JobInfo
 * (`volumes`; `status.sshUrl` = `ssh://<jobId>@ssh.hf.jobs`, which nothing answers). Each volume is
 * mounted at `$HF_EMULATOR_VOLUMES<mountPath>` (under the job's directory, since the job has no root of its
 * own; {@link JobRecord.mounts}). A model, dataset or Space volume holds the files of the repo seeded with
 * {@link HubEmulator.seedRepo}, at the volume's `revision` (default `main`; an oid or a seed's `tags`) and
 * below its `path`, copied when the job is created; a repo the job's owner cannot read (missing, or private
 * to another namespace), a revision or a `path` it lacks refuses the create with 404, naming the volume. A
 * bucket starts empty (the emulator has no bucket store). Read-only mounts (every repo; a bucket with
 * `readOnly`) have files 0444 in directories 0555 and, where this machine allows `unshare --mount` and
 * bind mounts (root here), the job runs in its own mount namespace with those directories bind-mounted
 * read-only, so that a write fails with `EROFS` even as root, as on HF. Elsewhere only the modes stand,
 * which a root process ignores; a read-write bucket is 0755.
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
 * which sends requests for `*.hf.jobs` and `*.trycloudflare.com` to the emulator. Both carry streamed
 * responses and, as the real ones do, upgrades (WebSockets): a raw client connects to the emulator's
 * `url` with the original host in the `x-emulator-host` header, and the upgrade is spliced to the job's
 * port both ways.
 *
 * **Stand-in `cloudflared`**: first on every job's PATH (the version of `faults.cloudflaredOnPath`; the
 * test machine's own cloudflared never is), parsing its command line as the real one does (urfave/cli:
 * `--version`, and `Incorrect Usage` with exit 0 for an unknown flag). `cloudflared tunnel --no-autoupdate
 * --protocol http2 --no-prechecks --metrics 127.0.0.1:M --url http://127.0.0.1:P` prints what the real
 * one prints (disclaimer, request line, the URL box, version/settings lines, `Starting metrics server
 * on …`, `Registered tunnel connection connIndex=0 …`), serves `/quicktunnel`, `/ready`,
 * `/healthcheck` and `/metrics` on M, and asks the emulator (over loopback HTTP at
 * `HF_EMULATOR_CONTROL`) for a random `<w>-<w>-<w>-<w>.trycloudflare.com` hostname. On SIGTERM/SIGINT
 * it unregisters and exits 0. The emulated release host ({@link HubEmulator.cloudflaredRelease}) serves
 * it for download like github.com, and a UDP resolver ({@link HubEmulator.publicDns}) plays the public DNS.
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
import { PinnedConnect } from "./internal/hfJobs/publicDns.js"
import * as internal from "./internal/testing/emulator.js"
import * as faults from "./internal/testing/faults.js"
import * as router from "./internal/testing/router.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface EmulatorOptions {
  /**
   * The static HF token, which never expires (tokens from {@link HubEmulator.login} are valid too).
   * Default `"hf_emulator_0123456789abcdef"`. It must start with `hf_`: `@huggingface/hub` refuses any
   * other token before sending a request.
   */
  readonly token?: string | undefined
  /** The whoami name, which is the default namespace. Default `"alice"`. The user also belongs to the org `"acme"`. */
  readonly user?: string | undefined
  /** Time a job spends in SCHEDULING before it becomes RUNNING. Default 150 ms. */
  readonly schedulingDelay?: Duration.DurationInput | undefined
  /** Interval of the `: keep-alive` comments on log streams. Default 1 s (the Hub sends one about every 30 s). */
  readonly keepAliveInterval?: Duration.DurationInput | undefined
  /**
   * Jobs per page of `GET /api/jobs/{ns}` before a `Link: <…>; rel="next"` header points to the rest.
   * Default 20. Tests set it small, so that listing more jobs than one page holds is cheap.
   *
   * @since 0.2.0
   */
  readonly listPageSize?: number | undefined
  /**
   * A fixed-window rate limit across every Hub API route, as the Hub enforces one (`"api"` bucket):
   * at most `quota` requests per `window` (the first window starts when the emulator does). Requests
   * beyond it get a 429 with the Hub's `RateLimit`/`RateLimit-Policy` headers. Default: no limit.
   *
   * @since 0.2.0
   */
  readonly rateLimit?: { readonly quota: number; readonly window: Duration.DurationInput } | undefined
  /**
   * Faults in force from the start (the rest keep their defaults); {@link HubEmulator.faults} changes
   * them later.
   *
   * @since 0.2.0
   */
  readonly faults?: Partial<Faults> | undefined
  /**
   * Time between two samples of a job's metrics stream (`GET /api/jobs/{ns}/{id}/metrics`). Default 1 s,
   * as the Hub sends them.
   *
   * @since 0.2.0
   */
  readonly metricsInterval?: Duration.DurationInput | undefined
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
  | "metrics"
  | "cancel"
  | "list"
  | "hardware"
  | "telemetry"
  | "oauth"
  | "unknown"

/**
 * The next `times` Hub requests on `route` (`"any"`: every authenticated Hub route) are answered with
 * `status` and `{"error": "…"}`; `times` counts down. A 429 carries the Hub's headers,
 * `RateLimit: "api";r=0;t=<retryAfterSeconds, default 0>` and
 * `RateLimit-Policy: "fixed window";"api";q=1000;w=300` (never `Retry-After`); any other status carries
 * `Retry-After: <retryAfterSeconds>` when given.
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
 * The next `times` Hub requests on `route` are answered with a redirect (`status`, default 307) instead:
 * to the same path and query on the emulator (a relative `Location`) when `toOrigin` is left out, else
 * to that origin (e.g. `http://127.0.0.1:9`), path and query kept. Checked after {@link HubErrorFault}s.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubRedirectFault {
  readonly route: "whoami" | "create" | "inspect" | "logs" | "cancel" | "list" | "any"
  times: number
  readonly status?: 301 | 302 | 303 | 307 | 308 | undefined
  readonly toOrigin?: string | undefined
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
  /**
   * Redirects for the next matching Hub requests, checked after `hubErrors`, before authentication.
   *
   * @since 0.2.0
   */
  hubRedirects: Array<HubRedirectFault>
  /**
   * A create makes its job at once but answers only after this many milliseconds (a slow answer, or
   * one about to be lost): the job exists while the client still waits. Default 0.
   *
   * @since 0.2.0
   */
  createAnswerDelayMs: number
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
   * The release the stand-in cloudflared on the PATH of jobs created from now on impersonates (what
   * `--version` prints, and which flags it knows: before `2026.5.0` it has no `--no-prechecks` and, like
   * the real one, prints `Incorrect Usage` and exits 0), or `null` for no cloudflared on PATH. Default
   * the stand-in's own version (2026.8.2). The test machine's own cloudflared is never on a job's PATH.
   * @since 0.2.0
   */
  cloudflaredOnPath: string | null
  /**
   * The next N downloads of a cloudflared asset from the emulated release host serve other bytes of the
   * same size (a checksum mismatch).
   * @since 0.2.0
   */
  cloudflaredDownloadCorrupt: number
  /**
   * The next N downloads of a cloudflared asset are cut halfway: `Content-Length` announces the whole
   * file, then the connection drops.
   * @since 0.2.0
   */
  cloudflaredDownloadTruncated: number
  /**
   * How the names of tunnels created from now on appear in DNS (the record of a fresh quick tunnel takes a
   * while to propagate, and a resolver that looked too early caches the miss for the zone's negative TTL,
   * 30 minutes). For `propagationMs` after its creation a name is unknown to every resolver; after that,
   * its next `systemMisses` lookups through the system resolver ({@link routeHttpClient}: a transport
   * error with `code: "ENOTFOUND"`) and its next `publicMisses` queries at the public resolver
   * ({@link HubEmulator.publicDns}: NXDOMAIN) still miss. `systemMisses: Infinity` is a resolver that
   * cached an early miss: only the client's public-DNS fallback reaches the tunnel. Default all 0.
   * @since 0.2.0
   */
  freshTunnelDns: { propagationMs: number; systemMisses: number; publicMisses: number }
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
  /**
   * Flavors with no machine free: a job created with one stays in SCHEDULING until it is cancelled
   * (its timeout counts from RUNNING, as here it never comes): what makes a list of flavors fall back. Default none.
   *
   * @since 0.2.0
   */
  unavailableFlavors: Array<string>
}

/**
 * Faults that inject nothing, the emulator's initial state: `Object.assign(emulator.faults, noFaults())`
 * resets an emulator shared by several tests.
 *
 * @since 0.1.0
 * @category models
 */
export const noFaults = (): Faults => faults.defaultFaults()

/**
 * A cloudflared release on the emulated release host: set `SBX_CLOUDFLARED_BASE_URL`,
 * `SBX_CLOUDFLARED_VERSION` and `SBX_CLOUDFLARED_SHA256` in a job's environment to make its server
 * download it (see {@link HubEmulator.cloudflaredRelease}).
 *
 * @since 0.2.0
 * @category models
 */
export interface CloudflaredRelease {
  /** Stands for `https://github.com/cloudflare/cloudflared/releases/download` (loopback HTTP). */
  readonly baseUrl: string
  readonly version: string
  /** The sha256 of the asset served for `version` (the same for amd64 and arm64). */
  readonly sha256: string
}

/**
 * One request to the emulated release host: `github.com` answers 302 to
 * `release-assets.githubusercontent.com`, which serves the bytes.
 *
 * @since 0.2.0
 * @category models
 */
export interface DownloadRecord {
  readonly host: "github.com" | "release-assets.githubusercontent.com"
  /** Path and query on that host. */
  readonly path: string
  readonly status: number
  /** Body bytes sent (fewer than the asset's size when the download was cut). */
  readonly bytes: number
}

/**
 * One lookup of a `*.trycloudflare.com` name: through the system resolver ({@link routeHttpClient}) or at
 * the emulator's public resolver ({@link HubEmulator.publicDns}).
 *
 * @since 0.2.0
 * @category models
 */
export interface DnsLookupRecord {
  readonly resolver: "system" | "public"
  readonly name: string
  readonly found: boolean
}

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
  /**
   * Each volume's mount path → the directory that stands in for it, empty (the emulator has no repo
   * store), mode 0555 for a read-only mount and 0755 for a read-write one. See "Volumes and SSH" above.
   *
   * @since 0.2.0
   */
  readonly mounts: Record<string, string>
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
  /** When the request arrived (ms since the epoch). */
  readonly at: number
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
 * What `hf auth login` (device-code OAuth) receives, see {@link HubEmulator.login}.
 *
 * @since 0.2.0
 * @category models
 */
export interface OAuthGrant {
  readonly accessToken: Redacted.Redacted<string>
  readonly refreshToken: Redacted.Redacted<string>
  /** Seconds the access token is valid from now. */
  readonly expiresIn: number
}

/**
 * A Trusted Publisher configured on the emulated Hub, see {@link HubEmulator.trustPublisher}.
 *
 * @since 0.2.0
 * @category models
 */
export interface TrustedPublisher {
  readonly resource: string
  /** A CI id token (audience: the emulator's URL) the exchange accepts for `resource`: use as `HF_OIDC_ID_TOKEN`. */
  readonly idToken: Redacted.Redacted<string>
  /** A stand-in for GitHub's `ACTIONS_ID_TOKEN_REQUEST_URL`, minting id tokens for `resource` with the asked audience. */
  readonly actionsRequestUrl: string
  /** Its `ACTIONS_ID_TOKEN_REQUEST_TOKEN`. */
  readonly actionsRequestToken: Redacted.Redacted<string>
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
  /** The static HF token (it never expires). */
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
   * The running job's timeout (`timeoutSeconds`) comes due now, as if that long had passed: the job
   * becomes CANCELED with the message `timeout` and its processes are stopped, exactly as when its timer
   * fires (which it still does by itself). Returns false, doing nothing, when the job is not running or
   * has no timeout. For tests that check what a timeout does without racing the clock.
   *
   * @since 0.2.0
   */
  readonly expireTimeout: (id: string) => Effect.Effect<boolean>
  /**
   * The job's running cloudflared dies (SIGKILL), as a real one may: its hostname answers 530
   * `error code: 1033` from now on and the requests in flight through it are cut. The in-sandbox server
   * restarts cloudflared, which gets a new hostname and prints a new marker line. Returns the URLs of
   * the tunnels that died (none when the job has no live tunnel).
   */
  readonly killTunnel: (id: string) => Effect.Effect<ReadonlyArray<string>>
  /** Every telemetry ping so far. */
  readonly telemetry: Effect.Effect<ReadonlyArray<TelemetryRecord>>
  /**
   * Issues an OAuth access token (`hf_oauth_…`, valid `expiresIn`, default 30 days; zero or negative:
   * already expired) and its refresh token, as `hf auth login` gets them. Write them where
   * `huggingface_hub` does (the token file and a `stored_tokens` section with `hf_token`,
   * `refresh_token`, `expires_at`).
   *
   * @since 0.2.0
   */
  readonly login: (options?: { readonly expiresIn?: Duration.DurationInput | undefined }) => Effect.Effect<OAuthGrant>
  /**
   * Configures a Trusted Publisher for `resource` (a repo such as `acme/model`, or a user name): the
   * exchange then accepts the id tokens it mints.
   *
   * @since 0.2.0
   */
  readonly trustPublisher: (resource: string) => Effect.Effect<TrustedPublisher>
  /**
   * The emulated release host's copy of a cloudflared release (default: the stand-in's own version):
   * `GET {baseUrl}/{version}/cloudflared-linux-{arch}` answers 302 to the objects host, which serves the
   * stand-in impersonating `version`. Throws on a version that is not a release tag (`YYYY.M.P`).
   * @since 0.2.0
   */
  readonly cloudflaredRelease: (version?: string) => CloudflaredRelease
  /**
   * Every request to the emulated release host so far, oldest first.
   * @since 0.2.0
   */
  readonly downloads: Effect.Effect<ReadonlyArray<DownloadRecord>>
  /**
   * The emulated public DNS resolver (`127.0.0.1:port`, UDP), to pass as `HfJobs.layer({ publicDns: [...] })`:
   * it answers a tunnel name (once propagated, see `faults.freshTunnelDns`) with the edge's address, and
   * NXDOMAIN otherwise. Use it with {@link layerDnsFallback}.
   * @since 0.2.0
   */
  readonly publicDns: string
  /**
   * Every lookup of a tunnel name so far, oldest first; a run of lookups that find the name is recorded once.
   * @since 0.2.0
   */
  readonly dnsLookups: Effect.Effect<ReadonlyArray<DnsLookupRecord>>
  /**
   * Creates a repo (or adds a commit to it, which becomes `main`) with these files, served by the
   * emulator's repo routes (`paths-info`, `tree`, `resolve`, `preupload`, `commit`) as the Hub serves
   * them. Returns the new commit's id (40 hex digits), which is also a revision.
   *
   * @since 0.2.0
   */
  readonly seedRepo: (seed: HubRepoSeed) => Effect.Effect<string>
  /**
   * The files of a repo at a revision (default `main`), e.g. to read back a commit made from a sandbox;
   * `undefined` when there is no such repo or revision.
   *
   * @since 0.2.0
   */
  readonly repoFiles: (
    repo: string,
    options?: { readonly repoType?: HubRepoType | undefined; readonly revision?: string | undefined }
  ) => Effect.Effect<Readonly<Record<string, Uint8Array>> | undefined>
  /**
   * Every request the emulated LFS storage saw (the upload URLs the LFS batch API hands out), oldest first:
   * e.g. to check that an upload sent the storage no token.
   *
   * @since 0.2.0
   */
  readonly lfsStorageRequests: Effect.Effect<ReadonlyArray<HubStorageRequest>>
}

/**
 * A request to the emulated LFS storage, as {@link HubEmulator.lfsStorageRequests} records it.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubStorageRequest {
  readonly method: string
  /** `/__emulator/lfs/{upload}` (basic PUT, multipart completion POST) or `/__emulator/lfs/{upload}/{part}`. */
  readonly path: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/**
 * The kinds of Hub repos.
 *
 * @since 0.2.0
 * @category models
 */
export type HubRepoType = "model" | "dataset" | "space"

/**
 * A repo for {@link HubEmulator.seedRepo}.
 *
 * @since 0.2.0
 * @category models
 */
export interface HubRepoSeed {
  /** `namespace/name`. Only the emulator's user and its org (`acme`) may read a private repo or write one. */
  readonly repo: string
  /** Default `"model"`. */
  readonly repoType?: HubRepoType | undefined
  /** A private repo answers 401 without a token and 404 to a token that cannot read it, as the Hub does. */
  readonly private?: boolean | undefined
  /** Path in the repo → content. */
  readonly files: Readonly<Record<string, string | Uint8Array>>
  /**
   * Names this commit also answers to as a revision (a tag such as `v1`, or a ref such as `refs/pr/3`),
   * besides its oid; `main` is always the latest commit.
   */
  readonly tags?: ReadonlyArray<string> | undefined
  /** Paths stored with LFS: their `resolve` redirects to the emulated CDN, as on the Hub. */
  readonly lfs?: ReadonlyArray<string> | undefined
  /** Entries per page of a tree listing (default 1000), to exercise the `Link` pagination. */
  readonly treePageSize?: number | undefined
  /**
   * Each regular file's download sends this many bytes, then holds the response open until the emulator
   * closes: a transfer interrupted mid-way, deterministically.
   */
  readonly stallAfterBytes?: number | undefined
  /**
   * The next `times` downloads of the repo's regular files send `afterBytes` bytes (counted from where the
   * request starts: a resumed download's `Range`) and then cut the connection: a download that must resume.
   */
  readonly cutDownloads?: { readonly afterBytes: number; readonly times: number } | undefined
  /** Uploads of at least this many bytes go to LFS (`preupload` answers `lfs`); default 10 MB, as the Hub. */
  readonly lfsThreshold?: number | undefined
  /**
   * LFS objects above this many bytes are uploaded in parts of this size (multipart: numbered part URLs,
   * then a completion); default 64 MB. A few MB lets a test exercise it.
   */
  readonly lfsMultipartThreshold?: number | undefined
  /** The LFS storage receives every object with its first byte changed: its sha256 check refuses it. */
  readonly corruptLfsUploads?: boolean | undefined
  /**
   * The LFS batch API refuses an object larger than this many bytes, in its answer for that object
   * (`error: { code: 422, message }`), as the Hub refuses a file above its limit; default 500 GB, the
   * Hub's hard limit for one file (hub-docs storage-limits.md). A few KB lets a test exercise it.
   */
  readonly lfsMaxObjectBytes?: number | undefined
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
 * Points the HF Jobs provider's public-DNS fallback at the emulated network: when the system resolver
 * misses a fresh tunnel name and the public resolver ({@link HubEmulator.publicDns}, given as the
 * provider's `publicDns`) answers the edge's address, the fallback's pinned connection reaches the
 * emulator's edge instead of port 443 of that address. Without it the fallback builds its production
 * client, which cannot reach the emulator.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerDnsFallback: (emulator: HubEmulator) => Layer.Layer<PinnedConnect> = (emulator) =>
  Layer.succeed(PinnedConnect, router.pinnedConnect(emulator.url))

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

/**
 * Options that make the emulator behave with the real services' delays and limits, scaled down so that
 * a test still takes seconds: jobs wait in SCHEDULING like a queued `cpu-basic` job; the Hub pages its
 * job listing and runs the free tier's fixed-window rate limit (1,000 requests per 5 minutes); log
 * streams are slow to send their first byte and send keep-alives; a job's image has no `cloudflared`,
 * so the server downloads and verifies the pinned release (through the emulated release host); a fresh
 * tunnel's edge answers 530 for a moment, and its name takes a moment to appear in DNS. The live
 * conformance suite runs on it in this project's own `npm test`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const realistic: EmulatorOptions = {
  schedulingDelay: "2 seconds",
  keepAliveInterval: "1 second",
  listPageSize: 5,
  rateLimit: { quota: 1000, window: "5 minutes" },
  faults: {
    logFirstByteDelayMs: 300,
    cloudflaredOnPath: null,
    tunnelWarmup530Ms: 500,
    freshTunnelDns: { propagationMs: 500, systemMisses: 0, publicMisses: 0 }
  }
}
