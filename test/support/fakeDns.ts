/**
 * A tiny DNS server on loopback (UDP), answering A queries from a table, NXDOMAIN otherwise — so the
 * public-resolver fallback is tested without sending a packet off this machine. The Hub emulator's public
 * resolver is the same server (src/internal/testing/dns.ts) answering from its tunnels instead.
 */
import * as Effect from "effect/Effect"
import { startDnsServer } from "../../src/internal/testing/dns.js"

/** Starts the server; the scope's release closes it. Returns its `127.0.0.1:port` address and the names asked. */
export const fakeDns = (records: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const queries: Array<string> = []
      const dns = await startDnsServer((name) => {
        queries.push(name)
        return records[name]
      })
      return { server: dns.address, close: dns.close, queries }
    }),
    ({ close }) => Effect.promise(close)
  )
