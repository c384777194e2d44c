/**
 * The HF Jobs provider's configuration, read once (src/internal/hfJobs/config.ts): the options win, what
 * they leave out comes from the environment given as a `ConfigProvider`, then from the defaults; a bad
 * variable of the token discovery is kept for the first operation that needs a token, not thrown at
 * construction.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as HfConfig from "../../../src/internal/hfJobs/config.js"

const withEnv =
  (env: Record<string, string>) =>
  <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.withConfigProvider(effect, ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("HF Jobs configuration", () => {
  it.effect("the defaults fill what the options and the environment leave out", () =>
    Effect.gen(function* () {
      const resolved = yield* HfConfig.resolve({}).pipe(withEnv({ HOME: "/home/alice" }))
      assert.strictEqual(resolved.endpoint, HfConfig.defaults.endpoint)
      assert.strictEqual(resolved.jobsDomain, HfConfig.defaults.jobsDomain)
      assert.deepStrictEqual(resolved.publicDns, HfConfig.defaults.publicDns)
      assert.strictEqual(resolved.namespace, undefined)
      const env = Either.getOrThrow(resolved.discovery)
      assert.strictEqual(env.tokenPath, "/home/alice/.cache/huggingface/token")
      assert.strictEqual(env.clientId, HfConfig.defaults.oauthClientId)
    })
  )

  it.effect("an option comes before HF_ENDPOINT, which comes before the default; blank counts as unset", () =>
    Effect.gen(function* () {
      const fromEnv = yield* HfConfig.resolve({}).pipe(withEnv({ HF_ENDPOINT: "https://hub.example//" }))
      assert.strictEqual(fromEnv.endpoint, "https://hub.example")
      const fromOption = yield* HfConfig.resolve({ endpoint: "http://127.0.0.1:9/" }).pipe(
        withEnv({ HF_ENDPOINT: "https://hub.example" })
      )
      assert.strictEqual(fromOption.endpoint, "http://127.0.0.1:9")
      const blank = yield* HfConfig.resolve({}).pipe(withEnv({ HF_ENDPOINT: "  " }))
      assert.strictEqual(blank.endpoint, HfConfig.defaults.endpoint)
    })
  )

  it.effect("the token discovery's variables are read with the rest, cleaned, and never the token option", () =>
    Effect.gen(function* () {
      const resolved = yield* HfConfig.resolve({ token: Redacted.make("hf_option") }).pipe(
        withEnv({ HF_TOKEN: "hf_from_env\r\n", HF_HOME: "/srv/hf", HUGGING_FACE_HUB_TOKEN: " " })
      )
      const env = Either.getOrThrow(resolved.discovery)
      assert.strictEqual(env.hfToken && Redacted.value(env.hfToken), "hf_from_env")
      assert.strictEqual(env.legacyToken, undefined)
      assert.strictEqual(env.tokenPath, "/srv/hf/token")
      assert.strictEqual(resolved.token && Redacted.value(resolved.token), "hf_option")
    })
  )

  it.effect("layerConfig's reading: a namespace Config, else HF_SANDBOX_NAMESPACE; blank counts as unset", () =>
    Effect.gen(function* () {
      const env = { HF_SANDBOX_NAMESPACE: "acme", MY_ORG: "widgets", BLANK: " " }
      const fallback = yield* HfConfig.fromConfig({}).pipe(withEnv(env))
      assert.strictEqual(fallback.namespace, "acme")
      const given = yield* HfConfig.fromConfig({ namespace: Config.string("MY_ORG") }).pipe(withEnv(env))
      assert.strictEqual(given.namespace, "widgets")
      const blank = yield* HfConfig.fromConfig({ namespace: Config.string("BLANK") }).pipe(withEnv(env))
      assert.strictEqual(blank.namespace, "acme")
      const missing = yield* HfConfig.fromConfig({ namespace: Config.string("NOPE") }).pipe(withEnv(env), Effect.flip)
      assert.include(missing.toString(), "NOPE")
    })
  )
})
