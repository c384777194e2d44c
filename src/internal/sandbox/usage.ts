/**
 * Usage telemetry of a made sandbox: `create` when it is up, `terminate` when its scope closes.
 */
import { randomBytes } from "node:crypto"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Telemetry from "../../Telemetry.js"
import * as Signals from "../signals.js"

/** A telemetry event is bounded again here, whatever the service does: it never holds a sandbox up. */
const TELEMETRY_BOUND = Duration.seconds(1)

/**
 * Reports a made sandbox to the telemetry: `create` now, `terminate` when its scope closes (before
 * the teardown, so that the report is on its way while the provider stops the sandbox).
 */
export const reportUsage = (
  telemetry: Telemetry.Service,
  scope: Scope.Scope,
  spec: SandboxProvider.Spec,
  endpoint: SandboxProvider.Endpoint,
  startedAt: number,
  byUser: () => boolean
) =>
  Effect.gen(function* () {
    const send = (event: Telemetry.Event) =>
      Effect.interruptible(telemetry.send(event)).pipe(
        Effect.timeout(TELEMETRY_BOUND),
        Effect.catchAllCause(() => Effect.void)
      )
    const sessionId = randomBytes(16).toString("hex")
    const signal = yield* Scope.extend(Signals.watch, scope)
    yield* Scope.addFinalizerExit(scope, (exit) =>
      // A detached sandbox lives on when its scope closes: it ends only if `terminate` was called.
      spec.detach && !byUser()
        ? Effect.void
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            send({
              _tag: "Terminate",
              sessionId,
              durationS: Math.max(0, Math.round((now - startedAt) / 100) / 10),
              reason:
                signal() !== undefined
                  ? "signal"
                  : byUser()
                    ? "user"
                    : Exit.isSuccess(exit)
                      ? "scope"
                      : Cause.isInterruptedOnly(exit.cause)
                        ? "interruption"
                        : "failure"
            })
          )
    )
    yield* send({
      _tag: "Create",
      sessionId,
      flavor: endpoint.hardware ?? "default",
      // The telemetry schema shared with HF's client names the lifetime `timeoutS`.
      timeoutS: spec.lifetime === undefined ? null : Math.ceil(Duration.toSeconds(spec.lifetime)),
      forwardHfToken: endpoint.forwardsHfToken ?? false
    })
  }).pipe(Effect.uninterruptible)
