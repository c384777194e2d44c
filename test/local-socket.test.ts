/**
 * The local provider's Unix-domain socket: the server listens on it (0600, in a 0700 directory beside its
 * working directory) as well as on loopback TCP, the client's requests go over it, and it is removed
 * however the sandbox ends: its scope closing, `kill` of a detached one, a server killed with SIGKILL.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import { assertGone, eventually, localLayer } from "./support/local.js"

let root: string
let stateDir: string
let tempDir: string

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-socket-test-"))
  stateDir = path.join(root, "state")
  tempDir = path.join(root, "tmp")
  fs.mkdirSync(tempDir)
})

afterAll(async () => {
  for (const info of await Effect.runPromise(LocalSandbox.list({ stateDir, tempDir }))) {
    await Effect.runPromise(LocalSandbox.kill(info.id, { stateDir, stopTimeout: "1 second" }))
  }
  fs.rmSync(root, { recursive: true, force: true })
})

const live = () => localLayer({ stateDir, tempDir })

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

/** The socket a sandbox's server listens on, with the modes of the socket and of its directory. */
const socketOf = (sb: Sandbox.Sandbox) => {
  const socket = sb.details.socket
  assert.isString(socket, "the server announced a Unix-domain socket")
  const file = socket as string
  const stat = fs.statSync(file)
  return {
    file,
    dir: path.dirname(file),
    isSocket: stat.isSocket(),
    mode: stat.mode & 0o777,
    dirMode: fs.statSync(path.dirname(file)).mode & 0o777
  }
}

/**
 * The connections to `file` that the server accepted, from /proc/net/unix (Linux): an accepted socket
 * carries the listener's path, a client's does not. The listener itself is the one more.
 */
const endsAt = (file: string) =>
  fs
    .readFileSync("/proc/net/unix", "utf8")
    .split("\n")
    .filter((line) => line.endsWith(` ${file}`)).length

describe("the local server's Unix-domain socket", () => {
  it.live("an owned sandbox: 0600 in a 0700 directory, the requests go over it, removed when the scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const sb = yield* Sandbox.make().pipe(Scope.extend(scope))
      const socket = socketOf(sb)
      assert.isTrue(socket.isSocket)
      assert.strictEqual(socket.mode, 0o600)
      assert.strictEqual(socket.dirMode, 0o700)
      assert.strictEqual(socket.dir, `${sb.details.workdir as string}.sock`)
      // A command and 3 MiB of streamed stdin, both over the socket.
      const data = randomBytes(3 * 1024 * 1024)
      const result = yield* sb.exec(["sha256sum"], { stdin: Stream.make(data.subarray(0, 1000), data.subarray(1000)) })
      assert.strictEqual(result.stdout.split(" ")[0], sha256(data))
      if (process.platform === "linux") {
        // The listener and at least one connection it accepted from this client (kept alive meanwhile).
        assert.isAtLeast(endsAt(socket.file), 2)
      }
      yield* Scope.close(scope, Exit.void)
      yield* assertGone([sb.details.pid as number])
      assert.isFalse(fs.existsSync(socket.dir), "the socket's directory is removed")
    }).pipe(Effect.provide(live()))
  )

  it.live("a detached sandbox: its state file records the socket, connect uses it, kill removes it", () =>
    Effect.gen(function* () {
      const made = yield* Effect.scoped(
        Effect.map(Sandbox.make({ detach: true }), (sb) => ({ id: sb.id, socket: socketOf(sb) }))
      )
      assert.strictEqual(made.socket.mode, 0o600)
      assert.strictEqual(made.socket.dirMode, 0o700)
      const state = JSON.parse(fs.readFileSync(path.join(stateDir, `${made.id}.json`), "utf8"))
      assert.strictEqual(state.socket, made.socket.file)
      const out = yield* Effect.scoped(
        Effect.flatMap(Sandbox.connect(made.id), (sb) => {
          assert.strictEqual(sb.details.socket, made.socket.file)
          return sb.exec(["sh", "-c", "echo attached"])
        })
      )
      assert.strictEqual(out.stdout, "attached\n")
      yield* LocalSandbox.kill(made.id, { stateDir })
      assert.isFalse(fs.existsSync(made.socket.dir), "the socket's directory is removed")
    }).pipe(Effect.provide(live()))
  )

  it.live.skipIf(process.platform !== "linux")("a server killed with SIGKILL: its supervisor removes the socket", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const sb = yield* Sandbox.make().pipe(Scope.extend(scope))
      const socket = socketOf(sb)
      process.kill(sb.details.serverPid as number, "SIGKILL")
      yield* eventually(
        Effect.filterOrFail(
          Effect.sync(() => fs.existsSync(socket.dir)),
          (exists) => !exists,
          () => new Error(`${socket.dir} still exists`)
        )
      )
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(live()))
  )
})
