/**
 * A pool's options checked, with every default applied: a bad one is `PoolError("InvalidOptions")`
 * naming the option and the value, before any host starts.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Sandbox from "../../Sandbox.js"
import { PoolError } from "../../SandboxError.js"
import type * as SandboxPool from "../../SandboxPool.js"
import * as Defaults from "../defaults.js"
import * as SandboxName from "../sandboxName.js"
import * as Validate from "../validate.js"

/** HF's `DEFAULT_SANDBOXES_PER_HOST`. */
export const DEFAULT_SANDBOXES_PER_HOST = 50
/** How long a lease waits for a slot by default: long enough for a host to boot on HF Jobs. */
export const DEFAULT_ACQUIRE_TIMEOUT = Duration.minutes(10)
export const DEFAULT_NAME = "default"

/** A pool's settings. */
export interface Config {
  readonly name: string
  readonly sandboxesPerHost: number
  readonly maxHosts: number | undefined
  readonly warmUp: number
  readonly acquireTimeout: Duration.Duration
  readonly env: Readonly<Record<string, string>>
  readonly weakIsolation: boolean
  readonly hostTokenActs: boolean
  /** Running hosts of the pool's name are adopted when the pool is built (HF's discovery). */
  readonly adopt: boolean
  /** What every host is started with, as `Sandbox.make` takes it (its idle timeout the host's own). */
  readonly hostOptions: Sandbox.MakeOptions
}

const show = (value: unknown) => (typeof value === "string" ? JSON.stringify(value) : String(value))

const count = (option: string, value: unknown, least: number, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < least) {
    throw new Validate.Invalid(option, `${show(value)} must be a whole number, at least ${least}`)
  }
  return value
}

const settings = (options: SandboxPool.LayerOptions): Config => {
  const {
    acquireTimeout,
    adopt,
    env,
    hostTokenActs,
    idleTimeout,
    maxHosts,
    name,
    sandboxesPerHost,
    warmUp,
    weakIsolation,
    ...hostOptions
  } = options
  const max = maxHosts === undefined ? undefined : count("maxHosts", maxHosts, 1, 1)
  const warm = count("warmUp", warmUp, 0, 1)
  if (max !== undefined && warm > max) {
    // Said without the options' names, which the error carries (warmUp; the CLI's --hosts, --max-hosts).
    throw new Validate.Invalid(
      "warmUp",
      `${warm} is more than the pool's maximum of ${max} hosts: lower it or raise the maximum`
    )
  }
  Validate.env("env", env)
  const idle = idleTimeout === undefined ? Defaults.IDLE_TIMEOUT : Validate.positiveDuration("idleTimeout", idleTimeout)
  return {
    name: name === undefined ? DEFAULT_NAME : SandboxName.check("name", name),
    sandboxesPerHost: count("sandboxesPerHost", sandboxesPerHost, 1, DEFAULT_SANDBOXES_PER_HOST),
    maxHosts: max,
    warmUp: warm,
    acquireTimeout:
      acquireTimeout === undefined
        ? DEFAULT_ACQUIRE_TIMEOUT
        : Validate.positiveDuration("acquireTimeout", acquireTimeout),
    env: env ?? {},
    weakIsolation: weakIsolation ?? false,
    hostTokenActs: hostTokenActs ?? false,
    adopt: adopt ?? true,
    hostOptions: { ...hostOptions, idleTimeout: idle }
  }
}

/** The pool's settings, or the error naming the first bad option. */
export const resolve = (options: SandboxPool.LayerOptions): Effect.Effect<Config, PoolError> =>
  Effect.try({
    try: () => settings(options),
    catch: (cause) => invalid(options.name ?? DEFAULT_NAME, cause)
  })

/** A lease's options checked: its env, its idle timeout in whole seconds (0: never). */
export const lease = (
  pool: string,
  options: SandboxPool.MakeOptions
): Effect.Effect<{ readonly env: Record<string, string>; readonly idleSeconds: number }, PoolError> =>
  Effect.try({
    try: () => {
      Validate.env("env", options.env)
      const idle =
        options.idleTimeout === undefined ? undefined : Validate.positiveDuration("idleTimeout", options.idleTimeout)
      return {
        env: { ...options.env },
        idleSeconds: idle === undefined || !Duration.isFinite(idle) ? 0 : Math.ceil(Duration.toSeconds(idle))
      }
    },
    catch: (cause) => invalid(pool, cause)
  })

const invalid = (pool: string, cause: unknown) =>
  cause instanceof Validate.Invalid
    ? new PoolError({ pool, reason: "InvalidOptions", option: cause.option, detail: cause.detail })
    : new PoolError({ pool, reason: "InvalidOptions", detail: String(cause), cause })
