/**
 * The spend cap of a sandbox job (`maxCost`): what it is in micro-dollars, and the job timeout each flavor
 * can afford under it, from the Hub's hardware catalog (`GET /api/jobs/hardware`, priced per `unitLabel`,
 * a minute, and billed by the started unit). Checked before any job exists.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { StartError } from "../../SandboxError.js"
import { invalidOptions } from "../startError.js"
import * as Validate from "../validate.js"
import * as Hub from "./hub.js"

const MONEY = /^\s*\$?\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:USD)?\s*$/i

/** A cap in US dollars (`2`, `"$2"`, `"0.50"`, `"1.5 USD"`) as micro-dollars, or why it is not one. */
export const parse = (value: unknown): number => {
  const usd =
    typeof value === "number"
      ? value
      : typeof value === "string" && MONEY.test(value)
        ? Number(MONEY.exec(value)?.[1])
        : Number.NaN
  if (!Number.isFinite(usd) || usd <= 0) {
    const problem = `${JSON.stringify(value)} is not an amount in US dollars above zero (e.g. 2 or "$2.50")`
    throw new Validate.Invalid("maxCost", problem)
  }
  return Math.round(usd * 1_000_000)
}

const dollars = (micro: number) => `$${Number((micro / 1_000_000).toFixed(6))}`

/** A flavor's price: micro-dollars per billed unit, and the unit's length in seconds. */
interface Price {
  readonly microUsd: number
  readonly unitSeconds: number
  readonly unitLabel: string
}

const priceOf = (catalog: ReadonlyArray<Hub.HardwareLine>, flavor: string): Price | Validate.Invalid => {
  const line = catalog.find((l) => l.name === flavor)
  if (line === undefined) {
    return new Validate.Invalid(
      "flavor",
      `flavor ${JSON.stringify(flavor)} is not in the Hub's hardware catalog (${catalog.map((l) => l.name).join(", ")})`
    )
  }
  const unitSeconds = Hub.unitSeconds(line)
  if (unitSeconds === undefined) {
    return new Validate.Invalid(
      "flavor",
      `the Hub prices ${flavor} per ${JSON.stringify(line.unitLabel)}, a unit this version cannot turn into a timeout`
    )
  }
  return { microUsd: line.unitCostMicroUSD, unitSeconds, unitLabel: line.unitLabel }
}

/**
 * The job timeout of one flavor under the cap: the `lifetime` asked for when the cap covers all of it
 * (billed by the started unit), else an error naming what it would cost; without a `lifetime`, every
 * whole unit the cap buys. A flavor that costs nothing keeps `fallback`.
 */
const timeoutOf = (
  flavor: string,
  price: Price,
  capMicroUsd: number,
  lifetime: Duration.Duration | undefined,
  fallback: Duration.Duration
): Duration.Duration | Validate.Invalid => {
  if (price.microUsd <= 0) return lifetime ?? fallback
  const rate = `${flavor} costs ${dollars(price.microUsd)} per ${price.unitLabel}`
  if (lifetime !== undefined) {
    const units = Math.ceil(Duration.toSeconds(lifetime) / price.unitSeconds)
    return units * price.microUsd <= capMicroUsd
      ? lifetime
      : new Validate.Invalid(
          "maxCost",
          `lifetime ${Duration.format(lifetime)} on ${flavor} may cost ${dollars(units * price.microUsd)}, over maxCost ${dollars(capMicroUsd)} (${rate}): raise maxCost, shorten lifetime, or leave lifetime out to get what maxCost buys`
        )
  }
  const units = Math.floor(capMicroUsd / price.microUsd)
  return units >= 1
    ? Duration.seconds(units * price.unitSeconds)
    : new Validate.Invalid(
        "maxCost",
        `maxCost ${dollars(capMicroUsd)} buys less than one ${price.unitLabel} of ${flavor} (${rate}): raise maxCost or pick a cheaper flavor`
      )
}

/**
 * The timeout of each flavor under the cap, in the flavors' order, from the Hub's `catalog`; fails with
 * `InvalidOptions` before any job exists when one flavor cannot run `lifetime` under it.
 */
export const timeouts = (
  catalog: Effect.Effect<ReadonlyArray<Hub.HardwareLine>, StartError>,
  flavors: ReadonlyArray<string>,
  capMicroUsd: number,
  lifetime: Duration.Duration | undefined,
  fallback: Duration.Duration
): Effect.Effect<ReadonlyArray<Duration.Duration>, StartError> =>
  Effect.flatMap(catalog, (lines) => {
    const found = flavors.map((flavor) => {
      const price = priceOf(lines, flavor)
      return price instanceof Validate.Invalid ? price : timeoutOf(flavor, price, capMicroUsd, lifetime, fallback)
    })
    const problems = found.filter((t): t is Validate.Invalid => t instanceof Validate.Invalid)
    const first = problems[0]
    // Every problem is said; the error names the option of the first, which the CLI turns into its flag.
    return first !== undefined
      ? Effect.fail(
          invalidOptions("hf-jobs", new Validate.Invalid(first.option, problems.map((p) => p.detail).join("; ")))
        )
      : Effect.succeed(found as ReadonlyArray<Duration.Duration>)
  })
