/**
 * The local server's Unix-domain socket. Beside loopback TCP the server listens on a socket in a private
 * directory beside its working directory (`<workdir>.sock/`, 0700; the socket itself is 0600), and the
 * client sends its requests there. Both ends skip the TCP/IP stack, which on a fast stream (1 GiB of
 * streamed stdin) costs more CPU than the bytes themselves; on a 2-core machine that CPU is the limit.
 *
 * The requests still go through an HttpClient: the platform's undici client, on one undici Agent that
 * connects to the socket, made once per sandbox and closed with it. A server that did not announce a
 * socket (an older one, a path too long for a socket address) is reached over TCP as before.
 */
import * as fs from "node:fs"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * The longest socket path used: `sun_path` holds 108 bytes on Linux, 104 on macOS (with its NUL). A
 * working directory deeper than this gets no socket.
 */
const MAX_PATH_BYTES = 100

/** The private directory that holds the socket of `workdir`'s server. */
export const directory = (workdir: string): string => `${workdir}.sock`

/** The socket path of `workdir`'s server, when it fits in a socket address. */
export const socketPath = (workdir: string): string | undefined => {
  const file = `${directory(workdir)}/server.sock`
  return Buffer.byteLength(file) <= MAX_PATH_BYTES && process.platform !== "win32" ? file : undefined
}

/**
 * Creates the socket's directory (0700, only the user can reach into it) and returns the socket path to
 * give the server; undefined when there is none to give (the path is too long, or the directory could not
 * be made): then the server listens on TCP only.
 */
export const prepare = (workdir: string): string | undefined => {
  const file = socketPath(workdir)
  if (file === undefined) return undefined
  try {
    fs.mkdirSync(directory(workdir), { mode: 0o700 })
    fs.chmodSync(directory(workdir), 0o700)
    return file
  } catch {
    return undefined
  }
}

/** Removes the socket's directory (the server removes it when it ends; this is for when it could not). */
export const remove = (workdir: string): void => {
  fs.rmSync(directory(workdir), { recursive: true, force: true })
}

/**
 * Adapts the application's HttpClient for a server that listens on `file` as well as on `origin`
 * (`http://127.0.0.1:PORT`): requests to that origin go over the socket, through the platform's undici
 * client on one Agent made for the time of the scope (closed, connections and all, when it closes); any
 * other request (a test's relay in front of the server) goes through the application's client. The undici
 * client comes from `@effect/platform-node`, loaded only here; without it, or without a socket, the
 * result is `undefined` and everything goes over TCP.
 */
export const transport = (
  file: string | undefined,
  origin: string
): Effect.Effect<((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined, never, Scope.Scope> =>
  file === undefined
    ? Effect.succeed(undefined)
    : Effect.gen(function* () {
        const modules = yield* Effect.promise(() =>
          Promise.all([import("@effect/platform-node/NodeHttpClient"), import("@effect/platform-node/Undici")]).then(
            ([http, undici]) => ({ http, undici }),
            () => undefined
          )
        )
        if (modules === undefined) return undefined
        const agent = yield* Effect.acquireRelease(
          Effect.sync(() => new modules.undici.Agent({ connect: { socketPath: file } })),
          (agent) =>
            Effect.promise(() => agent.destroy().catch(() => {})).pipe(Effect.timeout("1 second"), Effect.ignore)
        )
        const viaSocket = modules.http.makeUndici(agent)
        const prefix = `${origin}/`
        return (client: HttpClient.HttpClient) =>
          HttpClient.makeWith(
            (request: Effect.Effect<HttpClientRequest.HttpClientRequest, HttpClientError.HttpClientError>) =>
              Effect.flatMap(request, (r) => (r.url.startsWith(prefix) ? viaSocket.execute(r) : client.execute(r))),
            Effect.succeed<HttpClientRequest.HttpClientRequest>
          )
      })
