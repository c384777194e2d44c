/**
 * What the files API needs from its sandbox, handed explicitly to every operation of this directory.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { Sandbox } from "../../Sandbox.js"
import { LocalFileError, type TerminatedError } from "../../SandboxError.js"
import type { HubAccess } from "../../SandboxProvider.js"
import type * as Wire from "../wire/client.js"

/** What the files API needs from its sandbox. */
export interface Context {
  readonly wire: Wire.WireClient
  /** The provider's default range for reads into memory (see `SandboxProvider.Endpoint`). */
  readonly readRangeSize?: number | undefined
  readonly fileSystem: Option.Option<FileSystem.FileSystem>
  /** Runs an operation in its span (with extra attributes), failing at once when the sandbox is terminated. */
  readonly guard: <A, E, R>(
    operation: string,
    effect: Effect.Effect<A, E, R>,
    attributes?: Record<string, unknown>
  ) => Effect.Effect<A, E | TerminatedError, R>
  /** {@link guard} for a stream: its span lasts as long as the stream runs. */
  readonly guardStream: <A, E, R>(
    operation: string,
    stream: Stream.Stream<A, E, R>,
    attributes?: Record<string, unknown>
  ) => Stream.Stream<A, E | TerminatedError, R>
  /** Runs a command in the sandbox, for the transfers that run there (`fromHub`). */
  readonly execStream: Sandbox["execStream"]
  /** The provider's Hub (see `SandboxProvider.Endpoint.hub`). */
  readonly hub?: HubAccess | undefined
}

/** The local FileSystem, or the error that says how to provide one. */
export const localFs = ({ fileSystem }: Context, operation: string, path: string) =>
  Option.match(fileSystem, {
    onNone: () =>
      Effect.fail(
        new LocalFileError({
          path,
          operation,
          detail: "no FileSystem service: provide one, e.g. NodeContext.layer from @effect/platform-node"
        })
      ),
    onSome: Effect.succeed
  })
