/**
 * The server's bounds, as its 503 answers name them (docs/protocol.md, "Limits"): each code with the
 * server variable that sets it. One table for both sides of the client: the wire client turns exactly
 * these codes into a `ResourceLimitError`, whose message tells how to raise the bound.
 */

/** The server's variable for each limit a `ResourceLimitError` can name. */
export const RESOURCE_LIMIT_VARIABLES: Readonly<Record<string, string>> = {
  too_many_processes: "SBX_MAX_PROCESSES",
  too_many_connections: "SBX_MAX_CONNECTIONS"
}

/** Whether `code` is one of the server's limit codes. */
export const isLimitCode = (code: string): boolean => Object.hasOwn(RESOURCE_LIMIT_VARIABLES, code)
