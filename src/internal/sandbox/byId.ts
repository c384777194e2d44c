/**
 * A running sandbox attached to by its id, whatever it is: a pooled id (`<host>.<local>`) through its host
 * (internal/pool/connect), any other through its provider's connect. `Sandbox.connect`'s way, and the
 * seam's for what it reads through the sandbox itself.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { ConnectOptions, Sandbox } from "../../Sandbox.js"
import type { StartError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import * as PoolConnect from "../pool/connect.js"
import * as HostWire from "../wire/host.js"
import { attachTo, open } from "./open.js"

export const connect = (
  id: string,
  options: ConnectOptions
): Effect.Effect<Sandbox, StartError, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> => {
  const pooled = HostWire.splitPooledId(id)
  return pooled !== undefined
    ? PoolConnect.connect(id, pooled, options)
    : open("connect", options, attachTo(id), { "sandbox.id": id })
}
