/**
 * The library's errors, reworded at the CLI's boundary into the CLI's own terms: flags instead of option
 * names, `HF_TOKEN` instead of a layer, and no "Sandbox did not start" from a command that starts
 * nothing (`ls`, `kill`, `logs`). The error's own tag is kept for `--json`.
 */
import { EFFECT_TOKEN_HINT } from "../internal/hfJobs/credentials.js"

/** The flag of each library option a user can set from the command line. */
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
  name: "--name"
}

const CLI_TOKEN_HINT = "pass it as HF_TOKEN=hf_... in the environment"

/**
 * What the library's messages tell a program to do, said as the CLI does it (a declared port, the
 * server's port proxy, SSH at creation, a named sandbox's id): the library never names a command.
 */
const ADVICE: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bports: \[(\d+)\]/g, "--port $1"],
  [/\{ via: "server" \}/g, "--via server"],
  [/Sandbox\.make\(\{ ssh: true \}\)/g, "`hf-sandbox create --ssh`"],
  [
    /attach to it with Sandbox\.connect\(\{ name \}\) or Sandbox\.getOrCreate\(\{ name \}\), stop it with SandboxProvider\.kill\("([^"]+)"\)/g,
    "use it by its id $1, stop it with `hf-sandbox kill $1`"
  ]
]

/** Names options by their flags, and a token and the library's advice the CLI's way. */
export const reword = (text: string): string =>
  ADVICE.reduce((said, [library, cli]) => said.replace(library, cli), text)
    .replace(EFFECT_TOKEN_HINT, CLI_TOKEN_HINT)
    .replace(/\b(invalid sandbox options: |invalid )([A-Za-z]+)(?=[:. ])/g, (whole, lead: string, name: string) =>
      FLAGS[name] === undefined ? whole : `${lead}${FLAGS[name]}`
    )

interface Failure {
  readonly tag: string
  readonly message: string
}

/**
 * What the CLI reports for a failure. `starts`: whether the command starts a sandbox (`create`, `run`),
 * the only ones whose failure may say the sandbox did not start.
 */
export const describe = (error: unknown, starts: boolean): Failure => {
  const e = (typeof error === "object" && error !== null ? error : {}) as {
    readonly _tag?: unknown
    readonly tag?: unknown
    readonly message?: unknown
    readonly detail?: unknown
    readonly stderrTail?: unknown
  }
  const tag = typeof e.tag === "string" ? e.tag : typeof e._tag === "string" ? e._tag : "Error"
  const message = typeof e.message === "string" && e.message !== "" ? e.message : String(error)
  if (e._tag === "StartError" && !starts && typeof e.detail === "string") {
    const tail = typeof e.stderrTail === "string" && e.stderrTail.trim() !== "" ? `\n${e.stderrTail.trimEnd()}` : ""
    return { tag, message: reword(e.detail) + tail }
  }
  return { tag, message: reword(message) }
}
