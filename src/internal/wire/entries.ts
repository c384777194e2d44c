/**
 * The file routes about entries rather than bytes: stat, list, remove, mkdir, rename, chmod, symlink.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Protocol from "../../Protocol.js"
import { IsDirectoryError, type OperationError } from "../../SandboxError.js"
import { call, json, pathParams, type Transport } from "./transport.js"

// Link targets are asked for: the server leaves them out by default, for HF's client (Protocol.ts).
const withTargets = { [Protocol.SYMLINK_TARGETS_PARAM]: "1" }

export const stat = (transport: Transport, path: string): Effect.Effect<Protocol.FileEntry, OperationError> =>
  call(
    transport,
    "files.stat",
    path,
    HttpClientRequest.get("/v1/files/stat").pipe(pathParams(path, withTargets)),
    json(Protocol.FileEntry)
  )

export const list = (
  transport: Transport,
  path: string,
  recursive: boolean
): Effect.Effect<typeof Protocol.ListResponse.Type, OperationError> =>
  call(
    transport,
    "files.list",
    path,
    HttpClientRequest.get("/v1/files/list").pipe(
      pathParams(path, { recursive: recursive ? "1" : undefined, ...withTargets })
    ),
    json(Protocol.ListResponse)
  )

export const remove = (transport: Transport, path: string, recursive: boolean): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.remove",
    path,
    HttpClientRequest.del("/v1/files/delete").pipe(pathParams(path, { recursive: recursive ? "1" : undefined })),
    json(Protocol.DeleteResponse)
  ).pipe(Effect.asVoid)

export const mkdir = (transport: Transport, path: string): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.mkdir",
    path,
    HttpClientRequest.post("/v1/files/mkdir").pipe(pathParams(path)),
    json(Protocol.MkdirResponse)
  ).pipe(Effect.asVoid)

export const rename = (transport: Transport, from: string, to: string): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.rename",
    from,
    HttpClientRequest.post("/v1/files/rename").pipe(HttpClientRequest.setUrlParams({ from, to })),
    (response) => response.json
  ).pipe(
    // A missing path is the source (the target's parents are created); a directory in the way is the target.
    Effect.mapError((error) =>
      error._tag === "IsDirectoryError"
        ? new IsDirectoryError({ path: to, operation: error.operation, detail: error.detail })
        : error
    ),
    Effect.asVoid
  )

export const chmod = (transport: Transport, path: string, mode: string): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.chmod",
    path,
    HttpClientRequest.post("/v1/files/chmod").pipe(pathParams(path, { mode })),
    (response) => response.json
  ).pipe(Effect.asVoid)

export const symlink = (
  transport: Transport,
  path: string,
  target: string,
  replace?: boolean
): Effect.Effect<void, OperationError> =>
  call(
    transport,
    "files.symlink",
    path,
    HttpClientRequest.post("/v1/files/symlink").pipe(pathParams(path, { target, replace: replace ? "1" : undefined })),
    (response) => response.json
  ).pipe(Effect.asVoid)
