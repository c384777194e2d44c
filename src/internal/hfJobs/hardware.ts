/**
 * `HfJobs.hardware()`: the Jobs hardware catalog, from `GET /api/jobs/hardware`, with each flavor's price
 * per hour worked out from the Hub's price per unit (a minute).
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { Hardware } from "../../HfJobs.js"
import * as Schedules from "../../Schedules.js"
import * as StartErrors from "../startError.js"
import type { ProviderContext } from "./context.js"
import * as Hub from "./hub.js"

/**
 * The price per hour in US dollars, to a hundredth of a cent; undefined for a unit not known here. The
 * Hub's price per minute is the hourly price rounded to the micro-dollar ($1/h is 16667 µ$/min): sixty of
 * them are a few micro-dollars off, which the rounding takes back to the published price.
 */
const perHour = (line: Hub.HardwareLine): number | undefined => {
  const seconds = Hub.unitSeconds(line)
  return seconds === undefined ? undefined : Math.round((line.unitCostMicroUSD * 3600) / seconds / 100) / 10_000
}

const toHardware = (line: Hub.HardwareLine): Hardware => ({
  name: line.name,
  prettyName: line.prettyName,
  cpu: line.cpu,
  ram: line.ram,
  storage: line.ephemeralStorage ?? undefined,
  accelerator:
    line.accelerator === undefined || line.accelerator === null
      ? undefined
      : {
          type: line.accelerator.type,
          model: line.accelerator.model,
          quantity: Number(line.accelerator.quantity),
          vram: line.accelerator.vram,
          manufacturer: line.accelerator.manufacturer
        },
  unitCostUsd: line.unitCostUSD,
  unitCostMicroUsd: line.unitCostMicroUSD,
  unitLabel: line.unitLabel,
  pricePerHour: perHour(line)
})

/**
 * The catalog is public (`@huggingface/hub`'s `listJobHardware`: authentication optional): without a
 * token it is asked anonymously. A token that is there is sent, as `huggingface_hub` does.
 */
const clientFor = (ctx: ProviderContext) =>
  Effect.catchIf(
    ctx.hub,
    (error) => error.reason === "NoToken",
    () =>
      Effect.succeed(
        Hub.make({ endpoint: ctx.config.endpoint, token: Redacted.make(""), userAgent: ctx.config.userAgent })
      )
  )

export const hardware = (ctx: ProviderContext) =>
  Effect.gen(function* () {
    const client = yield* clientFor(ctx)
    const lines = yield* client.hardware.pipe(Hub.retryTransient((yield* Schedules.Schedules).hubRetry))
    return lines.map(toHardware)
  }).pipe(
    Effect.mapError((error) => StartErrors.during("list the Jobs hardware", error)),
    Effect.withSpan("HfJobs.hardware", { attributes: { "sandbox.provider": "hf-jobs" } })
  )
