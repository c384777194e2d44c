/**
 * `MakeOptions` checked and turned into what a provider receives (`SandboxProvider.Spec`) and the
 * transport's bounds, with every default applied. A bad option fails here, before any request.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { MakeOptions } from "../../Sandbox.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import * as Defaults from "../defaults.js"
import * as SandboxName from "../sandboxName.js"
import { invalidOptions } from "../startError.js"
import * as Validate from "../validate.js"
import * as Wire from "../wire/client.js"

/** `Duration.infinity` asks for no idle timeout, which providers receive as zero (their "never"). */
const idleTimeoutOf = (input: Duration.DurationInput): Duration.Duration => {
  const decoded = Validate.duration("idleTimeout", input)
  if (Duration.toMillis(decoded) <= 0) {
    throw new Validate.Invalid(
      "idleTimeout",
      `${typeof input === "string" ? JSON.stringify(input) : String(input)} must be longer than zero (Duration.infinity, or "Infinity": no idle timeout)`
    )
  }
  return Duration.isFinite(decoded) ? decoded : Duration.zero
}

/**
 * `lifetime`, or its deprecated alias `timeout`: either may be given, or both when they say the same;
 * two different limits have no right answer, so that fails naming both.
 */
const lifetimeOf = (options: Pick<MakeOptions, "lifetime" | "timeout">): Duration.Duration | undefined => {
  const lifetime = options.lifetime === undefined ? undefined : Validate.positiveDuration("lifetime", options.lifetime)
  const timeout = options.timeout === undefined ? undefined : Validate.positiveDuration("timeout", options.timeout)
  if (lifetime !== undefined && timeout !== undefined && !Duration.equals(lifetime, timeout)) {
    throw new Validate.Invalid(
      "lifetime",
      `${Duration.format(lifetime)}, but its deprecated alias timeout is ${Duration.format(timeout)}: give only lifetime`
    )
  }
  return lifetime ?? timeout
}

/**
 * The options the generic layer reads itself; every other one is the provider's, passed on as given in
 * `Spec.providerOptions` (this layer names no provider's options).
 */
const GENERIC_OPTIONS: ReadonlySet<string> = new Set<keyof MakeOptions>([
  "image",
  "env",
  "cwd",
  "idleTimeout",
  "detach",
  "startTimeout",
  "lifetime",
  "timeout",
  "secrets",
  "schedules",
  "timeouts",
  "name"
])

/** The spec without its start bound, which may be the provider's to say (`Service.startTimeout`). */
const specOf = (options: MakeOptions): Omit<SandboxProvider.Spec, "startTimeout"> => {
  Validate.env("env", options.env)
  // Checked now, so that a bad value fails before the provider is asked for its default.
  if (options.startTimeout !== undefined) Validate.positiveDuration("startTimeout", options.startTimeout)
  return {
    image: options.image ?? Defaults.IMAGE,
    env: options.env ?? {},
    idleTimeout:
      options.idleTimeout !== undefined
        ? idleTimeoutOf(options.idleTimeout)
        : options.detach
          ? Defaults.IDLE_TIMEOUT
          : undefined,
    detach: options.detach ?? false,
    secrets: Object.fromEntries(
      Object.entries(options.secrets ?? {}).map(([k, v]) => [k, Redacted.isRedacted(v) ? v : Redacted.make(v)])
    ),
    lifetime: lifetimeOf(options),
    ...(options.name !== undefined ? { name: SandboxName.check("name", options.name) } : {}),
    providerOptions: Object.fromEntries(
      Object.entries(options).filter(([key, value]) => !GENERIC_OPTIONS.has(key) && value !== undefined)
    )
  }
}

/** The durations among the schedules, checked (they are DurationInput, and come from any Context value). */
const checkDurations = (schedules: Schedules.Service): void => {
  for (const key of ["logQuietWindow", "logFirstByte", "logStall", "metricsSilence"] as const) {
    Validate.duration(`schedules.${key}`, schedules[key])
  }
}

/** The transport's bounds of a sandbox. */
const timeoutsOf = (options: Pick<MakeOptions, "timeouts">): Wire.Timeouts => ({
  request: Validate.positiveDuration("timeouts.request", options.timeouts?.request ?? Wire.defaultTimeouts.request),
  streamIdle: Validate.positiveDuration(
    "timeouts.streamIdle",
    options.timeouts?.streamIdle ?? Wire.defaultTimeouts.streamIdle
  )
})

/** What a sandbox is opened with, every option checked and every default applied. */
export interface Resolved {
  readonly spec: SandboxProvider.Spec
  readonly timeouts: Wire.Timeouts
  /** The schedules in force: the `make`'s own over the Context value's (`Schedules.layer`, `withSchedules`). */
  readonly schedules: Schedules.Service
  readonly healthProbeTimeout: Duration.Duration
}

/**
 * The spec, the transport's bounds and the schedules in force, or `StartError("InvalidOptions")` naming
 * the option at fault.
 */
export const resolve = (
  provider: SandboxProvider.Service | string,
  options: MakeOptions
): Effect.Effect<Resolved, StartError> =>
  Effect.flatMap(Schedules.Schedules, (current) =>
    Effect.flatMap(
      resolveWith(typeof provider === "string" ? provider : provider.name, options, current),
      ({ spec, ...rest }) =>
        Effect.map(startTimeoutOf(provider, options, spec), (startTimeout) => ({
          ...rest,
          spec: { ...spec, startTimeout }
        }))
    )
  )

/** The caller's start bound, else the provider's for this spec (under the schedules in force), else the default. */
const startTimeoutOf = (
  provider: SandboxProvider.Service | string,
  options: MakeOptions,
  spec: Omit<SandboxProvider.Spec, "startTimeout">
): Effect.Effect<Duration.Duration, StartError> =>
  options.startTimeout !== undefined
    ? Effect.succeed(Duration.decode(options.startTimeout))
    : typeof provider !== "string" && provider.startTimeout !== undefined
      ? provider.startTimeout(spec)
      : Effect.succeed(Defaults.START_TIMEOUT)

const resolveWith = (
  provider: string,
  options: MakeOptions,
  current: Schedules.Service
): Effect.Effect<Omit<Resolved, "spec"> & { readonly spec: Omit<SandboxProvider.Spec, "startTimeout"> }, StartError> =>
  Effect.try({
    try: () => {
      const schedules = Schedules.override(current, options.schedules)
      checkDurations(schedules)
      return {
        spec: specOf(options),
        timeouts: timeoutsOf(options),
        schedules,
        healthProbeTimeout: Validate.positiveDuration("schedules.healthProbeTimeout", schedules.healthProbeTimeout)
      }
    },
    catch: (cause) => invalidOptions(provider, cause)
  })
