/**
 * How the wire client's failures become the errors a user can act on: a server's answer (its status and
 * its JSON error body), a transport failure, an answer cut short.
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Protocol from "../../Protocol.js"
import {
  AuthError,
  BadRequestError,
  CommandNotFoundError,
  ConnectionLostError,
  FileExistsError,
  FileNotFoundError,
  IsDirectoryError,
  type OperationError,
  ProcessNotFoundError,
  ResourceLimitError,
  ServerError
} from "../../SandboxError.js"
import { isLimitCode } from "./limits.js"

const decodeErrorBody = Schema.decodeUnknownOption(Protocol.ErrorBody)

/** Turns a non-2xx answer (its status and its JSON body, if any) into the error a user can act on. */
export const failFromAnswer = (
  operation: string,
  path: string | undefined,
  status: number,
  json: Effect.Effect<unknown, unknown>,
  command?: string
): Effect.Effect<never, OperationError> =>
  json.pipe(
    Effect.map(decodeErrorBody),
    Effect.orElseSucceed(() => Option.none<Protocol.ErrorBody>()),
    Effect.flatMap((body): Effect.Effect<never, OperationError> => {
      const detail = Option.match(body, { onNone: () => `HTTP ${status}`, onSome: (b) => b.error })
      const code = Option.getOrUndefined(Option.flatMapNullable(body, (b) => b.code))
      if (status === 401 || status === 403) return Effect.fail(new AuthError({ operation, status }))
      if (status === 404 && path !== undefined && !detail.startsWith("no route")) {
        return Effect.fail(new FileNotFoundError({ path, operation }))
      }
      if (status === 409 && path !== undefined && (code === "is_a_directory" || code === "not_empty")) {
        return Effect.fail(new IsDirectoryError({ path, operation, detail }))
      }
      if (status === 409 && path !== undefined && code === "already_exists" && operation === "files.symlink") {
        return Effect.fail(new FileExistsError({ path, operation, detail }))
      }
      if (command !== undefined && (code === "command_not_found" || code === "permission_denied")) {
        return Effect.fail(new CommandNotFoundError({ command, detail }))
      }
      if (status === 503 && code !== undefined && isLimitCode(code)) {
        return Effect.fail(new ResourceLimitError({ operation, code, detail }))
      }
      if (status >= 500) {
        // Our server explains its own failures; anything else (a proxy's 502, a dead tunnel) is transport.
        return Effect.fail(
          Option.isSome(body)
            ? new ServerError({ operation, status, code, detail })
            : new ConnectionLostError({ operation, detail: `HTTP ${status}` })
        )
      }
      return Effect.fail(new BadRequestError({ operation, status, code, detail }))
    })
  )

/** {@link failFromAnswer} for an HttpClient response. */
export const failFromResponse = (
  operation: string,
  path: string | undefined,
  response: HttpClientResponse.HttpClientResponse,
  command?: string
) => failFromAnswer(operation, path, response.status, response.json, command)

/** A failure of the transport (no answer at all). */
export const fromTransport = (operation: string) => (error: HttpClientError.HttpClientError) =>
  ConnectionLostError.fromTransport(operation, error)

/** A read whose body carried fewer bytes than it announced. */
export const cutShort = (operation: string, path: string, received: number, length: number) =>
  new ConnectionLostError({
    operation,
    detail: `got ${received} of ${length} bytes of ${path}: the file changed during the read`
  })

/** Process routes answer 404 for an unknown id or pid. */
export const processCall = <A>(operation: string, id: string, effect: Effect.Effect<A, OperationError>) =>
  Effect.catchIf(
    effect,
    (error) => error._tag === "BadRequestError" && error.status === 404,
    () => Effect.fail(new ProcessNotFoundError({ id, operation }))
  )
