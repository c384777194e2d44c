/**
 * The provider seam: a provider the library has never heard of is made, listed, attached to, read and
 * killed through `Sandbox` and the `SandboxProvider` accessors alone, and a provider without the by-id
 * operations is refused by name.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as SandboxProvider from "hf-sandbox/SandboxProvider"

// Made at load, so that the providers below can be built from them.
const root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-seam-test-"))
const stateDir = path.join(root, "state")
const tempDir = path.join(root, "tmp")
fs.mkdirSync(tempDir)

/**
 * A third provider, written against the seam only: the local provider under another name, whose ids
 * are `box-…`. Nothing upstairs knows it.
 */
const boxProvider = () =>
  Effect.map(LocalSandbox.make({ stateDir, tempDir }), (inner): SandboxProvider.Service => {
    const outer = (id: string) => `box-${id}`
    const innerId = (id: string) => id.replace(/^box-/, "")
    const rename = (endpoint: SandboxProvider.Endpoint): SandboxProvider.Endpoint => ({
      ...endpoint,
      id: outer(endpoint.id),
      provider: "box"
    })
    return {
      name: "box",
      provision: (spec) => Effect.map(inner.provision(spec), rename),
      connect: (id, spec) => Effect.map(inner.connect!(innerId(id), spec), rename),
      list: (options) =>
        Effect.map(inner.list!(options), (listing) => ({
          columns: ["ID", "CREATED"],
          rows: listing.rows.map((row) => ({
            id: outer(row.id),
            provider: "box",
            createdAt: row.createdAt,
            cells: [outer(row.id), row.createdAt ?? "-"],
            record: { id: outer(row.id), provider: "box" }
          }))
        })),
      kill: (id) => inner.kill!(innerId(id)),
      logs: (id, options) => inner.logs!(innerId(id), options)
    }
  })

const boxLayer = () =>
  Layer.effect(SandboxProvider.SandboxProvider, boxProvider()).pipe(
    Layer.provideMerge(NodeContext.layer),
    Layer.merge(NodeHttpClient.layerUndici)
  )

// Whatever a failed test left running is stopped through the seam itself, with its files.
afterAll(() =>
  Effect.runPromise(
    SandboxProvider.list().pipe(
      Effect.flatMap((listing) => Effect.forEach(listing.rows, (row) => SandboxProvider.kill(row.id))),
      Effect.provide(boxLayer()),
      Effect.ensuring(Effect.sync(() => fs.rmSync(root, { recursive: true, force: true })))
    )
  )
)

describe("SandboxProvider: a third provider through the seam", () => {
  it.live("is made, listed, attached to, read and killed with no change upstairs", () =>
    Effect.gen(function* () {
      const id = yield* Effect.scoped(Effect.map(Sandbox.make({ detach: true }), (sb) => sb.id))
      assert.match(id, /^box-local-/)

      const listed = yield* SandboxProvider.list()
      assert.deepStrictEqual(listed.columns, ["ID", "CREATED"])
      const row = listed.rows.find((r) => r.id === id)
      assert.strictEqual(row?.provider, "box")
      assert.deepStrictEqual(row?.record, { id, provider: "box" })

      const said = yield* Effect.scoped(
        Effect.flatMap(Sandbox.connect(id), (sb) => {
          assert.strictEqual(sb.provider, "box")
          return sb.exec(["echo", "through the seam"])
        })
      )
      assert.strictEqual(said.stdout, "through the seam\n")

      const log = yield* Stream.runCollect(SandboxProvider.logs(id))
      assert.isAbove(log.length, 0)

      yield* SandboxProvider.kill(id)
      const after = yield* SandboxProvider.list()
      assert.isUndefined(after.rows.find((r) => r.id === id))
    }).pipe(Effect.provide(boxLayer()))
  )

  it.effect("a provider without the by-id operations is refused, naming it and the operation", () =>
    Effect.gen(function* () {
      const bare = Layer.succeed(SandboxProvider.SandboxProvider, {
        name: "bare",
        provision: () => Effect.die("not used")
      })
      const listing = yield* Effect.flip(Effect.provide(SandboxProvider.list(), bare))
      assert.strictEqual(listing._tag, "StartError")
      assert.strictEqual(
        listing.message,
        "Could not list sandboxes on the bare provider (InvalidOptions): the bare provider does not support listing sandboxes: use a provider that does, or its own API"
      )
      const killing = yield* Effect.flip(Effect.provide(SandboxProvider.kill("x-1"), bare))
      assert.include(killing.message, "Could not kill sandbox x-1 on the bare provider")
      const reading = yield* Effect.flip(Stream.runDrain(SandboxProvider.logs("x-1")).pipe(Effect.provide(bare)))
      assert.include(reading.message, "Could not read the log of sandbox x-1 on the bare provider")
      // Attaching says the same through the seam's accessor and through `Sandbox.connect`: the provider
      // cannot do it (a choice to change, InvalidOptions), not that a sandbox is not ready yet.
      const attaching = [
        yield* Effect.flip(
          SandboxProvider.connect("x-1", {} as SandboxProvider.Spec).pipe(Effect.scoped, Effect.provide(bare))
        ),
        yield* Effect.flip(
          Sandbox.connect("x-1").pipe(Effect.scoped, Effect.provide(Layer.merge(bare, NodeHttpClient.layerUndici)))
        )
      ]
      for (const error of attaching) {
        assert.strictEqual(error._tag === "StartError" && error.reason, "InvalidOptions")
        assert.strictEqual(
          error.message,
          "Could not attach to sandbox x-1 on the bare provider (InvalidOptions): the bare provider does not support attaching to sandboxes by id: use a provider that does, or its own API"
        )
      }
    })
  )
})
