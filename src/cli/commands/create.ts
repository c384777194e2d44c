/** `hf-sandbox create`: a sandbox that keeps running after the command (`detach`), its id printed. */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Defaults from "../../internal/defaults.js"
import * as Adopt from "../../internal/pool/adopt.js"
import * as Sandbox from "../../Sandbox.js"
import { action } from "../action.js"
import { durationFlag, flavor, globals, image, sandboxFlags, sandboxOptions } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

const durationSeconds = (d: Duration.Duration) => Math.round(Duration.toMillis(d) / 1000)

/** `create`'s limits on the sandbox's life, beside the flags it shares with `run`. */
const lifeFlags = {
  lifetime: durationFlag("lifetime", "Hard limit on the sandbox's life on HF Jobs, e.g. 30m, 2h (default 1h)."),
  timeout: durationFlag("timeout", "Deprecated alias of --lifetime.")
}

/**
 * The flags of `create` that describe a sandbox of its own, which a pooled one takes from its host: every
 * sandbox flag but `--env` (a pooled sandbox has its own environment), so a flag added there is refused here.
 */
const { env: _pooledEnv, ...sandboxOwnFlags } = sandboxFlags
const NOT_FOR_POOLS = { flavor, ...lifeFlags, ...sandboxOwnFlags }

/** Whether a flag was given: a value, a repeated one at least once, or a boolean set. */
const given = (value: unknown) =>
  Option.isOption(value) ? Option.isSome(value) : Array.isArray(value) ? value.length > 0 : value === true

/** The flags of {@link NOT_FOR_POOLS} (and the image) that were given, as the user wrote them. */
const notForPools = (
  a: { readonly image: Option.Option<string> } & { readonly [K in keyof typeof NOT_FOR_POOLS]: unknown }
): ReadonlyArray<string> => [
  ...(Option.isSome(a.image) ? ["IMAGE"] : []),
  ...(Object.entries(NOT_FOR_POOLS) as Array<[keyof typeof NOT_FOR_POOLS, Options.Options<unknown>]>)
    .filter(([key]) => given(a[key]))
    .map(([key, flag]) => Option.getOrElse(Options.getIdentifier(flag), () => key))
]

/** `create --pool NAME`: a sandbox on a running host of the pool; not owned, so it outlives the command. */
const onPool = (
  a: Parameters<typeof notForPools>[0] & { readonly env: ReadonlyArray<string> },
  pool: string,
  idle: Duration.Duration | undefined,
  mode: Output.Mode
) =>
  Effect.gen(function* () {
    const refused = notForPools(a)
    if (refused.length > 0) {
      return yield* new Parse.UsageError({
        message: `${refused.join(", ")} cannot be given with --pool: a pooled sandbox runs on its pool's host, which decides them (set them at hf-sandbox pool up)`
      })
    }
    const idleTimeout = idle ?? Defaults.IDLE_TIMEOUT
    const sb = yield* Adopt.createOnPool(pool, {
      env: yield* Parse.envPairs(a.env),
      idleTimeout: Parse.idleTimeout(idleTimeout)
    })
    if (mode.json) return yield* Output.json({ id: sb.id, provider: sb.provider, pool, details: sb.details })
    yield* Output.line(sb.id)
    yield* Output.note(
      mode,
      `Sandbox ${sb.id} is running on a host of pool ${pool}; it keeps running after this command` +
        (Duration.toMillis(idleTimeout) === 0
          ? " until its host stops."
          : ` and stops after ${Duration.format(idleTimeout)} without a request (--idle-timeout).`) +
        `\nRun commands: hf-sandbox exec ${sb.id} -- CMD...   Stop it: hf-sandbox kill ${sb.id}`
    )
  })

export const create = Command.make(
  "create",
  {
    ...globals,
    image,
    flavor,
    ...lifeFlags,
    idleTimeout: durationFlag(
      "idle-timeout",
      "Stop the sandbox after this long without a request (default 10m; 0: never)."
    ),
    ...sandboxFlags,
    pool: Options.text("pool").pipe(
      Options.withPseudoName("NAME"),
      Options.optional,
      Options.withDescription(
        "Make the sandbox on a running host of this pool (hf-sandbox pool up): its id is HOST.LOCAL. Takes --env and --idle-timeout; the pool's hosts decide the rest."
      )
    )
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const idle = yield* Parse.optionalDuration("--idle-timeout", a.idleTimeout)
        const lifetime = yield* Parse.optionalDuration("--lifetime", a.lifetime)
        const timeout = yield* Parse.optionalDuration("--timeout", a.timeout)
        if (lifetime !== undefined && timeout !== undefined && !Duration.equals(lifetime, timeout)) {
          return yield* new Parse.UsageError({
            message: `--lifetime ${Option.getOrThrow(a.lifetime)} and its deprecated alias --timeout ${Option.getOrThrow(a.timeout)} differ: give only --lifetime`
          })
        }
        if (Option.isSome(a.pool)) return yield* onPool(a, a.pool.value, idle, mode)
        const options = yield* sandboxOptions(a)
        const sb = yield* Sandbox.make({
          ...options,
          lifetime: lifetime ?? timeout,
          idleTimeout: Parse.idleTimeout(idle),
          detach: true
        })
        // 0 is "never" in what this command prints, however it was spelled (`0`, `Infinity`).
        const idleSeconds =
          idle !== undefined && !Duration.isFinite(idle) ? 0 : durationSeconds(idle ?? Defaults.IDLE_TIMEOUT)
        // What the provider says: the hard limit in force (HF Jobs default to one hour; a local sandbox has
        // one only when given one; an infinite one is none), and whether the sandbox runs on this machine.
        const limit = sb.lifetime !== undefined && Duration.isFinite(sb.lifetime) ? sb.lifetime : undefined
        const local = sb.onThisMachine === true
        if (mode.json) {
          yield* Output.json({
            id: sb.id,
            provider: sb.provider,
            idleTimeoutSeconds: idleSeconds,
            // `timeoutSeconds` is the field's former name, kept for scripts that read it.
            ...(limit === undefined
              ? {}
              : { lifetimeSeconds: durationSeconds(limit), timeoutSeconds: durationSeconds(limit) }),
            details: sb.details
          })
        } else {
          yield* Output.line(sb.id)
        }
        const stops = [
          idleSeconds > 0
            ? `after ${Duration.format(Duration.seconds(idleSeconds))} without a request (--idle-timeout)`
            : undefined,
          limit === undefined ? undefined : `at the latest after ${Duration.format(limit)}`
        ].filter((s) => s !== undefined)
        yield* Output.note(
          mode,
          `Sandbox ${sb.id} is running${local ? " on this machine" : ""}; it keeps running after this command.` +
            (stops.length > 0
              ? ` It stops itself ${stops.join(", and ")}.`
              : " It has no idle timeout: kill it when done.") +
            `\nRun commands: hf-sandbox exec ${sb.id} -- CMD...   Stop it: hf-sandbox kill ${sb.id}` +
            (options.ssh === true ? `\nOpen a shell over SSH: hf-sandbox ssh ${sb.id}` : "") +
            (local && options.image !== undefined
              ? "\n(The local provider runs on this machine and ignores IMAGE.)"
              : "")
        )
      }),
    { starts: true }
  )
).pipe(Command.withDescription("Create a sandbox that keeps running, and print its id."))
