/**
 * A TCP relay between a client and a server, on real loopback sockets, that can cut every connection
 * through it on command: what a proxy, a restarted tunnel or a sleeping laptop does to a stream.
 */
import * as net from "node:net"

export interface Relay {
  /** `http://127.0.0.1:PORT`, to use instead of the server's own URL. */
  readonly url: string
  /** Connections accepted so far. */
  readonly connections: () => number
  /** Destroys every connection through the relay, both sides, at once. */
  readonly cut: () => void
  /** While set, new connections are refused (accepted and reset at once), as by a dead edge. */
  readonly refuse: (on: boolean) => void
  /**
   * While set, what the server sends is read and thrown away instead of forwarded: it was sent, as far
   * as the server can tell, but never reaches the client (bytes lost in a proxy's buffers). Returns the
   * bytes swallowed so far.
   */
  readonly swallow: (on: boolean) => void
  readonly swallowed: () => number
  readonly close: () => Promise<void>
}

export const startRelay = (target: { readonly host: string; readonly port: number }): Promise<Relay> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    let accepted = 0
    let refusing = false
    let swallowing = false
    let swallowed = 0
    const track = (socket: net.Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => {})
    }
    const server = net.createServer((client) => {
      accepted += 1
      track(client)
      if (refusing) {
        client.resetAndDestroy()
        return
      }
      const upstream = net.connect(target.port, target.host)
      track(upstream)
      client.pipe(upstream)
      upstream.on("data", (data: Buffer) => {
        if (swallowing) {
          swallowed += data.length
          return
        }
        // Back-pressure: a client that does not read holds the server back, as a real proxy does.
        if (!client.write(data)) {
          upstream.pause()
          client.once("drain", () => upstream.resume())
        }
      })
      upstream.on("end", () => client.end())
      const destroyBoth = () => {
        client.destroy()
        upstream.destroy()
      }
      client.on("close", destroyBoth)
      upstream.on("close", destroyBoth)
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        connections: () => accepted,
        cut: () => {
          for (const socket of sockets) socket.resetAndDestroy()
        },
        refuse: (on) => {
          refusing = on
        },
        swallow: (on) => {
          swallowing = on
        },
        swallowed: () => swallowed,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
