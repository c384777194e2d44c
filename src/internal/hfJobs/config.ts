/**
 * The provider's configuration, read once: the one place the HF Jobs provider reads the environment
 * (through `Config`, so a program or a test chooses the `ConfigProvider`). `HfJobs.make`/`layer` read what
 * their options leave out (`HF_ENDPOINT`, and what the token discovery needs: `HF_TOKEN`, the token file's
 * path, …); `HfJobs.layerConfig` reads the options themselves as `Config`s, then `HF_SANDBOX_NAMESPACE`.
 * The result, {@link Resolved}, is passed down explicitly; nothing below reads the environment again.
 */
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { Options } from "../../HfJobs.js"
import * as Defaults from "../defaults.js"
import { VERSION } from "../version.js"
import * as Credentials from "./credentials.js"

/** The one source of every default of the provider's options and of the jobs it creates. */
export const defaults = {
  endpoint: "https://huggingface.co",
  /** Domain of the Jobs proxy's exposed URLs. */
  jobsDomain: "hf.jobs",
  /** Public resolvers asked when the system one fails; `ip` or `ip:port`. */
  publicDns: ["1.1.1.1", "8.8.8.8"] as ReadonlyArray<string>,
  flavor: "cpu-basic",
  lifetime: Defaults.HF_JOB_LIFETIME,
  idleTimeout: Defaults.IDLE_TIMEOUT,
  /** `huggingface_hub.constants.DEVICE_CODE_OAUTH_CLIENT_ID`, the client of `hf auth login`'s OAuth login. */
  oauthClientId: "26be6b09-91c5-47da-9861-d2d2bb7a7e36"
} as const

/** The options with every default applied and the environment read: what the provider runs on. */
export interface Resolved {
  /** Without trailing slashes. */
  readonly endpoint: string
  readonly jobsDomain: string
  readonly token: Redacted.Redacted<string> | undefined
  readonly namespace: string | undefined
  readonly publicDns: ReadonlyArray<string> | false
  readonly namespaceCache: string | undefined
  readonly schedules: NonNullable<Options["schedules"]>
  readonly userAgent: string
  /**
   * What the token discovery reads of the environment. A bad value fails the first operation that needs
   * a token (a `StartError`), not the provider's construction.
   */
  readonly discovery: Either.Either<Credentials.Env, ConfigError.ConfigError>
}

/**
 * Applies the defaults to `options` and reads what they leave out: `HF_ENDPOINT` (blank or unreadable
 * counts as unset) and the token discovery's environment.
 */
export const resolve = (options: Options): Effect.Effect<Resolved> =>
  Effect.gen(function* () {
    const configured = yield* Config.option(Config.string("HF_ENDPOINT")).pipe(
      Effect.map(Option.filter((e) => e.trim() !== "")),
      Effect.orElseSucceed(() => Option.none<string>())
    )
    return {
      endpoint: (options.endpoint ?? Option.getOrElse(configured, () => defaults.endpoint)).replace(/\/+$/, ""),
      jobsDomain: options.jobsDomain ?? defaults.jobsDomain,
      token: options.token,
      namespace: options.namespace,
      publicDns: options.publicDns ?? defaults.publicDns,
      namespaceCache: options.namespaceCache,
      schedules: options.schedules ?? {},
      userAgent: `hf-sandbox/${VERSION}; node/${process.versions.node}`,
      discovery: yield* Effect.either(readEnv)
    }
  })

/**
 * `HfJobs.layerConfig`'s reading: each option from its `Config`, the namespace (blank counts as unset)
 * else from `HF_SANDBOX_NAMESPACE`, then {@link resolve}.
 */
export const fromConfig = (config: Config.Config.Wrap<Options>): Effect.Effect<Resolved, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    // `Config.unwrap` cannot take an empty record.
    const given: Options =
      !Config.isConfig(config) && Object.keys(config).length === 0 ? {} : yield* Config.unwrap<Options>(config)
    const namespace =
      given.namespace === undefined || given.namespace.trim() === ""
        ? yield* nonBlank("HF_SANDBOX_NAMESPACE")
        : given.namespace
    return yield* resolve({ ...given, namespace })
  })

const optional = (name: string) =>
  Config.option(Config.string(name)).pipe(Config.map((value) => Option.getOrUndefined(value)))
/** An unset, empty or blank variable is the same: unset. */
const nonBlank = (name: string) =>
  Config.map(optional(name), (value) => (value === undefined || value.trim() === "" ? undefined : value))
const tokenVar = (name: string) =>
  Config.map(optional(name), (value) => {
    const cleaned = Credentials.cleanToken(value)
    return cleaned === undefined ? undefined : Redacted.make(cleaned)
  })

/** `os.path.expanduser`: a leading `~` is the home directory (`HOME`, else the account's). */
const expandUser = (path: string, home: string) =>
  path === "~" ? home : path.startsWith("~/") ? nodePath.join(home, path.slice(2)) : path

/** `os.path.expandvars`: `$NAME` and `${NAME}` from the configuration; unknown ones are left as they are. */
const expandVars = (path: string) =>
  Effect.gen(function* () {
    const pattern = /\$(\w+|\{[^}]*\})/g
    const names = [...path.matchAll(pattern)].map((m) => m[1]!.replace(/^\{|\}$/g, ""))
    const values = new Map<string, string>()
    for (const name of new Set(names)) {
      const value = name === "" ? undefined : yield* optional(name)
      if (value !== undefined) values.set(name, value)
    }
    return path.replace(pattern, (whole, raw: string) => values.get(raw.replace(/^\{|\}$/g, "")) ?? whole)
  })

const expand = (path: string, home: string) => expandVars(expandUser(path, home))

/** The environment as `huggingface_hub` reads it, for the token discovery. */
export const readEnv: Effect.Effect<Credentials.Env, ConfigError.ConfigError> = Effect.gen(function* () {
  const home = (yield* nonBlank("HOME")) ?? os.homedir()
  const cache = (yield* nonBlank("XDG_CACHE_HOME")) ?? nodePath.join(home, ".cache")
  const hfHome = yield* expand((yield* nonBlank("HF_HOME")) ?? nodePath.join(cache, "huggingface"), home)
  const tokenPath = yield* expand((yield* nonBlank("HF_TOKEN_PATH")) ?? nodePath.join(hfHome, "token"), home)
  return {
    oidcResource: yield* nonBlank("HF_OIDC_RESOURCE"),
    oidcIdToken: yield* tokenVar("HF_OIDC_ID_TOKEN"),
    githubActions: (yield* optional("GITHUB_ACTIONS")) === "true",
    actionsRequestUrl: yield* nonBlank("ACTIONS_ID_TOKEN_REQUEST_URL"),
    actionsRequestToken: yield* tokenVar("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    hfToken: yield* tokenVar("HF_TOKEN"),
    legacyToken: yield* tokenVar("HUGGING_FACE_HUB_TOKEN"),
    tokenPath,
    storedTokensPath: nodePath.join(nodePath.dirname(tokenPath), "stored_tokens"),
    clientId: (yield* nonBlank("HF_DEVICE_CODE_OAUTH_CLIENT_ID")) ?? defaults.oauthClientId
  }
})
