/**
 * The library's errors, said at the CLI's boundary in the CLI's own terms: flags instead of option
 * names, commands instead of library calls, `HF_TOKEN` instead of a layer, and no "Sandbox did not
 * start" from a command that starts nothing (`ls`, `kill`, `logs`). The words are built from each
 * error's fields. The one rewrite of the library's prose is the Hub's advice (a token, an endpoint):
 * each such phrase comes from one table every surface shares (`internal/surfaceTerms.ts`) and is swapped
 * for the CLI's. The error's own tag is kept for `--json`.
 */

import { withFields } from "../internal/errorFields.js"
import { inSurface } from "../internal/surfaceErrors.js"
import { inTerms } from "../internal/surfaceTerms.js"
import { InvalidArgumentError, PoolError, PortError, SshError, StartError } from "../SandboxError.js"

/**
 * The flag of each library option a user can set from the command line: a sandbox's, an argument's and a
 * pool's (`pool up`, `create --pool`), one table since the options they share have the same flag.
 */
const FLAGS: Readonly<Record<string, string>> = {
  env: "--env",
  lifetime: "--lifetime",
  timeout: "--timeout",
  idleTimeout: "--idle-timeout",
  startTimeout: "--start-timeout",
  secrets: "--secret",
  labels: "--label",
  flavor: "--flavor",
  cwd: "--cwd",
  forwardHfToken: "--forward-hf-token",
  volumes: "--volume",
  ssh: "--ssh",
  maxCost: "--max-cost",
  ports: "--port",
  name: "--name",
  transport: "--transport",
  links: "--links",
  preserveModes: "--preserve-modes",
  weakIsolation: "--weak-isolation",
  warmUp: "--hosts",
  maxHosts: "--max-hosts",
  sandboxesPerHost: "--per-host"
}

/** `volumes[1]`, `env.NAME`: an element of an option, as the checks name one (internal/validate). */
const ELEMENT = /^(\w+)(?:\[(\d+)\]|\.(.+))$/

/**
 * An option's flag: its own, or for one element of a list or record its flag with the element (`--volume
 * #2` for `volumes[1]`, the second `--volume` given; `--env NAME` for `env.NAME`); undefined for an option
 * no flag sets.
 */
const flagOf = (option: string): string | undefined => {
  const own = FLAGS[option]
  if (own !== undefined) return own
  const [, base = "", index, key] = ELEMENT.exec(option) ?? []
  const flag = FLAGS[base]
  if (flag === undefined) return undefined
  return index !== undefined ? `${flag} #${Number(index) + 1}` : `${flag} ${key}`
}

/**
 * A start's detail as the CLI says it: a taken name with the commands that use or stop its holder, a bad
 * option by its flag, and the Hub's advice (a missing token, a custom endpoint) the CLI's way
 * (`surfaceTerms.ts`, the phrases every surface shares).
 */
export const startDetail = (error: StartError): string => {
  if (error.holder !== undefined) {
    const { id, name } = error.holder
    return (
      `sandbox ${id} is already named ${JSON.stringify(name)}: use it by its id ${id}, ` +
      `stop it with \`hf-sandbox kill ${id}\`, or choose another name`
    )
  }
  const flag = error.invalid === undefined ? undefined : flagOf(error.invalid.option)
  if (flag !== undefined) return `invalid ${flag}: ${error.invalid?.problem}`
  return inTerms(error.detail, "cli")
}

/** The start's failure with the CLI's detail, worded as the library words a start's failure. */
const startMessage = (error: StartError): string =>
  withFields(StartError, error, { detail: startDetail(error) }).message

/** A port's failure with the CLI's ways to reach it: a declared `--port`, or `--via server`. */
const portMessage = (error: PortError): string => {
  if (error.reason === "NotDeclared") {
    return (
      `Port ${error.port} is not reachable through the HF Jobs proxy: ${error.detail}. Create the sandbox with ` +
      `--port ${error.port}, or expose it with --via server to go through the sandbox server with its token.`
    )
  }
  if (error.reason === "TunnelFailed") {
    return `The quick tunnel for port ${error.port} did not come up: ${error.detail}. Try again (a new one is started), or expose it with --via server.`
  }
  return error.message
}

/** A pool's refused option by its flag, worded as the library words a pool's failure. */
const poolMessage = (error: PoolError): string => {
  const flag = error.option === undefined ? undefined : flagOf(error.option)
  return flag === undefined
    ? error.message
    : withFields(PoolError, error, { option: undefined, detail: `invalid ${flag}: ${error.detail}` }).message
}

/** SSH is switched on at creation: the CLI's command for that. */
const sshMessage = (error: SshError): string =>
  error.reason === "NotEnabled"
    ? `Sandbox ${error.id} accepts no SSH: SSH is switched on when the sandbox is made, with \`hf-sandbox create --ssh\`.`
    : error.message

/**
 * An argument by its flag, said for the command that was typed (`cp: invalid --links: …`): never the
 * library's call (`files.upload`), which a CLI user did not make. An argument no flag sets (one the CLI
 * gives itself) is no user's: it is said as the library says it, call and option name and all.
 */
const argumentMessage = (error: InvalidArgumentError, command: ReadonlyArray<string>): string => {
  const flag = flagOf(error.argument)
  if (flag === undefined) return error.message
  return `${command.length === 0 ? "" : `${command.join(" ")}: `}invalid ${flag}: ${error.detail}`
}

interface Failure {
  readonly tag: string
  readonly message: string
}

/** The message of any failure, the library's errors in the CLI's terms. */
const messageOf = (error: unknown, starts: boolean, command: ReadonlyArray<string>): string => {
  if (error instanceof StartError) {
    if (starts) return startMessage(error)
    const tail =
      error.stderrTail !== undefined && error.stderrTail.trim() !== "" ? `\n${error.stderrTail.trimEnd()}` : ""
    return startDetail(error) + tail
  }
  if (error instanceof PoolError) return poolMessage(error)
  if (error instanceof PortError) return portMessage(error)
  if (error instanceof SshError) return sshMessage(error)
  if (error instanceof InvalidArgumentError) return argumentMessage(error, command)
  // A Hub error's advice (a token, an endpoint) in the CLI's words.
  const said = inSurface(error, "cli")
  const message = (typeof said === "object" && said !== null ? said : {}) as { readonly message?: unknown }
  return typeof message.message === "string" && message.message !== "" ? message.message : String(error)
}

/**
 * What the CLI reports for a failure. `starts`: whether the command starts a sandbox (`create`, `run`),
 * the only ones whose failure may say the sandbox did not start; `command`: the command's path as typed
 * (`["cp"]`, `["pool", "up"]`).
 */
export const describe = (error: unknown, starts: boolean, command: ReadonlyArray<string> = []): Failure => {
  const e = (typeof error === "object" && error !== null ? error : {}) as {
    readonly _tag?: unknown
    readonly tag?: unknown
  }
  const tag = typeof e.tag === "string" ? e.tag : typeof e._tag === "string" ? e._tag : "Error"
  return { tag, message: messageOf(error, starts, command) }
}
