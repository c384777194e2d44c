/**
 * A tiny DNS server on loopback (UDP), answering A queries from a table, NXDOMAIN otherwise — so the
 * public-resolver fallback is tested without sending a packet off this machine.
 */
import * as dgram from "node:dgram"
import * as Effect from "effect/Effect"

const encodeName = (buffer: Buffer, offset: number): { name: string; end: number } => {
  const labels: Array<string> = []
  let at = offset
  while (buffer[at] !== 0) {
    const length = buffer[at]!
    labels.push(buffer.subarray(at + 1, at + 1 + length).toString("ascii"))
    at += length + 1
  }
  return { name: labels.join("."), end: at + 1 }
}

/** Starts the server; the scope's release closes it. Returns its `127.0.0.1:port` address. */
export const fakeDns = (records: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: string; readonly socket: dgram.Socket; readonly queries: Array<string> }>(
      (resume) => {
        const socket = dgram.createSocket("udp4")
        const queries: Array<string> = []
        socket.on("message", (query, peer) => {
          const { name, end } = encodeName(query, 12)
          queries.push(name)
          const address = records[name.toLowerCase()]
          const question = query.subarray(12, end + 4)
          const header = Buffer.alloc(12)
          query.copy(header, 0, 0, 2) // id
          header.writeUInt16BE(address ? 0x8180 : 0x8183, 2) // response, recursion available, NOERROR / NXDOMAIN
          header.writeUInt16BE(1, 4)
          header.writeUInt16BE(address ? 1 : 0, 6)
          const answer = address
            ? Buffer.concat([
                Buffer.from([0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04]),
                Buffer.from(address.split(".").map(Number))
              ])
            : Buffer.alloc(0)
          socket.send(Buffer.concat([header, question, answer]), peer.port, peer.address)
        })
        socket.bind(0, "127.0.0.1", () =>
          resume(Effect.succeed({ server: `127.0.0.1:${socket.address().port}`, socket, queries }))
        )
      }
    ),
    ({ socket }) => Effect.sync(() => socket.close())
  )
