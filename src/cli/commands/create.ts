/** `hf-sandbox create`: a sandbox that keeps running after the command (`detach`), its id printed. */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Defaults from "../../internal/defaults.js"
import * as Sandbox from "../../Sandbox.js"
import { action } from "../action.js"
import {
  env,
  flavor,
  forwardHfToken,
  globals,
  image,
  label,
  sandboxOptions,
  secret,
  startTimeout,
  transport
} from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

const durationSeconds = (d: Duration.Duration) => Math.round(Duration.toMillis(d) / 1000)

export const create = Command.make(
  "create",
  {
    ...globals,
    image,
    flavor,
    timeout: Options.text("timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Hard limit on the sandbox's life on HF Jobs, e.g. 30m, 2h (default 1h).")
    ),
    idleTimeout: Options.text("idle-timeout").pipe(
      Options.withPseudoName("DURATION"),
      Options.optional,
      Options.withDescription("Stop the sandbox after this long without a request (default 10m; 0: never).")
    ),
    env,
    secret,
    label,
    transport,
    forwardHfToken,
    startTimeout
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const idle = yield* Parse.optionalDuration("--idle-timeout", a.idleTimeout)
        const lifetime = yield* Parse.optionalDuration("--timeout", a.timeout)
        const options = yield* sandboxOptions(a)
        const sb = yield* Sandbox.make({
          ...options,
          timeout: lifetime,
          // `--idle-timeout 0` is "never", which the library spells Duration.infinity (it refuses zero).
          idleTimeout: idle !== undefined && Duration.toMillis(idle) === 0 ? Duration.infinity : idle,
          detach: true
        })
        const idleSeconds = durationSeconds(idle ?? Defaults.IDLE_TIMEOUT)
        const local = sb.provider === "local"
        if (mode.json) {
          yield* Output.json({
            id: sb.id,
            provider: sb.provider,
            idleTimeoutSeconds: idleSeconds,
            // HF Jobs default to one hour; a local sandbox has a lifetime only when given one.
            ...(local && lifetime === undefined
              ? {}
              : { timeoutSeconds: durationSeconds(lifetime ?? Defaults.HF_JOB_LIFETIME) }),
            details: sb.details
          })
        } else {
          yield* Output.line(sb.id)
        }
        const stops = [
          idleSeconds > 0
            ? `after ${Duration.format(Duration.seconds(idleSeconds))} without a request (--idle-timeout)`
            : undefined,
          local && lifetime === undefined
            ? undefined
            : `at the latest after ${Duration.format(lifetime ?? Duration.hours(1))}`
        ].filter((s) => s !== undefined)
        yield* Output.note(
          mode,
          `Sandbox ${sb.id} is running${local ? " on this machine" : ""}; it keeps running after this command.` +
            (stops.length > 0
              ? ` It stops itself ${stops.join(", and ")}.`
              : " It has no idle timeout: kill it when done.") +
            `\nRun commands: hf-sandbox exec ${sb.id} -- CMD...   Stop it: hf-sandbox kill ${sb.id}` +
            (local && options.image !== undefined
              ? "\n(The local provider runs on this machine and ignores IMAGE.)"
              : "")
        )
      }),
    { starts: true }
  )
).pipe(Command.withDescription("Create a sandbox that keeps running, and print its id."))
