/**
 * `SandboxPool` end to end on the local provider: real host servers (`SBX_HOST_MODE=1`) on this machine.
 * As root the hosts isolate their sandboxes by uid; otherwise the pool asks for weak isolation. The
 * pool's logic alone (slots, boots, failover) is in test/SandboxPool/slots.test.ts over fake hosts.
 */
import * as fs from "node:fs"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxPool from "hf-sandbox/SandboxPool"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Adopt from "../src/internal/pool/adopt.js"
import { assertGone, eventually, localLayer, useLocalDirs } from "./support/local.js"

const dirs = useLocalDirs("sbx-pool-test-")
const weakIsolation = process.getuid?.() !== 0

/** The local provider on the file's directories. */
const Env = Layer.suspend(() => localLayer({ stateDir: dirs.stateDir, tempDir: dirs.tempDir }))

/** An HTTP server on the sandbox's port socket, as a pooled sandbox serves a port (HF's convention). */
const UNIX_SERVER = `
import http.server, os, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + self.path).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def address_string(self):
        return "unix"
socketserver.UnixStreamServer(os.path.join(os.environ["SBX_PROXY_DIR"], "8000.sock"), H).serve_forever()
`

const poolLayer = (options: SandboxPool.LayerOptions = {}) =>
  SandboxPool.layer({ weakIsolation, ...options }).pipe(Layer.provideMerge(Env))

describe("SandboxPool on the local provider", { timeout: 120_000 }, () => {
  // One pool (one host) for the tests that need no settings of their own: each pool boots a host.
  layer(poolLayer(), { excludeTestServices: true, timeout: "120 seconds" })("a shared pool", (it) => {
    it.effect("a lease runs commands and files in its own home, and its release frees the slot", () =>
      Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        const id = yield* Effect.gen(function* () {
          const sb = yield* SandboxPool.make({ env: { GREETING: "hi" } })
          assert.match(sb.id, /^local-[0-9a-f]+\.[0-9a-f]{16}$/)
          const result = yield* sb.exec('echo "$GREETING from $PWD"; echo "$HOME"')
          assert.strictEqual(result.exitCode, 0)
          const [line, home] = result.stdout.trimEnd().split("\n")
          assert.strictEqual(line, `hi from ${home}`)
          yield* sb.files.write("notes/a.txt", "pooled")
          assert.strictEqual(yield* sb.files.readText("notes/a.txt"), "pooled")
          assert.strictEqual((yield* sb.exec("cat notes/a.txt")).stdout, "pooled")
          assert.strictEqual((yield* pool.hosts)[0]!.leased, 1)
          const [sample] = yield* Stream.runCollect(Stream.take(sb.metrics({ interval: "100 millis" }), 1))
          assert.isAbove(sample!.memoryTotalBytes, 0)
          assert.strictEqual(sb.details.host, sb.id.split(".")[0])
          return sb.id
        }).pipe(Effect.scoped)
        assert.strictEqual((yield* pool.hosts)[0]!.leased, 0)
        const gone = yield* Effect.flip(Effect.scoped(Sandbox.connect(id)))
        assert.strictEqual(gone.reason, "NotFound")
      })
    )

    it.effect("a server on $SBX_PROXY_DIR/<port>.sock is reached through the host's port proxy", () =>
      Effect.gen(function* () {
        const sb = yield* SandboxPool.make()
        const server = yield* sb.spawn(["python3", "-c", UNIX_SERVER])
        yield* sb.waitForPort(8000, { process: server })
        const exposed = yield* sb.expose(8000)
        assert.strictEqual(exposed.via, "server")
        assert.include(exposed.url, `/v1/sandboxes/${sb.id.split(".")[1]}/proxy/8000`)
        const http = yield* HttpClient.HttpClient
        const response = yield* http.execute(
          HttpClientRequest.get(`${exposed.url}/hello`).pipe(HttpClientRequest.setHeaders(exposed.headers))
        )
        assert.strictEqual(yield* response.text, "hello from /hello")
      }).pipe(Effect.scoped)
    )

    it.effect("Sandbox.connect by pooled id from a second client: not owned; terminate deletes it", () =>
      Effect.gen(function* () {
        const sb = yield* SandboxPool.make()
        yield* sb.files.write("mark", "one")
        // Another client: a provider of its own over the same state directory.
        const other = Effect.scoped(
          Effect.gen(function* () {
            const again = yield* Sandbox.connect(sb.id)
            return yield* again.files.readText("mark")
          })
        ).pipe(Effect.provide(Layer.fresh(Env)))
        assert.strictEqual(yield* other, "one")
        assert.strictEqual((yield* sb.exec("cat mark")).stdout, "one", "a connect's close leaves it running")
        yield* Effect.scoped(Effect.flatMap(Sandbox.connect(sb.id), (again) => again.terminate)).pipe(
          Effect.provide(Layer.fresh(Env))
        )
        const error = yield* Effect.flip(sb.exec("true"))
        assert.notStrictEqual(error._tag, "TerminatedError")
      }).pipe(Effect.scoped)
    )
  })

  // The counts of the bench (100 and 1,000 leases at 50 per host, bench/pool.ts) are not needed
  // here: 24 leases at 10 per host ask for the same three hosts, the third one part-filled, all at once.
  it.live("24 leases at once over 10 per host boot exactly 3 hosts; with maxHosts 2 they wait their turn", () =>
    Effect.gen(function* () {
      const leases = 24
      const run = (all: Deferred.Deferred<void>, count: { n: number }) => () =>
        Effect.gen(function* () {
          const sb = yield* SandboxPool.make()
          const out = yield* sb.exec(["echo", "ok"])
          if (++count.n === leases) yield* Deferred.succeed(all, undefined)
          yield* Deferred.await(all)
          return { id: sb.id, out: out.stdout }
        }).pipe(Effect.scoped)
      const held = yield* Effect.gen(function* () {
        const all = yield* Deferred.make<void>()
        return yield* Effect.forEach(Array.from({ length: leases }), run(all, { n: 0 }), { concurrency: leases })
      }).pipe(Effect.provide(poolLayer({ sandboxesPerHost: 10 })))
      assert.isTrue(held.every((r) => r.out === "ok\n"))
      assert.strictEqual(new Set(held.map((r) => r.id.split(".")[0])).size, 3)

      // 24 at once for 20 slots: 4 wait on the pool's semaphore for a slot another frees.
      const bounded = yield* Effect.forEach(
        Array.from({ length: leases }),
        () => Effect.scoped(Effect.flatMap(SandboxPool.make(), (sb) => Effect.as(sb.exec("true"), sb.id))),
        { concurrency: leases }
      ).pipe(Effect.provide(poolLayer({ sandboxesPerHost: 10, maxHosts: 2 })))
      assert.strictEqual(bounded.length, leases)
      assert.strictEqual(new Set(bounded.map((id) => id.split(".")[0])).size, 2)
    })
  )

  it.live("no free slot within acquireTimeout: a typed error", () =>
    Effect.gen(function* () {
      yield* SandboxPool.make()
      const error = yield* Effect.flip(Effect.scoped(SandboxPool.make()))
      assert.strictEqual(error._tag, "PoolError")
      assert.strictEqual(error._tag === "PoolError" ? error.reason : undefined, "AcquireTimeout")
    }).pipe(
      Effect.scoped,
      Effect.provide(poolLayer({ sandboxesPerHost: 1, maxHosts: 1, acquireTimeout: "500 millis" }))
    )
  )

  it.live("a host killed mid-run: its leases fail naming it, and the pool replaces it", () =>
    Effect.gen(function* () {
      const pool = yield* SandboxPool.SandboxPool
      const sb = yield* SandboxPool.make()
      const [host] = yield* pool.hosts
      process.kill(host!.details.serverPid as number, "SIGKILL")
      const error = yield* Effect.flip(sb.exec("echo never"))
      assert.strictEqual(error._tag, "ConnectionLostError")
      assert.strictEqual(error._tag === "ConnectionLostError" ? error.host : undefined, host!.id)
      assert.include(error.message, host!.id)
      yield* eventually(
        Effect.flatMap(pool.hosts, (hosts) =>
          hosts.length === 1 && hosts[0]!.id !== host!.id ? Effect.void : Effect.fail("not replaced yet")
        ),
        "30 seconds"
      )
      const next = yield* SandboxPool.make()
      assert.notStrictEqual(next.id.split(".")[0], host!.id)
      assert.strictEqual((yield* next.exec("echo again")).stdout, "again\n")
    }).pipe(Effect.scoped, Effect.provide(poolLayer()))
  )

  it.live("closing the pool terminates every host: no process, no directory left", () =>
    Effect.gen(function* () {
      const hosts = yield* Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        const sb = yield* SandboxPool.make()
        yield* sb.spawn("sleep 300")
        return yield* pool.hosts
      }).pipe(Effect.scoped, Effect.provide(poolLayer({ warmUp: 2 })))
      assert.strictEqual(hosts.length, 2)
      yield* assertGone(hosts.flatMap((h) => [h.details.pid as number, h.details.serverPid as number]))
      for (const host of hosts) assert.isFalse(fs.existsSync(host.details.workdir as string))
    })
  )

  it.live("by pooled id through the provider: its log (the host's lines about it), its metrics, its kill", () =>
    // Detached hosts: the local provider keeps a log by id (a file) for those; an owned one's is in memory.
    Effect.gen(function* () {
      const sb = yield* SandboxPool.make()
      const other = yield* SandboxPool.make()
      const [hostId, localId] = sb.id.split(".")
      const lines = (id: string, options: SandboxProvider.LogOptions = {}) =>
        Effect.map(Stream.runCollect(SandboxProvider.logs(id, options)), (chunk) => Array.from(chunk))
      yield* sb.exec("echo in-it")
      yield* other.exec("echo in-the-other")
      const own = yield* lines(sb.id)
      for (const line of own) assert.include(line, localId!, "only the lines about it")
      assert.isTrue(
        own.some((line) => line.includes("created")),
        own.join("\n")
      )
      assert.isTrue(
        own.some((line) => line.includes(`sandbox ${localId}: command started`) && line.includes("echo in-it")),
        own.join("\n")
      )
      assert.deepStrictEqual(Array.from(yield* Stream.runCollect(sb.logs())), own, "sb.logs() is the same log")
      const [sample] = yield* Stream.runCollect(
        Stream.take(SandboxProvider.metrics(sb.id, { interval: "100 millis" }), 1)
      )
      assert.isAbove(sample!.memoryTotalBytes, 0)
      // Followed, its log ends with its delete.
      const followed = yield* Effect.fork(lines(sb.id, { follow: true, tail: 1 }))
      yield* SandboxProvider.kill(sb.id)
      const last = yield* followed.await.pipe(Effect.flatten)
      assert.include(last.at(-1), `sandbox ${localId} deleted`)
      const error = yield* Effect.flip(sb.exec("true"))
      assert.notStrictEqual(error._tag, "TerminatedError")
      assert.strictEqual((yield* other.exec("echo still")).stdout, "still\n", "the host keeps running")
      const again = yield* Effect.flip(SandboxProvider.kill(sb.id))
      assert.strictEqual(again._tag === "StartError" ? again.reason : undefined, "NotFound")
      assert.include(again.message, hostId!)
    }).pipe(
      Effect.scoped,
      Effect.provide(SandboxPool.layer({ name: "byid", detach: true, weakIsolation })),
      Effect.ensuring(Effect.ignore(SandboxProvider.sweep({ labels: { "hf-sandbox-pool": "byid" } }))),
      Effect.provide(Env)
    )
  )

  it.live("a pool adopts the running hosts of its name: they count towards warmUp, take leases, and outlive it", () =>
    Effect.gen(function* () {
      yield* Effect.provide(Effect.void, SandboxPool.layer({ name: "adopted", detach: true, weakIsolation }))
      const [host] = yield* Adopt.hostsOf("adopted")
      // Another client's sandbox on it: a slot the adopting pool must count as taken.
      const theirs = yield* Effect.scoped(Effect.map(Adopt.createOnPool("adopted"), (sb) => sb.id))
      const seen = yield* Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        const hosts = yield* pool.hosts
        assert.deepStrictEqual(
          hosts.map((h) => [h.id, h.leased]),
          [[host!.id, 1]],
          "adopted, counting its sandbox; no host booted"
        )
        const sb = yield* SandboxPool.make()
        assert.strictEqual(sb.id.split(".")[0], host!.id)
        return (yield* pool.hosts).length
      }).pipe(Effect.scoped, Effect.provide(SandboxPool.layer({ name: "adopted", weakIsolation })))
      assert.strictEqual(seen, 1)
      assert.deepStrictEqual(
        (yield* Adopt.hostsOf("adopted")).map((h) => h.id),
        [host!.id],
        "its close left the host it did not start"
      )
      yield* Effect.scoped(Effect.flatMap(Sandbox.connect(theirs), (sb) => sb.exec("true")))
      const own = yield* Effect.gen(function* () {
        const pool = yield* SandboxPool.SandboxPool
        return (yield* pool.hosts).map((h) => h.id)
      }).pipe(Effect.scoped, Effect.provide(SandboxPool.layer({ name: "adopted", adopt: false, weakIsolation })))
      assert.notInclude(own, host!.id, "adopt: false starts its own")
    }).pipe(
      Effect.ensuring(Effect.ignore(SandboxProvider.sweep({ labels: { "hf-sandbox-pool": "adopted" } }))),
      Effect.provide(Env)
    )
  )

  it.live("a detached pool's hosts outlive it: another client makes sandboxes there by the pool's name", () =>
    Effect.gen(function* () {
      yield* Effect.provide(Effect.void, SandboxPool.layer({ name: "kept", detach: true, weakIsolation }))
      const [host] = yield* Adopt.hostsOf("kept")
      assert.isDefined(host)
      const id = yield* Effect.scoped(
        Effect.gen(function* () {
          const sb = yield* Adopt.createOnPool("kept", { env: { N: "7" } })
          assert.strictEqual(sb.id.split(".")[0], host!.id)
          assert.strictEqual((yield* sb.exec('echo "$N"')).stdout, "7\n")
          return sb.id
        })
      )
      // Not owned: its scope's close left it; terminate deletes it.
      yield* Effect.scoped(Effect.flatMap(Sandbox.connect(id), (sb) => sb.terminate))
      const gone = yield* Effect.flip(Effect.scoped(Sandbox.connect(id)))
      assert.strictEqual(gone.reason, "NotFound")
      const none = yield* Effect.flip(Effect.scoped(Adopt.createOnPool("no-such-pool")))
      assert.strictEqual(none._tag === "StartError" ? none.reason : undefined, "NotFound")
      yield* SandboxProvider.sweep({ labels: { "hf-sandbox-pool": "kept" } })
      assert.deepStrictEqual(yield* Adopt.hostsOf("kept"), [])
    }).pipe(Effect.provide(Env))
  )
})
