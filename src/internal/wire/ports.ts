/**
 * The port routes: `GET /v1/ports/{port}` (does something listen on it now) and
 * `POST /v1/ports/{port}/tunnel` (the port's own quick tunnel, started on first use).
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Protocol from "../../Protocol.js"
import { ConnectionLostError, type OperationError, PortError } from "../../SandboxError.js"
import { failFromResponse } from "./errors.js"
import { boundAnswer, call, json, send, type Transport } from "./transport.js"

const portPath = (port: number, route = "") => `/v1/ports/${port}${route}`

/** Whether something accepts connections on the port in the sandbox now. */
export const status = (transport: Transport, port: number): Effect.Effect<Protocol.PortStatus, OperationError> =>
  call(transport, "port status", undefined, HttpClientRequest.get(portPath(port)), json(Protocol.PortStatus))

/** How long the server holds a tunnel request open for the tunnel to come up, per request. */
const TUNNEL_WAIT = Duration.seconds(20)

/**
 * The URL of the port's quick tunnel once it is up, or `undefined` while it is still starting (the
 * server answered 503 after holding the request `TUNNEL_WAIT`): the caller asks again.
 */
export const tunnel = (transport: Transport, port: number): Effect.Effect<string | undefined, OperationError> =>
  send(
    transport,
    "port tunnel",
    HttpClientRequest.post(portPath(port, "/tunnel")).pipe(
      HttpClientRequest.setUrlParam("wait", String(Duration.toSeconds(TUNNEL_WAIT)))
    )
  ).pipe(
    Effect.flatMap((response): Effect.Effect<string | undefined, OperationError> => {
      if (response.status === 503) return Effect.succeed(undefined)
      if (response.status === 502) {
        return Effect.flatMap(
          Effect.orElseSucceed(response.json, () => ({})),
          (body) =>
            new PortError({
              port,
              reason: "TunnelFailed",
              detail: String((body as { error?: unknown }).error ?? "the tunnel's supervisor gave up")
            })
        )
      }
      if (response.status !== 200) return failFromResponse("port tunnel", undefined, response)
      return json(Protocol.PortTunnel)(response).pipe(
        Effect.mapError(
          (cause) => new ConnectionLostError({ operation: "port tunnel", detail: "malformed answer", cause })
        ),
        Effect.flatMap((body) =>
          body.url === null
            ? new PortError({ port, reason: "TunnelFailed", detail: `the server answered ${body.state} without a URL` })
            : Effect.succeed(body.url)
        )
      )
    }),
    boundAnswer(transport, "port tunnel", Duration.sum(TUNNEL_WAIT, transport.timeouts.request))
  )
