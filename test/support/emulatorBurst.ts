/**
 * A burst of connections to the Hub emulator, run by test/internal/testing/emulator.test.ts in a network
 * namespace of its own (so the kernel's counters are this program's alone). It starts an emulator, opens
 * `argv[2]` connections to it in one tick (as a client with that many requests in flight does, before the
 * shared event loop can accept any), sends a request on each, waits for every answer, and prints one JSON
 * line: how many were answered, and how many handshakes the kernel dropped for a full accept queue
 * (TcpExt ListenOverflows).
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as Effect from "effect/Effect"
import * as Testing from "hf-sandbox/testing"

const count = Number(process.argv[2] ?? 1000)

/** TcpExt ListenOverflows of this network namespace. */
const listenOverflows = () => {
  const [names, values] = fs
    .readFileSync("/proc/net/netstat", "utf8")
    .split("\n")
    .filter((line) => line.startsWith("TcpExt:"))
    .map((line) => line.split(/\s+/))
  return Number(values![names!.indexOf("ListenOverflows")])
}

/** One request on a fresh connection: resolves when its answer's head arrived. */
const ask = (port: number) =>
  new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.on("error", reject)
    socket.once("data", () => {
      socket.destroy()
      resolve()
    })
    socket.write("GET /__emulator/none HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
  })

await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const emulator = yield* Testing.make()
      const port = Number(new URL(emulator.url).port)
      const before = listenOverflows()
      // All connects in this one tick: the loop accepts none of them until it ends.
      const asked = Array.from({ length: count }, () => ask(port))
      yield* Effect.promise(() => Promise.all(asked))
      console.log(JSON.stringify({ answered: asked.length, listenOverflows: listenOverflows() - before }))
    })
  )
)
