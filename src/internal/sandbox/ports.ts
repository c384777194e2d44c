/**
 * Served ports: `sb.expose(port)` (the provider's own way, or the sandbox server's port proxy) and
 * `sb.waitForPort(port)` (asks the server on `Schedules.portPoll` until something listens).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Protocol from "../../Protocol.js"
import type { Sandbox } from "../../Sandbox.js"
import { type OperationError, PortError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as Validate from "../validate.js"
import { guard, type Running } from "./running.js"
import { exitDetail, tailOf } from "./waitForOutput.js"

const DEFAULT_WAIT = Duration.minutes(2)

/** How long a port's quick tunnel may take to come up, over several requests the server holds open. */
const TUNNEL_BOUND = Duration.minutes(2)

const checkPort = (operation: string, port: number) =>
  Validate.check(operation, () => {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Validate.Invalid("port", `${JSON.stringify(port)} is not a port number (an integer from 1 to 65535)`)
    }
  })

/** The port through the sandbox server's port proxy: any port, any provider, with the sandbox token. */
const throughServer = (running: Running, port: number): Effect.Effect<SandboxProvider.Exposure> =>
  Effect.map(running.wire.origin, ({ baseUrl, headers, route }) => ({
    url: `${baseUrl}${route(Protocol.PROXY_PREFIX)}${port}`,
    headers,
    via: "server" as const
  }))

const STARTING = Symbol("starting")

/** The URL of the port's quick tunnel, asked again while it is starting, within {@link TUNNEL_BOUND}. */
const tunnelUrl = (running: Running, port: number): Effect.Effect<string, OperationError> =>
  running.wire.portTunnel(port).pipe(
    // Still starting: the same tunnel, asked again.
    Effect.flatMap((url) => (url === undefined ? Effect.fail(STARTING) : Effect.succeed(url))),
    Effect.retry({ schedule: running.schedules.portPoll, while: (error) => error === STARTING }),
    Effect.catchIf(
      (error): error is typeof STARTING => error === STARTING,
      () => Effect.fail(new PortError({ port, reason: "TunnelFailed", detail: "the server never said it was up" }))
    ),
    Effect.timeoutFail({
      duration: TUNNEL_BOUND,
      onTimeout: () =>
        new PortError({ port, reason: "TunnelFailed", detail: `not up within ${Duration.format(TUNNEL_BOUND)}` })
    })
  )

export const expose =
  (running: Running): Sandbox["expose"] =>
  (port, options = {}) =>
    guard(
      running,
      "expose",
      Effect.gen(function* () {
        yield* checkPort("expose", port)
        const via = options.via ?? "direct"
        if (via !== "direct" && via !== "server") {
          return yield* Validate.check("expose", () => {
            throw new Validate.Invalid("via", `${JSON.stringify(via)} is not "direct" or "server"`)
          })
        }
        const own = running.endpoint.expose
        return via === "server" || own === undefined
          ? yield* throughServer(running, port)
          : yield* own(port, { tunnel: (p) => tunnelUrl(running, p) })
      }),
      { "port.number": port }
    )

export const waitForPort =
  (running: Running): Sandbox["waitForPort"] =>
  (port, options = {}) =>
    guard(
      running,
      "waitForPort",
      Effect.gen(function* () {
        yield* checkPort("waitForPort", port)
        const timeout = yield* Validate.check("waitForPort", () =>
          options.timeout === undefined ? DEFAULT_WAIT : Validate.positiveDuration("timeout", options.timeout)
        )
        const process = options.process
        const tail = process === undefined ? Effect.succeed(undefined) : tailOf(process)
        const listening = Effect.repeat(running.wire.portStatus(port), {
          schedule: running.schedules.portPoll,
          until: (status) => status.listening
        })
        // The server that was to listen ended: no wait can succeed any more.
        // Not listening: why, with the end of the process's output when there is a process.
        const notListening = (detail: string) =>
          Effect.flatMap(tail, (text) =>
            Effect.fail(new PortError({ port, reason: "NotListening", detail, ...(text ? { tail: text } : {}) }))
          )
        const ended =
          process === undefined
            ? Effect.never
            : // A wait that fails says nothing about the port: polling goes on.
              Effect.flatMap(
                Effect.orElse(process.wait, () => Effect.never),
                (exit) => notListening(`process ${process.id} ended (${exitDetail(exit)}) first`)
              )
        yield* Effect.raceFirst(Effect.asVoid(listening), ended).pipe(
          Effect.timeout(timeout),
          Effect.catchTag("TimeoutException", () => notListening(`nothing within ${Duration.format(timeout)}`))
        )
      }),
      { "port.number": port }
    )
