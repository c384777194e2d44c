/** `hf-sandbox hardware`: the HF Jobs hardware catalog (what `--flavor` takes), with specs and prices. */

import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { action } from "../action.js"
import { globals } from "../options.js"
import * as Output from "../output.js"

const COLUMNS = ["NAME", "PRETTY NAME", "CPU", "RAM", "ACCELERATOR", "PRICE/HOUR"]

/** Dollars with cents, and more digits only where the price has them (`$0.01`, `$1.50`, `$0.01002`). */
const dollars = (usd: number | undefined) =>
  usd === undefined ? "?" : `$${usd.toFixed(Math.max(2, Math.min(6, (String(usd).split(".")[1] ?? "").length)))}`

export const hardware = Command.make(
  "hardware",
  globals,
  action(
    (_a, mode) =>
      Effect.gen(function* () {
        // The catalog is HF Jobs': loaded only when asked. The action's provider layer is HF Jobs' (the
        // command refuses any other), and it provides the HfJobs service beside the provider: that one, with
        // the invocation's configuration and HTTP client, not a second layer built here.
        const HfJobs = yield* Effect.promise(() => import("../../HfJobs.js"))
        const jobs = yield* Effect.serviceOption(HfJobs.HfJobs)
        if (Option.isNone(jobs)) return yield* Effect.dieMessage("hardware ran without the HF Jobs provider's layer")
        const catalog = yield* jobs.value.hardware
        if (mode.json) return yield* Output.json(catalog)
        if (mode.quiet) return yield* Effect.forEach(catalog, (h) => Output.line(h.name), { discard: true })
        yield* Output.table(
          COLUMNS,
          catalog.map((h) => [
            h.name,
            h.prettyName,
            h.cpu,
            h.ram,
            h.accelerator === undefined
              ? ""
              : `${h.accelerator.quantity}x ${h.accelerator.model} (${h.accelerator.vram})`,
            dollars(h.pricePerHour)
          ])
        )
      }),
    {
      defaultProviderOnly: (chosen) =>
        `hardware lists the HF Jobs hardware catalog (the flavors --flavor takes); --${chosen.flag} sandboxes run on ` +
        `${chosen.title} and have no flavors: run hf-sandbox hardware without --${chosen.flag}`
    }
  )
).pipe(
  Command.withDescription(
    "List the HF Jobs hardware (the flavors --flavor takes) with CPU, RAM, accelerators and the price per hour. " +
      "Jobs are billed by the minute while they run. Not with --local: local sandboxes have no flavors."
  )
)
