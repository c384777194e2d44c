/**
 * A program using `SandboxPool` on the local provider, run by test/SandboxPool/weakIsolation.test.ts as
 * an unprivileged user, as a user runs it: its host servers are then not root. argv: `weak` (the pool
 * accepts weak isolation) or `strict`, the state directory, the temp directory. It leases two sandboxes
 * at once, runs a command and writes a file in each, and prints one JSON line: `{ leases: [{ id, uid,
 * home, pwd, read }], hosts, released }` (`released`: the slots leased once both scopes closed); or,
 * when the pool fails, `{ error: { tag, reason, option, message } }` (`option`: a StartError's `invalid.option`).
 */
import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as SandboxPool from "hf-sandbox/SandboxPool"

const [mode, stateDir, tempDir] = process.argv.slice(2)

const lease = Effect.gen(function* () {
  const sb = yield* SandboxPool.make()
  const run = yield* sb.exec("id -u; pwd")
  const [uid, pwd] = run.stdout.trim().split("\n")
  yield* sb.files.write("mine.txt", sb.id)
  return { id: sb.id, uid: Number(uid), home: sb.details.home, pwd, read: yield* sb.files.readText("mine.txt") }
})

const program = Effect.gen(function* () {
  const pool = yield* SandboxPool.SandboxPool
  // Both leases live at once: each scope ends after the other lease ran.
  const leases = yield* Effect.scoped(Effect.all([lease, lease], { concurrency: 2 }))
  const hosts = yield* pool.hosts
  return { leases, hosts: hosts.length, released: hosts.reduce((n, h) => n + h.leased, 0) }
})

const local = LocalSandbox.layer({ python: "/usr/bin/python3", stateDir, tempDir }).pipe(
  Layer.provideMerge(NodeContext.layer),
  Layer.merge(NodeHttpClient.layerUndici)
)

const result = await Effect.runPromise(
  program.pipe(
    Effect.provide(SandboxPool.layer({ weakIsolation: mode === "weak", sandboxesPerHost: 4 })),
    Effect.provide(local),
    Effect.catchAll((e) =>
      Effect.succeed({
        error: {
          tag: e._tag,
          reason: "reason" in e ? e.reason : undefined,
          option: "invalid" in e ? e.invalid?.option : undefined,
          message: e.message
        }
      })
    )
  )
)
console.log(JSON.stringify(result))
