/**
 * `MakeOptions` checked and turned into what a provider receives (`SandboxProvider.Spec`) and the
 * transport's bounds, with every default applied. A bad option fails here, before any request.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { MakeOptions } from "../../Sandbox.js"
import { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Schedules from "../../Schedules.js"
import * as Wire from "../client.js"
import * as Cloudflared from "../cloudflared.js"
import * as Validate from "../validate.js"

const DEFAULT_IMAGE = "python:3.12"
/** The backstop that ends a detached sandbox nobody talks to any more. */
const DETACHED_IDLE_TIMEOUT = Duration.minutes(10)

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

const specOf = (options: MakeOptions): SandboxProvider.Spec => {
  const transport = options.transport ?? "tunnel"
  Validate.env("env", options.env)
  return {
    image: options.image ?? DEFAULT_IMAGE,
    env: options.env ?? {},
    idleTimeout:
      options.idleTimeout !== undefined
        ? idleTimeoutOf(options.idleTimeout)
        : options.detach
          ? DETACHED_IDLE_TIMEOUT
          : undefined,
    detach: options.detach ?? false,
    startTimeout: Validate.positiveDuration(
      "startTimeout",
      options.startTimeout ?? (transport === "proxy" ? "2 minutes" : "3 minutes")
    ),
    secrets: Object.fromEntries(
      Object.entries(options.secrets ?? {}).map(([k, v]) => [k, Redacted.isRedacted(v) ? v : Redacted.make(v)])
    ),
    flavor: options.flavor,
    lifetime: options.timeout === undefined ? undefined : Validate.positiveDuration("timeout", options.timeout, true),
    forwardHfToken: options.forwardHfToken ?? false,
    labels: options.labels ?? {},
    namespace: options.namespace,
    transport,
    cloudflared: Cloudflared.check(options.cloudflared ?? {}),
    schedules: {
      logReconnect: options.schedules?.logReconnect ?? Schedules.logReconnect,
      stageCheck: options.schedules?.stageCheck ?? Schedules.stageCheck,
      hubRetry: options.schedules?.hubRetry ?? Schedules.hubRetry,
      cancelRetry: options.schedules?.cancelRetry ?? Schedules.cancelRetry,
      logQuietWindow: Validate.duration(
        "schedules.logQuietWindow",
        options.schedules?.logQuietWindow ?? Schedules.logQuietWindow
      ),
      logFirstByte: Validate.duration(
        "schedules.logFirstByte",
        options.schedules?.logFirstByte ?? Schedules.logFirstByte
      ),
      logStall: Validate.duration("schedules.logStall", options.schedules?.logStall ?? Schedules.logStall)
    }
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

/** The spec and the transport's bounds, or `StartError("InvalidOptions")` naming the option at fault. */
export const resolve = (
  provider: string,
  options: MakeOptions
): Effect.Effect<{ readonly spec: SandboxProvider.Spec; readonly timeouts: Wire.Timeouts }, StartError> =>
  Effect.try({
    try: () => ({ spec: specOf(options), timeouts: timeoutsOf(options) }),
    catch: (cause) =>
      new StartError({
        provider,
        reason: "InvalidOptions",
        detail: `invalid sandbox options: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })
