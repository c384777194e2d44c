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

const priceOf = (catalog: ReadonlyArray<Hub.HardwareLine>, flavor: string): Price | string => {
  const line = catalog.find((l) => l.name === flavor)
  if (line === undefined) {
    return `${JSON.stringify(flavor)} is not in the Hub's hardware catalog (${catalog.map((l) => l.name).join(", ")})`
  }
  const unitSeconds = Hub.unitSeconds(line)
  if (unitSeconds === undefined) {
    return `the Hub prices ${flavor} per ${JSON.stringify(line.unitLabel)}, a unit this version cannot turn into a timeout`
  }
  return { microUsd: line.unitCostMicroUSD, unitSeconds, unitLabel: line.unitLabel }
}

/**
 * The job timeout of one flavor under the cap: the `lifetime` asked for when the cap covers all of it
 * (billed by the started unit), else what is wrong with the cap, said without its option's name (the
 * error names it: the library as `maxCost`, the CLI as `--max-cost`); without a `lifetime`, every whole
 * unit the cap buys. A flavor that costs nothing keeps `fallback`.
 */
const timeoutOf = (
  flavor: string,
  price: Price,
  capMicroUsd: number,
  lifetime: Duration.Duration | undefined,
  fallback: Duration.Duration
): Duration.Duration | string => {
  if (price.microUsd <= 0) return lifetime ?? fallback
  const rate = `${flavor} costs ${dollars(price.microUsd)} per ${price.unitLabel}`
  if (lifetime !== undefined) {
    const units = Math.ceil(Duration.toSeconds(lifetime) / price.unitSeconds)
    return units * price.microUsd <= capMicroUsd
      ? lifetime
      : `${dollars(capMicroUsd)} does not cover lifetime ${Duration.format(lifetime)} on ${flavor}, which may cost ${dollars(units * price.microUsd)} (${rate}): raise it, shorten the lifetime, or leave the lifetime out to get what the cap buys`
  }
  const units = Math.floor(capMicroUsd / price.microUsd)
  return units >= 1
    ? Duration.seconds(units * price.unitSeconds)
    : `${dollars(capMicroUsd)} buys less than one ${price.unitLabel} of ${flavor} (${rate}): raise it or pick a cheaper flavor`
}

/** The `Invalid` of `option` saying every problem found, or undefined when there is none. */
const refusal = (option: string, found: ReadonlyArray<unknown>): Validate.Invalid | undefined => {
  const problems = found.filter((f): f is string => typeof f === "string")
  return problems.length === 0 ? undefined : new Validate.Invalid(option, problems.join("; "))
}

/**
 * The timeout of each flavor under the cap, in the flavors' order, from the Hub's `catalog`; fails with
 * `InvalidOptions` before any job exists when a flavor is not priced in the catalog (about `flavor`), else
 * when the cap cannot run one for `lifetime` (about `maxCost`). Flavors are checked first, as every check
 * names its first bad option: a cap is judged only against prices it has, and no problem is said under
 * another option's name (the CLI says the option as its flag).
 */
export const timeouts = (
  catalog: Effect.Effect<ReadonlyArray<Hub.HardwareLine>, StartError>,
  flavors: ReadonlyArray<string>,
  capMicroUsd: number,
  lifetime: Duration.Duration | undefined,
  fallback: Duration.Duration
): Effect.Effect<ReadonlyArray<Duration.Duration>, StartError> =>
  Effect.flatMap(catalog, (lines) => {
    const prices = flavors.map((flavor) => priceOf(lines, flavor))
    const badFlavor = refusal("flavor", prices)
    if (badFlavor !== undefined) return Effect.fail(invalidOptions("hf-jobs", badFlavor))
    const found = (prices as ReadonlyArray<Price>).map((price, i) =>
      timeoutOf(flavors[i] ?? "", price, capMicroUsd, lifetime, fallback)
    )
    const badCap = refusal("maxCost", found)
    return badCap !== undefined
      ? Effect.fail(invalidOptions("hf-jobs", badCap))
      : Effect.succeed(found as ReadonlyArray<Duration.Duration>)
  })
