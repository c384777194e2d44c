/**
 * The HF Jobs options of one sandbox (flavor or flavors, namespace, transport, cloudflared, labels, token
 * forwarding, volumes, SSH, spend cap): the Context value (`HfJobs.withSandboxOptions`, `layerSandboxOptions`) under what the
 * `make` itself gives, checked, and joined with the generic spec and the schedules in force into what
 * the provider's rooms read.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SandboxOptions, Volume } from "../../HfJobs.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Schedules from "../../Schedules.js"
import * as Defaults from "../defaults.js"
import { invalidOptions } from "../startError.js"
import * as Validate from "../validate.js"
import * as Cloudflared from "./cloudflared.js"
import * as JobLabels from "./jobLabels.js"
import * as SpendCap from "./spendCap.js"
import * as Volumes from "./volumes.js"

/** What one HF sandbox is made with: the generic spec, its HF options resolved, the schedules in force. */
export interface HfSpec extends SandboxProvider.Spec {
  readonly namespace: string | undefined
  readonly transport: "tunnel" | "proxy"
  readonly cloudflared: Cloudflared.Overrides
  readonly labels: Readonly<Record<string, string>>
  readonly forwardHfToken: boolean
  /** Ports the Jobs proxy serves besides the sandbox server's (the job's `expose`). */
  readonly ports: ReadonlyArray<number>
  readonly schedules: {
    readonly logReconnect: Schedules.Service["logReconnect"]
    readonly stageCheck: Schedules.Service["stageCheck"]
    readonly hubRetry: Schedules.Service["hubRetry"]
    readonly cancelRetry: Schedules.Service["cancelRetry"]
    readonly logQuietWindow: Duration.Duration
    readonly logFirstByte: Duration.Duration
    readonly logStall: Duration.Duration
    readonly metricsSilence: Duration.Duration
    readonly flavorFallback: Duration.Duration
  }
  /** The flavors in order of preference (none: the default flavor). */
  readonly flavors: ReadonlyArray<string>
  readonly volumes: ReadonlyArray<Volume>
  readonly ssh: boolean
  /** The spend cap in micro-dollars, if any. */
  readonly maxCostMicroUsd: number | undefined
}

/** The proxy transport needs no tunnel to come up, so it is given less time to start. */
const PROXY_START_TIMEOUT = Duration.minutes(2)

const KEYS = [
  "flavor",
  "namespace",
  "transport",
  "cloudflared",
  "labels",
  "forwardHfToken",
  "ports",
  "volumes",
  "ssh",
  "maxCost"
] as const

/** `over`'s options in place of `base`'s; labels and cloudflared overrides merge key by key. */
export const merge = (base: SandboxOptions, over: SandboxOptions): SandboxOptions => {
  const defined = Object.fromEntries(Object.entries(over).filter(([, value]) => value !== undefined))
  return {
    ...base,
    ...defined,
    ...(base.labels !== undefined && over.labels !== undefined ? { labels: { ...base.labels, ...over.labels } } : {}),
    ...(base.cloudflared !== undefined && over.cloudflared !== undefined
      ? { cloudflared: { ...base.cloudflared, ...over.cloudflared } }
      : {})
  }
}

const invalid = (cause: unknown) => invalidOptions("hf-jobs", cause)

const isRecordOf = (value: unknown, item: (v: unknown) => boolean): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every(item)

const isString = (v: unknown) => typeof v === "string"
const isFlavors = (v: unknown) =>
  isString(v) || (Array.isArray(v) && v.length > 0 && v.every((f) => isString(f) && f !== ""))

/**
 * What the HF provider reads of a `make`'s own options (`Spec.providerOptions`), each checked for its
 * type: a JavaScript caller can pass anything, and a wrong one must not reach a job spec.
 */
const fromProviderOptions = (given: Readonly<Record<string, unknown>>): SandboxOptions => {
  const problem = (key: string, what: string) =>
    new Validate.Invalid(key, `${JSON.stringify(given[key])} is not ${what}`)
  const checks: Record<(typeof KEYS)[number], [(v: unknown) => boolean, string]> = {
    flavor: [isFlavors, "a flavor name or a non-empty list of them (e.g. cpu-basic; see `hf jobs hardware`)"],
    namespace: [isString, "a user or organization name"],
    transport: [(v) => v === "tunnel" || v === "proxy", 'one of "tunnel" or "proxy"'],
    cloudflared: [(v) => isRecordOf(v, (x) => x === undefined || isString(x)), "{ version?, sha256?, baseUrl? }"],
    labels: [(v) => isRecordOf(v, isString), "an object of string labels"],
    forwardHfToken: [(v) => typeof v === "boolean", "true or false"],
    ports: [
      (v) =>
        Array.isArray(v) && v.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535) && new Set(v).size === v.length,
      "a list of distinct port numbers (integers from 1 to 65535)"
    ],
    volumes: [Array.isArray, "a list of volumes ({ type, source, mountPath, … })"],
    ssh: [(v) => typeof v === "boolean", "true or false"],
    maxCost: [(v) => typeof v === "number" || isString(v), 'an amount in US dollars (e.g. 2 or "$2")']
  }
  for (const key of KEYS) {
    const [ok, what] = checks[key]
    if (given[key] !== undefined && !ok(given[key])) throw problem(key, what)
  }
  return Object.fromEntries(KEYS.filter((key) => given[key] !== undefined).map((key) => [key, given[key]]))
}

/** The options in force for a spec: the `make`'s own over the Context value's, or why they are invalid. */
export const optionsOf = (
  spec: Pick<SandboxProvider.Spec, "providerOptions">,
  current: SandboxOptions
): Effect.Effect<SandboxOptions, StartError> =>
  Effect.try({
    try: () => merge(current, fromProviderOptions(spec.providerOptions)),
    catch: invalid
  })

/** The flavors in order, each once. */
const flavorsOf = (flavor: SandboxOptions["flavor"]): ReadonlyArray<string> =>
  flavor === undefined ? [] : [...new Set(typeof flavor === "string" ? [flavor] : flavor)]

/** How long an HF sandbox may take to start when the caller does not say: less with the proxy. */
export const startTimeout = (options: SandboxOptions): Duration.Duration =>
  options.transport === "proxy" ? PROXY_START_TIMEOUT : Defaults.START_TIMEOUT

/** The spec the provider's rooms read, every HF option checked and defaulted, or `InvalidOptions`. */
export const resolve = (
  spec: SandboxProvider.Spec,
  current: SandboxOptions,
  schedules: Schedules.Service
): Effect.Effect<HfSpec, StartError> =>
  Effect.flatMap(optionsOf(spec, current), (options) =>
    Effect.try({
      try: (): HfSpec => {
        const labels = options.labels ?? {}
        const badLabel = JobLabels.problem(labels)
        if (badLabel !== undefined) throw new Validate.Invalid("labels", `${badLabel} (the Hub refuses anything else)`)
        const flavors = flavorsOf(options.flavor)
        return {
          ...spec,
          flavors,
          volumes: options.volumes === undefined ? [] : Volumes.check(options.volumes),
          ssh: options.ssh ?? false,
          maxCostMicroUsd: options.maxCost === undefined ? undefined : SpendCap.parse(options.maxCost),
          namespace: options.namespace,
          transport: options.transport ?? "tunnel",
          cloudflared: Cloudflared.check(options.cloudflared ?? {}),
          labels,
          forwardHfToken: options.forwardHfToken ?? false,
          ports: options.ports ?? [],
          schedules: {
            logReconnect: schedules.logReconnect,
            stageCheck: schedules.stageCheck,
            hubRetry: schedules.hubRetry,
            cancelRetry: schedules.cancelRetry,
            logQuietWindow: Duration.decode(schedules.logQuietWindow),
            logFirstByte: Duration.decode(schedules.logFirstByte),
            logStall: Duration.decode(schedules.logStall),
            metricsSilence: Duration.decode(schedules.metricsSilence),
            flavorFallback: Duration.decode(schedules.flavorFallback)
          }
        }
      },
      catch: invalid
    })
  )
