/**
 * The pieces of host mode's wire contract on the client side: a pooled sandbox's routes under its host's
 * `/v1/sandboxes/{id}`, its token derived from the host token, pooled ids.
 */
import { createHmac } from "node:crypto"
import * as net from "node:net"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Wire from "../../../src/internal/wire/client.js"
import * as HostWire from "../../../src/internal/wire/host.js"
import { route } from "../../../src/internal/wire/transport.js"

/** A loopback port nothing listens on any more: a connection to it is refused. */
const closedPort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("host wire", () => {
  it("a pooled sandbox's routes are its host's /v1/sandboxes/{id}/…; /health and dedicated routes stay", () => {
    const pooled = route({ hostId: "h", localId: "0123456789abcdef" })
    assert.strictEqual(pooled("/v1/exec"), "/v1/sandboxes/0123456789abcdef/exec")
    assert.strictEqual(pooled("/v1/files/read"), "/v1/sandboxes/0123456789abcdef/files/read")
    assert.strictEqual(pooled("/v1/proxy/"), "/v1/sandboxes/0123456789abcdef/proxy/")
    assert.strictEqual(pooled("/health"), "/health")
    assert.strictEqual(route(undefined)("/v1/exec"), "/v1/exec")
  })

  it("the sandbox token is hex HMAC-SHA256 of its id under the host token", () => {
    const token = HostWire.sandboxToken(Redacted.make("host-secret"), "0123456789abcdef")
    assert.strictEqual(
      Redacted.value(token),
      createHmac("sha256", "host-secret").update("0123456789abcdef").digest("hex")
    )
  })

  it("pooled ids split at the last '.', the local part hex; other ids are not pooled", () => {
    assert.deepStrictEqual(HostWire.splitPooledId("687f0a1b2c3d4e5f60718293.0123456789abcdef"), {
      hostId: "687f0a1b2c3d4e5f60718293",
      localId: "0123456789abcdef"
    })
    assert.deepStrictEqual(HostWire.splitPooledId("ns/687f.00ff"), { hostId: "ns/687f", localId: "00ff" })
    assert.strictEqual(HostWire.pooledId("local-abcdef", "00ff"), "local-abcdef.00ff")
    for (const id of ["local-abcdef", "687f0a1b", "a.", ".ab", "a.not-hex", "a.XYZ"]) {
      assert.isUndefined(HostWire.splitPooledId(id), id)
    }
  })

  it.live("a pooled sandbox's connection lost because its host ended names the host, from the wire itself", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const wire = yield* Wire.make({
        baseUrl: `http://127.0.0.1:${port}`,
        token: Redacted.make("t"),
        hosted: { hostId: "host-1", localId: "0123456789abcdef" },
        exitReason: Effect.succeed(Option.some("its pool host host-1 ended: killed"))
      })
      const error = yield* Effect.flip(wire.processes)
      assert.strictEqual(error._tag, "ConnectionLostError")
      assert.strictEqual(error._tag === "ConnectionLostError" ? error.host : undefined, "host-1")
      assert.include(error.message, "its pool host host-1 ended: killed")
    }).pipe(Effect.provide(NodeHttpClient.layerUndici))
  )
})
