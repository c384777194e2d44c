/**
 * A pooled sandbox's log: its host's log (the host server's output, as its provider keeps it), filtered to
 * the lines that name the sandbox. A host server logs each of its sandboxes by its local id — made,
 * evicted when idle, deleted, processes that outlived a delete (rpc-server/sbx_server/host.py,
 * routes_host.py) — so that is what a pooled sandbox's log holds; a dedicated sandbox's log does not
 * hold its commands' output either. With `follow` it ends with the sandbox's delete line, else when the
 * host's log ends (the host ended; a host that logs no delete line, as HF's sandbox-server, follows on).
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as SandboxProvider from "../../SandboxProvider.js"

/** The host's log, as its provider reads it. */
export type HostLogs<E, R> = (options: SandboxProvider.LogOptions) => Stream.Stream<string, E, R>

/** The host server's last line about a sandbox (host.py `delete`). */
const deletedLine = (localId: string) => `sandbox ${localId} deleted`

/** What the host's log so far says of the sandbox: how many lines the log had, its own last ones. */
interface SoFar {
  readonly lines: number
  readonly own: Chunk.Chunk<string>
  readonly deleted: boolean
}

/** The log of sandbox `localId`, from its host's log. */
export const of = <E, R>(
  hostLogs: HostLogs<E, R>,
  localId: string,
  options: SandboxProvider.LogOptions
): Stream.Stream<string, E, R> => {
  const mentions = (line: string) => line.includes(localId)
  const ended = (line: string) => line.includes(deletedLine(localId))
  const follow = options.follow ?? false
  if (options.tail === undefined) {
    const own = Stream.filter(hostLogs({ follow }), mentions)
    return follow ? Stream.takeUntil(own, ended) : own
  }
  const tail = options.tail
  // The last `tail` of its lines so far need the host's whole log so far (the host's own tail would count
  // every sandbox's lines); following then goes on after the lines already read, the log replayed from
  // its start as providers replay it.
  const soFar = Stream.runFold(
    hostLogs({}),
    { lines: 0, own: Chunk.empty<string>(), deleted: false } as SoFar,
    (acc, line): SoFar =>
      mentions(line)
        ? { lines: acc.lines + 1, own: Chunk.takeRight(Chunk.append(acc.own, line), tail), deleted: ended(line) }
        : { ...acc, lines: acc.lines + 1 }
  )
  return Stream.unwrap(
    Effect.map(soFar, ({ deleted, lines, own }) => {
      const last = Stream.fromChunk(own)
      if (!follow || deleted) return last
      const next = Stream.filter(Stream.drop(hostLogs({ follow: true }), lines), mentions)
      return Stream.concat(last, Stream.takeUntil(next, ended))
    })
  )
}
