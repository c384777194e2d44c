/**
 * The defaults that more than one room states (the library's options, the HF Jobs provider, the CLI's
 * report of what it made): one source, so they cannot drift apart.
 */
import * as Duration from "effect/Duration"

/** The image of a sandbox made without one. */
export const IMAGE = "python:3.12"

/**
 * How long a sandbox may go without a request before it stops itself, where there is a default: on HF
 * Jobs, and for every detached sandbox (the backstop that ends one nobody talks to any more).
 */
export const IDLE_TIMEOUT: Duration.Duration = Duration.minutes(10)

/** The hard limit on an HF job's life when `lifetime` is not given. */
export const HF_JOB_LIFETIME: Duration.Duration = Duration.hours(1)

/** How long starting a sandbox may take when neither the caller nor the provider says. */
export const START_TIMEOUT: Duration.Duration = Duration.minutes(3)
