/**
 * Anonymous usage telemetry, off unless a layer turns it on. The `Telemetry` service is a
 * `Context.Reference` whose default does nothing, so it never appears in a program's requirements.
 * Two events exist, one pair per sandbox made with `Sandbox.make`:
 *
 * - `hf-sandbox/create`: a random session id, the flavor, the requested timeout, and whether the HF
 *   token was forwarded into the sandbox;
 * - `hf-sandbox/terminate`: the same session id, how long the sandbox lived, and why it ended.
 *
 * Nothing else is ever sent: never the image, commands, paths, file contents, URLs, tokens, the user
 * name or anything from inside the sandbox.
 *
 * ```ts
 * // Send the events to the Hub, as the Python hf-sandbox does (unless an opt-out variable is set):
 * program.pipe(Effect.provide(Telemetry.layerHub()), Effect.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as HfConfig from "./internal/hfJobs/config.js"
import { VERSION } from "./internal/version.js"

/**
 * A sandbox is ready. `timeoutS` is the `lifetime` the caller asked for, in seconds (`null`: the
 * provider's default, or none); `flavor` is the hardware (`"local"` on the local provider).
 *
 * @since 0.1.0
 * @category models
 */
export const CreateEvent = Schema.TaggedStruct("Create", {
  sessionId: Schema.String,
  flavor: Schema.String,
  timeoutS: Schema.NullOr(Schema.Number),
  forwardHfToken: Schema.Boolean
})

/**
 * @since 0.1.0
 * @category models
 */
export interface CreateEvent extends Schema.Schema.Type<typeof CreateEvent> {}

/**
 * Why a sandbox ended: `user` (its `terminate` was called), `scope` (its scope closed after success),
 * `failure` (its scope closed with a failure or a defect), `interruption` (its scope was interrupted),
 * `signal` (the process received SIGINT or SIGTERM while it was open; this wins over the others).
 *
 * @since 0.1.0
 * @category models
 */
export const TerminationReason = Schema.Literal("user", "scope", "failure", "interruption", "signal")

/**
 * @since 0.1.0
 * @category models
 */
export type TerminationReason = typeof TerminationReason.Type

/**
 * A sandbox ended. `durationS` counts from the call to `Sandbox.make` to the start of its teardown.
 *
 * @since 0.1.0
 * @category models
 */
export const TerminateEvent = Schema.TaggedStruct("Terminate", {
  sessionId: Schema.String,
  durationS: Schema.Number,
  reason: TerminationReason
})

/**
 * @since 0.1.0
 * @category models
 */
export interface TerminateEvent extends Schema.Schema.Type<typeof TerminateEvent> {}

/**
 * Every usage event.
 *
 * @since 0.1.0
 * @category models
 */
export const Event = Schema.Union(CreateEvent, TerminateEvent)

/**
 * @since 0.1.0
 * @category models
 */
export type Event = CreateEvent | TerminateEvent

/**
 * The Hub telemetry topic of an event: `hf-sandbox/create` or `hf-sandbox/terminate`.
 *
 * @since 0.1.0
 * @category utils
 */
export const topic = (event: Event): string => (event._tag === "Create" ? "hf-sandbox/create" : "hf-sandbox/terminate")

/** A value as a User-Agent token: no separator, no space, bounded. */
const token = (value: string | number | boolean): string =>
  String(value)
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .slice(0, 64)

/**
 * The User-Agent that carries an event to the Hub, e.g.
 * `hf-sandbox/0.1.0; session_id/3f…; flavor/cpu-basic; timeout/3600; forward_hf_token/false`.
 * It is the whole payload: the request has no body, no token and no other header of ours.
 *
 * @since 0.1.0
 * @category utils
 */
export const userAgent = (event: Event): string => {
  const fields: Array<readonly [string, string | number | boolean]> =
    event._tag === "Create"
      ? [
          ["session_id", event.sessionId],
          ["flavor", event.flavor],
          ["timeout", event.timeoutS ?? "none"],
          ["forward_hf_token", event.forwardHfToken]
        ]
      : [
          ["session_id", event.sessionId],
          ["duration_s", event.durationS],
          ["reason", event.reason]
        ]
  return [`hf-sandbox/${VERSION}`, ...fields.map(([key, value]) => `${key}/${token(value)}`)].join("; ")
}

/**
 * What receives usage events.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** False for the default, which drops everything: callers may then skip preparing events. */
  readonly enabled: boolean
  /**
   * Takes one event. It must return at once and never fail: a sender that does I/O forks it (as
   * {@link layerHub} does). Callers still bound it and ignore its failures.
   */
  readonly send: (event: Event) => Effect.Effect<void>
}

/**
 * The service that drops every event: the default.
 *
 * @since 0.1.0
 * @category constructors
 */
export const disabled: Service = { enabled: false, send: () => Effect.void }

/**
 * The telemetry in use. Its default does nothing; provide {@link layerHub}, {@link layerMemory} or
 * {@link layer} to receive the events.
 *
 * @since 0.1.0
 * @category tags
 */
export class Telemetry extends Context.Reference<Telemetry>()("hf-sandbox/Telemetry", {
  defaultValue: (): Service => disabled
}) {}

/**
 * A service from a function that receives each event (e.g. to log them). The function must return
 * at once; its failures are ignored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (send: (event: Event) => Effect.Effect<void>): Service => ({
  enabled: true,
  send: (event) =>
    Effect.catchAllCause(
      Effect.suspend(() => send(event)),
      () => Effect.void
    )
})

/**
 * Provides a {@link make} service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (send: (event: Event) => Effect.Effect<void>): Layer.Layer<Telemetry> =>
  Layer.succeed(Telemetry, make(send))

/**
 * The variables that turn telemetry off when truthy (`1`, `ON`, `YES`, `TRUE`, any case).
 *
 * @since 0.1.0
 * @category utils
 */
export const OPT_OUT_VARIABLES: ReadonlyArray<string> = [
  "HF_HUB_DISABLE_TELEMETRY",
  "DISABLE_TELEMETRY",
  "DO_NOT_TRACK",
  "HF_HUB_OFFLINE",
  "TRANSFORMERS_OFFLINE"
]

const isTruthy = (value: string) => ["1", "ON", "YES", "TRUE"].includes(value.trim().toUpperCase())

/**
 * Whether an opt-out variable is set, read through `Config` (so a `ConfigProvider` decides). A
 * configuration that cannot be read counts as opted out.
 *
 * @since 0.1.0
 * @category utils
 */
export const optedOut: Effect.Effect<boolean> = Effect.forEach(OPT_OUT_VARIABLES, (name) =>
  Config.option(Config.string(name))
).pipe(
  Effect.map((values) => values.some(Option.exists(isTruthy))),
  Effect.orElseSucceed(() => true)
)

/**
 * Options of {@link layerHub}.
 *
 * @since 0.1.0
 * @category models
 */
export interface HubOptions {
  /** Hub endpoint. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string | undefined
  /** Bound of one request. Default 3 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * When the layer closes, requests still in flight get this long to finish before they are
   * interrupted. Default 1 second; `0` interrupts them at once.
   */
  readonly flushTimeout?: Duration.DurationInput | undefined
}

const DEFAULT_ENDPOINT = HfConfig.defaults.endpoint

/**
 * A service that sends each event as the Hub's telemetry request: `HEAD
 * {endpoint}/api/telemetry/hf-sandbox/{create|terminate}` with the event in the User-Agent (see
 * {@link userAgent}) and no token. Each request is forked into the scope, bounded, untraced and
 * its failures ignored (logged at debug level): telemetry never delays nor fails a sandbox. When an
 * opt-out variable is set (see {@link optedOut}) it is {@link disabled}: no request at all.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHub = (options: HubOptions = {}): Effect.Effect<Service, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    if (yield* optedOut) return disabled
    const endpoint = (
      options.endpoint ??
      (yield* Config.string("HF_ENDPOINT").pipe(
        Config.withDefault(DEFAULT_ENDPOINT),
        Effect.orElseSucceed(() => DEFAULT_ENDPOINT)
      ))
    ).replace(/\/+$/, "")
    const bound = Duration.decode(options.timeout ?? "3 seconds")
    const flush = Duration.decode(options.flushTimeout ?? "1 second")
    // Not the user's operation: the ping stays out of their traces.
    const client = HttpClient.withTracerDisabledWhen(yield* HttpClient.HttpClient, () => true)
    // The bound runs on the Clock the layer was built with, not on the caller's: a layer built with a
    // Clock whose timers do not hold the process (the Promise facade's) keeps it that way.
    const clock = yield* Effect.clock
    const pending = yield* FiberSet.make()
    // Runs before the set's own release (finalizers run in reverse), which interrupts what is left.
    // Interruptible: a finalizer is not, and the bound must be able to cut the wait short.
    yield* Effect.addFinalizer(() =>
      FiberSet.awaitEmpty(pending).pipe(Effect.interruptible, Effect.timeout(flush), Effect.ignore)
    )
    const send = (event: Event) => {
      const path = topic(event).split("/").map(encodeURIComponent).join("/")
      const request = HttpClientRequest.head(`${endpoint}/api/telemetry/${path}`).pipe(
        HttpClientRequest.setHeader("user-agent", userAgent(event))
      )
      return client.execute(request).pipe(
        Effect.timeout(bound),
        Effect.withClock(clock),
        Effect.catchAllCause((cause) =>
          Effect.logDebug(`hf-sandbox: telemetry not sent: ${Cause.squash(cause)}`).pipe(Effect.ignore)
        ),
        Effect.asVoid,
        Effect.interruptible,
        FiberSet.run(pending),
        Effect.asVoid
      )
    }
    return { enabled: true, send } satisfies Service
  })

/**
 * Sends the events to the Hub (see {@link makeHub}); requests still in flight when the layer closes
 * get `flushTimeout` (default 1 s) and are then interrupted. Needs an `HttpClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHub = (options: HubOptions = {}): Layer.Layer<Telemetry, never, HttpClient.HttpClient> =>
  Layer.scoped(Telemetry, makeHub(options))

/**
 * The events an in-memory telemetry has received, provided by {@link layerMemory}.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryService {
  /** Every event so far, oldest first. */
  readonly events: Effect.Effect<ReadonlyArray<Event>>
  /** Forgets the events so far. */
  readonly clear: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Memory extends Context.Tag("hf-sandbox/Telemetry/Memory")<Memory, MemoryService>() {}

/**
 * A telemetry that keeps every event in memory, and the way to read them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<{ readonly telemetry: Service; readonly memory: MemoryService }> = Effect.sync(
  () => {
    const events: Array<Event> = []
    return {
      telemetry: make((event) => Effect.sync(() => void events.push(event))),
      memory: {
        events: Effect.sync(() => events.slice()),
        clear: Effect.sync(() => {
          events.length = 0
        })
      }
    }
  }
)

/**
 * Records the events in memory, for tests: read them with {@link memory}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Telemetry | Memory> = Layer.effectContext(
  Effect.map(makeMemory, ({ telemetry, memory }) =>
    Context.make(Telemetry, telemetry).pipe(Context.add(Memory, memory))
  )
)

/**
 * The events {@link layerMemory} has recorded so far, oldest first.
 *
 * @since 0.1.0
 * @category accessors
 */
export const memory: Effect.Effect<ReadonlyArray<Event>, never, Memory> = Effect.flatMap(Memory, (m) => m.events)
