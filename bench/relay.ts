/**
 * A loopback TCP relay that makes a local server look far away, for benchmarks: it listens on
 * 127.0.0.1, forwards every accepted connection to a target, and delays each chunk by a one-way latency.
 *
 * Delay alone would make a long link with unlimited bandwidth per stream, which no real link is: a TCP
 * sender may only have one window of unacknowledged bytes in flight, so one stream carries at most
 * window / RTT. The relay models that, per connection and per direction:
 *
 * - a chunk read from the source is in flight until it has been written to the destination AND a further
 *   one-way latency has passed (its ack travelling back);
 * - when the bytes in flight reach the window, the relay stops reading the source (and the kernel's own
 *   buffers then push back on the sender, as TCP flow control does); a chunk larger than the room left is
 *   split, so the bound is exact;
 * - a new connection cannot deliver data before its handshake completes: the client's first bytes arrive
 *   1.5 RTT after it connected (SYN, SYN-ACK, then the data), as over a real link (`handshake: false`
 *   turns that off).
 *
 * Default window: 256 KiB, i.e. window / RTT = 2.5 MiB/s per stream at 100 ms RTT (50 ms each way) —
 * "a few MiB/s", what one real TCP stream typically gets through a 100 ms tunnel or a transatlantic path
 * (default Linux autotuning caps receive windows in the hundreds of KiB to a few MiB, and a proxy or
 * tunnel in the middle usually buffers less). N parallel streams get N windows, hence N× the throughput,
 * which is the effect ranged parallel transfers exploit. Not modelled: slow start, loss, a shared
 * bottleneck bandwidth (the loopback has plenty).
 *
 * Order is preserved; half-close (FIN) and errors (as an RST) travel both ways with the same latency;
 * `close` destroys every socket and the server.
 */
import * as net from "node:net"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"

export const DEFAULT_LATENCY_MS = 50
export const DEFAULT_WINDOW_BYTES = 256 * 1024

export interface RelayOptions {
  /** Where every accepted connection is forwarded. */
  readonly target: { readonly host: string; readonly port: number }
  /** One-way latency, in each direction. Default 50 ms (100 ms RTT). */
  readonly latencyMs?: number | undefined
  /** Bytes that may be in flight per connection and direction (the TCP window). Default 256 KiB. */
  readonly windowBytes?: number | undefined
  /** Hold a new connection's first bytes for the handshake's RTT. Default true. */
  readonly handshake?: boolean | undefined
}

export interface RelayStats {
  /** Connections accepted so far. */
  readonly connections: number
  /** Connections still open. */
  readonly open: number
  /** Bytes delivered client → target and target → client. */
  readonly bytesUp: number
  readonly bytesDown: number
  /** Bytes delivered (both ways) per connection, in accept order: shows how many carried a transfer. */
  readonly perConnection: ReadonlyArray<number>
}

export interface Relay {
  readonly host: string
  readonly port: number
  /** `baseUrl` with its host and port replaced by the relay's (scheme and path kept). */
  readonly url: (baseUrl: string) => string
  readonly stats: () => RelayStats
}

export interface RelayHandle extends Relay {
  /** Destroys every socket, cancels every pending delivery and closes the server. Idempotent. */
  readonly close: () => Promise<void>
}

const now = () => performance.now()

/**
 * Events in time order on one timer. Items must be pushed with non-decreasing times, which holds here
 * since every item is "now (or a fixed later instant) + a constant latency".
 */
const makeTimeline = () => {
  const items: Array<{ at: number; run: () => void }> = []
  let timer: NodeJS.Timeout | undefined
  let closed = false
  const fire = () => {
    timer = undefined
    // Timers fire on whole milliseconds; anything due within half a millisecond runs now.
    const t = now() + 0.5
    while (!closed && items.length > 0 && items[0]!.at <= t) items.shift()!.run()
    arm()
  }
  const arm = () => {
    if (closed || timer !== undefined || items.length === 0) return
    timer = setTimeout(fire, Math.max(0, items[0]!.at - now()))
  }
  return {
    push: (at: number, run: () => void) => {
      if (closed) return
      // Nothing waiting and already due (zero latency): run now rather than a timer tick later.
      if (items.length === 0 && at <= now()) return run()
      items.push({ at, run })
      arm()
    },
    close: () => {
      closed = true
      items.length = 0
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    }
  }
}

/** Sends an RST when the platform can (Node ≥ 18.3), else a plain destroy. */
const reset = (socket: net.Socket) => {
  if (socket.destroyed) return
  if (socket.connecting || typeof socket.resetAndDestroy !== "function") socket.destroy()
  else socket.resetAndDestroy()
}

/**
 * One direction of one connection: `src` is read, `dst` written, `latency` later; at most `window` bytes
 * are between the read and the ack.
 */
const makeDirection = (
  src: net.Socket,
  dst: net.Socket,
  latency: number,
  window: number,
  openAt: number,
  count: (n: number) => void
) => {
  const wire = makeTimeline() // data, FIN and RST travelling to dst, in order
  const acks = makeTimeline() // acks travelling back
  let inFlight = 0
  let held: Buffer | undefined // read from src, waiting for room in the window
  let srcEnded = false
  let finSent = false
  let stopped = false

  const departAt = () => Math.max(now(), openAt) + latency

  const send = (chunk: Buffer) => {
    inFlight += chunk.length
    wire.push(departAt(), () => {
      if (dst.destroyed) return
      dst.write(chunk, (error) => {
        if (error || stopped) return
        count(chunk.length)
        const ackAt = now() + latency
        acks.push(ackAt, () => acked(chunk.length))
      })
    })
  }

  const sendFin = () => {
    if (finSent) return
    finSent = true
    wire.push(departAt(), () => {
      if (!dst.destroyed) dst.end()
    })
  }

  const admit = (chunk: Buffer) => {
    const room = window - inFlight
    if (chunk.length <= room) send(chunk)
    else {
      if (room > 0) send(chunk.subarray(0, room))
      held = chunk.subarray(Math.max(0, room))
    }
    if (held !== undefined || inFlight >= window) src.pause()
  }

  const acked = (n: number) => {
    inFlight -= n
    if (held !== undefined) {
      const chunk = held
      held = undefined
      admit(chunk)
    }
    if (held !== undefined) return
    if (srcEnded) sendFin()
    else if (inFlight < window && src.isPaused()) src.resume()
  }

  src.on("data", (chunk: Buffer) => admit(chunk))
  src.on("end", () => {
    srcEnded = true
    if (held === undefined) sendFin()
  })

  return {
    /** The source failed: whatever is still on the wire arrives, then an RST. */
    sendReset: () => {
      held = undefined
      wire.push(departAt(), () => reset(dst))
    },
    stop: () => {
      stopped = true
      wire.close()
      acks.close()
    }
  }
}

/**
 * Starts a relay (plain Promise API); see {@link makeRelay} for the scoped one.
 */
export const startRelay = (options: RelayOptions): Promise<RelayHandle> => {
  const latency = Math.max(0, options.latencyMs ?? DEFAULT_LATENCY_MS)
  const window = Math.max(1, Math.floor(options.windowBytes ?? DEFAULT_WINDOW_BYTES))
  const handshake = options.handshake ?? true
  const connections = new Set<{ sockets: [net.Socket, net.Socket]; stop: () => void }>()
  let accepted = 0
  const perConnection: Array<number> = []
  let bytesUp = 0
  let bytesDown = 0
  let closed = false

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    if (closed) return client.destroy()
    const index = accepted++
    perConnection.push(0)
    const t0 = now()
    const upstream = net.connect({ host: options.target.host, port: options.target.port, allowHalfOpen: true })
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // SYN out, SYN-ACK back: the client's data leaves one RTT after it connected, and arrives L later.
    const up = makeDirection(client, upstream, latency, window, handshake ? t0 + 2 * latency : t0, (n) => {
      bytesUp += n
      perConnection[index]! += n
    })
    const down = makeDirection(upstream, client, latency, window, t0, (n) => {
      bytesDown += n
      perConnection[index]! += n
    })
    const connection = {
      sockets: [client, upstream] as [net.Socket, net.Socket],
      stop: () => {
        up.stop()
        down.stop()
        client.destroy()
        upstream.destroy()
      }
    }
    connections.add(connection)
    let failed = false
    // A failure on one side reaches the other as an RST, after the data already on the wire.
    const onError = (direction: { sendReset: () => void }) => () => {
      if (failed) return
      failed = true
      direction.sendReset()
    }
    client.on("error", onError(up))
    upstream.on("error", onError(down))
    let open = 2
    const onClose = () => {
      if (--open > 0) return
      connection.stop()
      connections.delete(connection)
    }
    client.on("close", onClose)
    upstream.on("close", onClose)
    client.resume()
  })

  return new Promise<RelayHandle>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      const address = server.address() as net.AddressInfo
      const host = "127.0.0.1"
      const port = address.port
      resolve({
        host,
        port,
        url: (baseUrl) => {
          const parsed = new URL(baseUrl)
          parsed.hostname = host
          parsed.port = String(port)
          const text = parsed.toString()
          // URL adds a "/" path to a bare origin; keep the caller's form.
          return text.endsWith("/") && !baseUrl.endsWith("/") ? text.slice(0, -1) : text
        },
        stats: () => ({
          connections: accepted,
          open: connections.size,
          bytesUp,
          bytesDown,
          perConnection: [...perConnection]
        }),
        close: () => {
          closed = true
          // Resolves once the server and every socket are really closed (their handles released).
          const sockets = [...connections].flatMap((c) => c.sockets)
          const gone = sockets.map((s) => (s.closed ? Promise.resolve() : new Promise((done) => s.once("close", done))))
          for (const connection of connections) connection.stop()
          connections.clear()
          return Promise.all([
            new Promise<void>((done) => (server.listening ? server.close(() => done()) : done())),
            ...gone
          ]).then(() => undefined)
        }
      })
    })
  })
}

/**
 * A relay for the life of the scope: it is closed (every socket destroyed, the server closed) when the
 * scope closes.
 */
export const makeRelay = (options: RelayOptions): Effect.Effect<Relay, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startRelay(options)),
    (relay) => Effect.promise(() => relay.close())
  ).pipe(Effect.map(({ close: _close, ...relay }): Relay => relay))

/**
 * Wraps a provider so that every sandbox it provisions is reached through its own relay: the endpoint's
 * `baseUrl` points at the relay, which lives (and closes) with the sandbox, and its reads are a remote
 * sandbox's (through the HttpClient, in default ranges). `onRelay` sees each relay,
 * e.g. to read its stats. Use with `Effect.provideService(SandboxProvider.SandboxProvider, ...)`.
 */
export const throughRelay = (
  provider: SandboxProvider.Service,
  options: Omit<RelayOptions, "target">,
  onRelay: (relay: Relay) => void = () => {}
): SandboxProvider.Service => ({
  ...provider,
  name: `${provider.name}+relay`,
  provision: (spec) =>
    Effect.gen(function* () {
      const endpoint = yield* provider.provision(spec)
      const target = new URL(endpoint.baseUrl)
      const relay = yield* makeRelay({
        ...options,
        target: { host: target.hostname, port: Number(target.port || (target.protocol === "https:" ? 443 : 80)) }
      })
      onRelay(relay)
      return {
        ...endpoint,
        baseUrl: relay.url(endpoint.baseUrl),
        // Behind the relay the sandbox stands in for a remote one: reads take the HttpClient and the
        // default ranges, as they would to a job.
        directReads: false,
        readRangeSize: undefined,
        details: { ...endpoint.details, relay: `${relay.host}:${relay.port}`, directUrl: endpoint.baseUrl }
      }
    })
})
