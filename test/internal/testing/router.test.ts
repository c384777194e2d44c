/**
 * The one rule by which clients reach the Hub emulator's proxy and edge (src/internal/testing/router.ts):
 * the CLI's test hook and the emulator's own dispatch must agree with `Testing.routeHttpClient`, which the
 * emulator suites exercise end to end.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Router from "../../../src/internal/testing/router.js"

/** A client that answers 204 to everything and keeps the requests it was given. */
const recording = () => {
  const seen: Array<HttpClientRequest.HttpClientRequest> = []
  const client = HttpClient.make((request) =>
    Effect.sync(() => {
      seen.push(request)
      return HttpClientResponse.fromWeb(request, new Response(null, { status: 204 }))
    })
  )
  return { seen, client }
}

describe("emulator router", () => {
  it("the CLI's hook takes only a loopback http:// URL, as its origin", () => {
    assert.isUndefined(Router.fromEnv({}))
    assert.isUndefined(Router.fromEnv({ HF_SANDBOX_EMULATOR_URL: "" }))
    assert.strictEqual(
      Router.fromEnv({ HF_SANDBOX_EMULATOR_URL: "http://127.0.0.1:4567/x?y" }),
      "http://127.0.0.1:4567"
    )
    for (const url of ["https://127.0.0.1:4567", "http://10.0.0.1:80", "http://huggingface.co"]) {
      assert.throws(() => Router.fromEnv({ HF_SANDBOX_EMULATOR_URL: url }), /must be a loopback http:\/\/ URL/)
    }
  })

  it.effect("proxy and tunnel hosts go to the emulator with their host in the header; others pass", () =>
    Effect.gen(function* () {
      const { seen, client } = recording()
      const routed = Router.mapClient("http://127.0.0.1:4567")(client)
      yield* routed.get("https://0123456789abcdef01234567--8000.HF.jobs/v1/exec?a=1")
      yield* routed.get("https://amber-lamp-solo-truck.trycloudflare.com/health")
      yield* routed.get("https://huggingface.co/api/whoami-v2")
      assert.deepStrictEqual(
        seen.map((request) => [request.url, request.headers[Router.HOST_HEADER]]),
        [
          ["http://127.0.0.1:4567/v1/exec?a=1", "0123456789abcdef01234567--8000.hf.jobs"],
          ["http://127.0.0.1:4567/health", "amber-lamp-solo-truck.trycloudflare.com"],
          ["https://huggingface.co/api/whoami-v2", undefined]
        ]
      )
    })
  )

  it("the emulator finds the room from the header", () => {
    const host = Router.virtualHost({ [Router.HOST_HEADER]: "Amber-Lamp-Solo-Truck.trycloudflare.com:443" })
    assert.strictEqual(host, "amber-lamp-solo-truck.trycloudflare.com")
    assert.strictEqual(Router.roomOf(host!), "edge")
    assert.strictEqual(Router.roomOf("0123456789abcdef01234567--8000.hf.jobs"), "proxy")
    assert.isUndefined(Router.roomOf("huggingface.co"))
    assert.isUndefined(Router.virtualHost({}))
  })
})
