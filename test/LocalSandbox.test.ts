/**
 * The local provider's configuration read through `Config`: the state directory's default comes from the
 * `ConfigProvider` of the context (not from `process.env` directly), and `layerConfig` takes each option
 * as a `Config`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as LocalSandbox from "hf-sandbox/LocalSandbox"
import * as Sandbox from "hf-sandbox/Sandbox"
import * as StateHome from "../src/internal/stateHome.js"
import { eventually, localLayer } from "./support/local.js"

let root: string

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sbx-local-config-test-"))
})

afterAll(async () => {
  // Whatever a failed test left running is stopped, with its files.
  for (const stateDir of [path.join(root, "from-env"), path.join(root, "from-config")]) {
    for (const info of await Effect.runPromise(LocalSandbox.list({ stateDir }))) {
      await Effect.runPromise(LocalSandbox.kill(info.id, { stateDir, stopTimeout: "1 second" }))
    }
  }
  fs.rmSync(root, { recursive: true, force: true })
})

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("the state directory", () => {
  it.effect(
    "comes from HF_SANDBOX_STATE_DIR, else XDG_STATE_HOME, else the home directory, as the ConfigProvider says",
    () =>
      Effect.gen(function* () {
        const read = (env: Record<string, string>) => StateHome.localDirectoryConfig.pipe(withEnv(env))
        assert.strictEqual(yield* read({ HF_SANDBOX_STATE_DIR: "/srv/state" }), "/srv/state")
        assert.strictEqual(yield* read({ HF_SANDBOX_STATE_DIR: "rel" }), path.resolve("rel"))
        assert.strictEqual(
          yield* read({ HF_SANDBOX_STATE_DIR: "", XDG_STATE_HOME: "/xdg" }),
          path.join("/xdg", "hf-sandbox", "local")
        )
        // A relative XDG_STATE_HOME is invalid by the XDG spec and ignored.
        assert.strictEqual(
          yield* read({ XDG_STATE_HOME: "xdg" }),
          path.join(os.homedir(), ".local", "state", "hf-sandbox", "local")
        )
        assert.strictEqual(
          StateHome.namespaceCacheDirectory({ XDG_STATE_HOME: "/xdg" }),
          path.join("/xdg", "hf-sandbox", "namespaces")
        )
      })
  )
})

describe("LocalSandbox.layerConfig", () => {
  it.live("takes its options as Configs, and a detached sandbox's state goes where the ConfigProvider says", () =>
    Effect.gen(function* () {
      const fromEnv = path.join(root, "from-env")
      const fromConfig = path.join(root, "from-config")
      const provider = (config: Parameters<typeof LocalSandbox.layerConfig>[0]) =>
        LocalSandbox.layerConfig(config).pipe(
          Layer.provideMerge(NodeContext.layer),
          Layer.merge(NodeHttpClient.layerUndici)
        )
      const detach = (config: Parameters<typeof LocalSandbox.layerConfig>[0]) =>
        Sandbox.make({ detach: true }).pipe(
          Effect.map((sb) => sb.id),
          Effect.scoped,
          Effect.provide(provider(config))
        )
      const env = withEnv({ HF_SANDBOX_STATE_DIR: fromEnv, MY_STATE_DIR: fromConfig })

      const first = yield* detach({}).pipe(env)
      assert.isTrue(fs.existsSync(path.join(fromEnv, `${first}.json`)))
      assert.deepStrictEqual(
        (yield* LocalSandbox.list().pipe(env)).map((s) => s.id),
        [first]
      )
      yield* LocalSandbox.kill(first, { stopTimeout: "1 second" }).pipe(env)
      assert.isFalse(fs.existsSync(path.join(fromEnv, `${first}.json`)))

      const second = yield* detach({ stateDir: Config.string("MY_STATE_DIR") }).pipe(env)
      assert.isTrue(fs.existsSync(path.join(fromConfig, `${second}.json`)))
      yield* LocalSandbox.kill(second, { stateDir: fromConfig, stopTimeout: "1 second" })
      assert.deepStrictEqual(yield* LocalSandbox.list({ stateDir: fromConfig }), [])
    })
  )
})

describe("the interpreter lookup", () => {
  it.live("a start interrupted while the interpreter is looked up leaves the next start unharmed", () =>
    Effect.gen(function* () {
      // An interpreter whose lookup takes a moment and says when it has begun; the server itself runs
      // on the interpreter the lookup finds.
      const asked = path.join(root, "lookup-asked")
      const python = path.join(root, "slow-python")
      fs.writeFileSync(python, `#!/bin/sh\ntouch '${asked}'\nsleep 1\nexec python3 "$@"\n`, { mode: 0o755 })
      const first = yield* Effect.fork(Sandbox.make().pipe(Effect.scoped))
      yield* eventually(Effect.sync(() => fs.existsSync(asked)).pipe(Effect.filterOrFail((found) => found)))
      yield* Fiber.interrupt(first)
      const sb = yield* Sandbox.make()
      assert.strictEqual((yield* sb.exec(["echo", "ok"])).stdout, "ok\n")
    }).pipe(Effect.scoped, Effect.provide(localLayer({ python: path.join(root, "slow-python") })))
  )
})
