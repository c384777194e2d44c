/**
 * A fresh trycloudflare name does not resolve for a few seconds, and a lookup in that window can be cached
 * as not-found by the local resolver for the zone's negative TTL (30 minutes), although the tunnel is fine.
 * When the system resolver says "not found" for a tunnel host, this asks public resolvers directly and, if
 * they know the name, sends that sandbox's requests to the address they gave — for that host only, through
 * a client of its own (TLS and `Host` still use the name). Nothing process-wide changes.
 */

import * as dns from "node:dns"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const DNS_MISS = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_NODATA"])

/** Whether a request failed because its host name did not resolve. */
export const isDnsMiss = (error: unknown): boolean => {
  let cause: unknown = error
  for (let depth = 0; depth < 5 && cause !== undefined && cause !== null; depth++) {
    const code = (cause as { code?: unknown }).code
    if (typeof code === "string" && DNS_MISS.has(code)) return true
    cause = (cause as { cause?: unknown }).cause
  }
  return false
}

/** The first IPv4 address public resolvers give for `host`, if any. */
export const resolvePublic = (host: string, servers: ReadonlyArray<string>): Effect.Effect<Option.Option<string>> =>
  Effect.tryPromise(async () => {
    const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 })
    resolver.setServers([...servers])
    try {
      return await resolver.resolve4(host)
    } finally {
      resolver.cancel()
    }
  }).pipe(
    Effect.map((addresses) => Option.fromNullable(addresses[0])),
    Effect.orElseSucceed(() => Option.none<string>())
  )

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number
) => void

/** A `lookup` that answers `address` for `host` and defers to the system for every other name. */
const pinnedLookup =
  (host: string, address: string) => (hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    if (hostname !== host) {
      dns.lookup(hostname, options, callback as never)
      return
    }
    if (options.all) callback(null, [{ address, family: 4 }])
    else callback(null, address, 4)
  }

/** A client whose connections to one host name go to one address, and how to close it. */
export interface Pinned {
  readonly client: HttpClient.HttpClient
  readonly close: () => Promise<void>
}

/**
 * Builds the pinned client of `host` at `address`. `client` is the one the fallback wraps (the caller's);
 * the default does not use it: it needs its own undici agent, whose `lookup` answers `address`.
 */
export type Connect = (
  host: string,
  address: string,
  client: HttpClient.HttpClient
) => Effect.Effect<Option.Option<Pinned>>

/** The default {@link Connect}: an undici agent (from `@effect/platform-node`) pinned to the address; none without it. */
const undiciConnect: Connect = (host, address) =>
  Effect.tryPromise(() =>
    Promise.all([import("@effect/platform-node/NodeHttpClient"), import("@effect/platform-node/Undici")])
  ).pipe(
    Effect.map(([NodeHttpClient, Undici]) => {
      const agent = new Undici.Agent({ connect: { lookup: pinnedLookup(host, address) as never } })
      return Option.some<Pinned>({ client: NodeHttpClient.makeUndici(agent), close: () => agent.close() })
    }),
    Effect.orElseSucceed(() => Option.none<Pinned>())
  )

/**
 * How the DNS fallback connects to the address public resolvers gave. Production uses {@link undiciConnect};
 * the Hub emulator replaces it so that a pinned connection reaches its emulated edge (`Testing.layerDnsFallback`).
 */
export class PinnedConnect extends Context.Reference<PinnedConnect>()("hf-sandbox/PublicDns/PinnedConnect", {
  defaultValue: (): Connect => undiciConnect
}) {}

/** The fallback of one tunnel host name: its pinned client once public resolvers gave an address. */
interface Pin {
  readonly host: string
  /** One pin at a time: concurrent misses must not each build a client. */
  readonly lock: Effect.Semaphore
  client: HttpClient.HttpClient | undefined
  close: (() => Promise<void>) | undefined
}

/** A DNS fallback that follows one host name at a time. */
export interface Fallback {
  /** Adapts a client: requests to the current host that miss in DNS are retried through the pinned client. */
  readonly transform: (client: HttpClient.HttpClient) => HttpClient.HttpClient
  /**
   * Follows a new host name (a restarted tunnel): requests to it get the fallback from now on, those to
   * the previous name no longer do, and the previous name's pinned client is closed.
   */
  readonly retarget: (host: string) => Effect.Effect<void>
  /** Closes every pinned client, bounded. */
  readonly release: Effect.Effect<void>
}

/**
 * Wraps `client` so that requests to the host name `host` that fail with a DNS miss are retried through a client pinned
 * to the address public resolvers give; once pinned, every later request to `host` uses it. The pinned
 * client needs `@effect/platform-node` (undici); without it the original error stands. `retarget` moves
 * the fallback to another name (`host` may be `undefined` until the first one is known). Its connections
 * are closed by `retarget` (the old name's) and `release`.
 */
export const withFallback = (
  host: string | undefined,
  servers: ReadonlyArray<string>,
  connect: Connect = undiciConnect
): Fallback => {
  const makePin = (name: string): Pin => ({
    host: name,
    lock: Effect.unsafeMakeSemaphore(1),
    client: undefined,
    close: undefined
  })
  let current: Pin | undefined = host === undefined ? undefined : makePin(host)
  const closing = new Set<Promise<void>>()

  const closePin = (pin: Pin) => {
    const close = pin.close
    pin.client = undefined
    pin.close = undefined
    if (close === undefined) return
    const done: Promise<void> = close()
      .catch(() => undefined)
      .finally(() => closing.delete(done))
    closing.add(done)
  }

  const pin = (target: Pin, client: HttpClient.HttpClient) =>
    Effect.gen(function* () {
      const address = yield* resolvePublic(target.host, servers)
      if (Option.isNone(address)) return Option.none<HttpClient.HttpClient>()
      const pinned = yield* connect(target.host, address.value, client)
      if (Option.isNone(pinned)) return Option.none<HttpClient.HttpClient>()
      target.close = pinned.value.close
      target.client = pinned.value.client
      // The name was left while its pin was being built: the pin is not kept.
      if (target !== current) {
        closePin(target)
        return Option.none<HttpClient.HttpClient>()
      }
      return Option.some(target.client)
    })

  const pinOnce = (target: Pin, client: HttpClient.HttpClient) =>
    target.lock.withPermits(1)(
      Effect.suspend(() =>
        target.client !== undefined ? Effect.succeed(Option.some(target.client)) : pin(target, client)
      )
    )

  const transform = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
    HttpClient.transform(client, (effect, request) => {
      const target = current
      if (target === undefined || new URL(request.url).hostname !== target.host) return effect
      if (target.client !== undefined) return target.client.execute(request)
      return effect.pipe(
        Effect.catchIf(
          (error) => error._tag === "RequestError" && isDnsMiss(error.cause),
          (error) =>
            Effect.flatMap(pinOnce(target, client), (found) =>
              Option.isSome(found) ? found.value.execute(request) : Effect.fail(error)
            )
        )
      )
    })

  const retarget = (name: string) =>
    Effect.sync(() => {
      if (current?.host === name) return
      const previous = current
      current = makePin(name)
      if (previous !== undefined) closePin(previous)
    })

  const release = Effect.promise(() => {
    if (current !== undefined) closePin(current)
    return Promise.all([...closing]).then(() => undefined)
  }).pipe(Effect.timeout("2 seconds"), Effect.ignore)

  return { transform, retarget, release }
}
