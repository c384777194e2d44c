/**
 * Work that must never keep a Node process alive: the Promise facade's telemetry pings. A plain
 * `await` program ends when its event loop runs dry; a ping to a Hub that does not answer must not hold
 * it open until the ping's bound. Its sockets and its timers are therefore unref'd: they run while the
 * program has other work, and are dropped with the process when it has none.
 */
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** A Clock whose sleeps (and so timeouts) do not keep the process alive. */
export const clock: Clock.Clock = (() => {
  const base = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis(),
    unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos(),
    currentTimeMillis: base.currentTimeMillis,
    currentTimeNanos: base.currentTimeNanos,
    sleep: (duration: Duration.Duration) =>
      Effect.async<void>((resume) => {
        const timer = setTimeout(() => resume(Effect.void), Duration.toMillis(duration))
        timer.unref()
        return Effect.sync(() => clearTimeout(timer))
      })
  }
})()

type Connect = (options: object, callback?: (error: Error | null, socket: Net.Socket) => void) => Net.Socket

const unrefSockets = <A extends Http.Agent>(agent: A): A => {
  const create = (agent as unknown as { createConnection: Connect }).createConnection.bind(agent)
  ;(agent as unknown as { createConnection: Connect }).createConnection = (options, callback) => {
    const socket = create(options, callback)
    socket.unref()
    return socket
  }
  return agent
}

/** An HttpClient (node:http) whose connections do not keep the process alive. */
export const layerHttpClient: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerWithoutAgent.pipe(
  Layer.provide(
    Layer.scoped(
      NodeHttpClient.HttpAgent,
      Effect.acquireRelease(
        Effect.sync(() => ({
          [NodeHttpClient.HttpAgentTypeId]: NodeHttpClient.HttpAgentTypeId,
          http: unrefSockets(new Http.Agent({ keepAlive: false })),
          https: unrefSockets(new Https.Agent({ keepAlive: false }))
        })),
        (agent) =>
          Effect.sync(() => {
            agent.http.destroy()
            agent.https.destroy()
          })
      )
    )
  )
)
