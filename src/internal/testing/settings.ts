/** The Hub emulator's settings: its options with their defaults applied, fixed for its life. */
import * as Duration from "effect/Duration"
import type * as Testing from "../../Testing.js"

const DEFAULT_TOKEN = "hf_emulator_0123456789abcdef"
const DEFAULT_USER = "alice"
const PAGE_SIZE = 20

export interface Settings {
  readonly token: string
  readonly user: string
  readonly schedulingDelayMs: number
  readonly keepAliveMs: number
  readonly metricsIntervalMs: number
  readonly listPageSize: number
  readonly rateLimit: { readonly quota: number; readonly windowMs: number } | undefined
}

export const fromOptions = (options: Testing.EmulatorOptions): Settings => ({
  token: options.token ?? DEFAULT_TOKEN,
  user: options.user ?? DEFAULT_USER,
  schedulingDelayMs: Duration.toMillis(Duration.decode(options.schedulingDelay ?? "150 millis")),
  keepAliveMs: Math.max(1, Duration.toMillis(Duration.decode(options.keepAliveInterval ?? "1 second"))),
  metricsIntervalMs: Math.max(1, Duration.toMillis(Duration.decode(options.metricsInterval ?? "1 second"))),
  listPageSize: Math.max(1, Math.floor(options.listPageSize ?? PAGE_SIZE)),
  rateLimit:
    options.rateLimit === undefined
      ? undefined
      : {
          quota: Math.max(0, Math.floor(options.rateLimit.quota)),
          windowMs: Math.max(1, Duration.toMillis(Duration.decode(options.rateLimit.window)))
        }
})
