/**
 * A tiny DNS server on loopback (UDP) for the Hub emulator's "public resolvers": it answers A queries with
 * what `answer` says (NXDOMAIN when it says nothing), so the client's public-DNS fallback runs its real
 * resolver code without a packet leaving this machine. Only what `dns.Resolver.resolve4` sends is
 * understood: one question, no compression in the query.
 */
import * as dgram from "node:dgram"
import type * as Testing from "../../Testing.js"

/** The question's name (lower-cased) and type, or undefined for a packet we do not understand. */
const question = (query: Buffer): { name: string; type: number; end: number } | undefined => {
  const labels: Array<string> = []
  let at = 12
  while (at < query.length && query[at] !== 0) {
    const length = query[at]!
    if (length > 63 || at + 1 + length > query.length) return undefined
    labels.push(query.subarray(at + 1, at + 1 + length).toString("ascii"))
    at += length + 1
  }
  if (at + 5 > query.length) return undefined
  return { name: labels.join(".").toLowerCase(), type: query.readUInt16BE(at + 1), end: at + 5 }
}

export interface DnsServer {
  /** `127.0.0.1:port`, as `dns.Resolver.setServers` takes it. */
  readonly address: string
  readonly close: () => Promise<void>
}

/** Starts the server; `answer(name)` is the IPv4 address of `name`, or undefined for NXDOMAIN. */
export const startDnsServer = (answer: (name: string) => string | undefined): Promise<DnsServer> =>
  new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    socket.on("message", (query, peer) => {
      if (query.length < 12) return
      const q = question(query)
      if (q === undefined) return
      const address = answer(q.name)
      const a = address !== undefined && q.type === 1 // A; other types of a known name: NOERROR, no data
      const header = Buffer.alloc(12)
      query.copy(header, 0, 0, 2) // id
      header.writeUInt16BE(address === undefined ? 0x8183 : 0x8180, 2) // response, RD+RA, NXDOMAIN / NOERROR
      header.writeUInt16BE(1, 4)
      header.writeUInt16BE(a ? 1 : 0, 6)
      const record = a
        ? Buffer.concat([
            Buffer.from([0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04]), // TTL 300
            Buffer.from(address.split(".").map(Number))
          ])
        : Buffer.alloc(0)
      socket.send(Buffer.concat([header, query.subarray(12, q.end), record]), peer.port, peer.address)
    })
    socket.once("error", reject)
    socket.bind(0, "127.0.0.1", () => {
      socket.unref()
      resolve({
        address: `127.0.0.1:${socket.address().port}`,
        close: () => new Promise<void>((done) => socket.close(() => done()))
      })
    })
  })

interface Fresh {
  readonly createdAt: number
  readonly propagationMs: number
  systemMisses: number
  publicMisses: number
}

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/**
 * How tunnel names appear in DNS: the system resolver (asked by `routeHttpClient`) and the public
 * resolvers (the DNS server above). A name no tunnel ever had is unknown to both; a fresh one follows
 * `faults.freshTunnelDns` as it was when its tunnel was created.
 */
export class TunnelDns {
  readonly lookups: Array<Mutable<Testing.DnsLookupRecord>> = []
  private readonly names = new Map<string, Fresh>()
  private readonly hits = new Set<string>()

  constructor(readonly faults: Testing.Faults) {}

  created(name: string) {
    const fault = this.faults.freshTunnelDns
    this.names.set(name, {
      createdAt: Date.now(),
      propagationMs: fault.propagationMs,
      systemMisses: fault.systemMisses,
      publicMisses: fault.publicMisses
    })
  }

  /** Whether a lookup of `name` through `resolver` finds it now (each miss counts down that resolver's misses). */
  lookup(resolver: "system" | "public", name: string): boolean {
    const fresh = this.names.get(name)
    let found: boolean
    if (fresh === undefined) {
      found = resolver === "system" && !this.faults.unknownTunnelHostsDnsFail
    } else if (Date.now() < fresh.createdAt + fresh.propagationMs) {
      found = false
    } else if (resolver === "system" ? fresh.systemMisses > 0 : fresh.publicMisses > 0) {
      if (resolver === "system") fresh.systemMisses -= 1
      else fresh.publicMisses -= 1
      found = false
    } else {
      found = true
    }
    // Every request to a tunnel asks the system resolver: repeated hits are recorded once.
    const key = `${resolver} ${name}`
    if (!found || !this.hits.has(key)) this.lookups.push({ resolver, name, found })
    if (found) this.hits.add(key)
    else this.hits.delete(key)
    return found
  }
}
