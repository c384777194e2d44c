/**
 * The options and arguments several commands share (the global `--local`/`--json`/`-q`, `--env`,
 * `--secret`, the id, the command after `--`, …), and the sandbox options `create` and `run` read from
 * them.
 */
import * as Args from "@effect/cli/Args"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Io from "./io.js"
import * as Parse from "./parse.js"

/** Accepted before the command name and after it alike. */
export const globals = {
  local: Options.boolean("local").pipe(
    Options.withDescription("Use the local provider (this machine) instead of HF Jobs. Implied by local-… ids.")
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription("Machine-readable output: one JSON document, or one per line for streams.")
  ),
  quiet: Options.boolean("quiet").pipe(
    Options.withAlias("q"),
    Options.withDescription("Print only the essential value (e.g. the id), for $(...).")
  )
}

export type Globals = { readonly local: boolean; readonly json: boolean; readonly quiet: boolean }

export const env = Options.text("env").pipe(
  Options.withAlias("e"),
  Options.withPseudoName("NAME=VALUE"),
  Options.repeated,
  Options.withDescription("Environment variable (repeatable).")
)
export const secret = Options.text("secret").pipe(
  Options.withAlias("s"),
  Options.withPseudoName("NAME[=VALUE]"),
  Options.repeated,
  Options.withDescription(
    "Secret environment variable (repeatable); a bare NAME takes its value from this environment. " +
      "Sent as an encrypted job secret, never printed."
  )
)
export const flavor = Options.text("flavor").pipe(
  Options.withPseudoName("FLAVOR[,FLAVOR...]"),
  Options.repeated,
  Options.withDescription(
    "HF hardware, e.g. cpu-basic (default), cpu-upgrade, t4-small, a10g-small. Several (repeated, or a comma list) " +
      "are tried in order: a flavor with no machine free within a minute is given up for the next."
  )
)
export const volume = Options.text("volume").pipe(
  Options.withAlias("v"),
  Options.withPseudoName("hf://[TYPE/]SOURCE[@REV][/PATH]:/MOUNT[:ro|:rw]"),
  Options.repeated,
  Options.withDescription(
    "Mount a Hub repo or bucket in the HF job (repeatable), as `hf jobs run -v`: TYPE models (default), datasets, " +
      "spaces or buckets; repos are read-only, buckets read-write unless :ro. E.g. -v hf://datasets/org/ds:/data."
  )
)
export const ssh = Options.boolean("ssh").pipe(
  Options.withDescription(
    "Accept SSH into the HF job (connect with `hf-sandbox ssh ID`): users with write access to its namespace, " +
      "with an SSH key registered at https://huggingface.co/settings/keys."
  )
)
export const maxCost = Options.text("max-cost").pipe(
  Options.withPseudoName("USD"),
  Options.optional,
  Options.withDescription(
    "Spend cap in US dollars (e.g. 2 or '$2'): the HF job's timeout is what it buys of the flavor at the Hub's " +
      "price; a --lifetime that could cost more is refused before anything starts."
  )
)
export const transport = Options.choice("transport", ["tunnel", "proxy"]).pipe(
  Options.optional,
  Options.withDescription("How to reach an HF sandbox: a Cloudflare quick tunnel (default) or the HF Jobs proxy.")
)
export const label = Options.text("label").pipe(
  Options.withAlias("l"),
  Options.withPseudoName("KEY[=VALUE]"),
  Options.repeated,
  Options.withDescription(
    "Label of the HF job (repeatable), for your own bookkeeping; keys and values of at most 100 letters, digits, '.', '_', '-'."
  )
)
export const sandboxName = Options.text("name").pipe(
  Options.withPseudoName("NAME"),
  Options.optional,
  Options.withDescription(
    "A name for the sandbox, unique among the running ones (1-63 of A-Z a-z 0-9 . _ -); a taken name fails, naming the sandbox that has it."
  )
)
// Text, parsed by Parse.ports: @effect/cli 0.77 refuses every value of a repeated integer option
// ("'8000' is not a integer").
export const port = Options.text("port").pipe(
  Options.withAlias("p"),
  Options.withPseudoName("PORT"),
  Options.repeated,
  Options.withDescription(
    "Port of a server you will start in the sandbox (repeatable), served by the HF Jobs proxy; see `hf-sandbox expose`. Needed with --transport proxy."
  )
)
export const forwardHfToken = Options.boolean("forward-hf-token").pipe(
  Options.withDescription("Give the sandbox your HF token as the HF_TOKEN secret.")
)
export const startTimeout = Options.text("start-timeout").pipe(
  Options.withPseudoName("DURATION"),
  Options.optional,
  Options.withDescription("How long starting may take (default 3m; 2m with --transport proxy).")
)
export const cwd = Options.text("cwd").pipe(
  Options.withPseudoName("DIR"),
  Options.optional,
  Options.withDescription("Working directory of the command (default: the sandbox's home).")
)
export const stdin = Options.boolean("stdin").pipe(
  Options.withAlias("i"),
  Options.withDescription("Stream this process's stdin to the command, as it comes (any size).")
)
export const sandboxId = Args.text({ name: "ID" }).pipe(
  Args.withDescription("The sandbox's id (on HF Jobs also NAMESPACE/ID, as the job's page shows it).")
)
export const commandArgs = Args.text({ name: "CMD" }).pipe(
  Args.repeated,
  Args.withDescription("The command, after --. One word runs through /bin/sh -c; several are run as they are.")
)

/** The command of `exec`/`spawn`/`run`: what followed `--` in the invocation, or else {@link commandArgs}. */
export const commandOf = (positional: ReadonlyArray<string>) =>
  Effect.flatMap(Io.Io, ({ forced }) => Parse.commandOf(forced, positional))
export const image = Args.text({ name: "IMAGE" }).pipe(
  Args.optional,
  Args.withDescription("Docker image (default python:3.12), or hf.co/spaces/owner/name. Ignored by --local.")
)

/** `--timeout` of `exec` and `run`: the command's own limit. */
export const commandTimeout = Options.text("timeout").pipe(
  Options.withPseudoName("DURATION"),
  Options.optional,
  Options.withDescription("Kill the command after this long (exit code 124), e.g. 30s, 5m.")
)

/** The flags of the sandbox `create` and `run` make, in the order their help lists them; read by {@link sandboxOptions}. */
export const sandboxFlags = {
  env,
  secret,
  label,
  port,
  name: sandboxName,
  transport,
  forwardHfToken,
  startTimeout,
  volume,
  ssh,
  maxCost
}

/** The sandbox options `create` and `run` share, read from the same flags. */
export const sandboxOptions = (a: {
  readonly image: Option.Option<string>
  readonly env: ReadonlyArray<string>
  readonly secret: ReadonlyArray<string>
  readonly label: ReadonlyArray<string>
  readonly flavor: ReadonlyArray<string>
  readonly startTimeout: Option.Option<string>
  readonly transport: Option.Option<"tunnel" | "proxy">
  readonly forwardHfToken: boolean
  readonly volume: ReadonlyArray<string>
  readonly ssh: boolean
  readonly maxCost: Option.Option<string>
  readonly port: ReadonlyArray<string>
  readonly name: Option.Option<string>
}) =>
  Effect.gen(function* () {
    const imageName = Option.isSome(a.image) ? yield* Parse.notAnOption("IMAGE", a.image.value) : undefined
    return {
      ...(imageName !== undefined ? { image: imageName } : {}),
      env: yield* Parse.envPairs(a.env),
      secrets: yield* Parse.secrets(a.secret, (yield* Io.Io).env),
      labels: yield* Parse.labels(a.label),
      flavor: yield* Parse.flavors(a.flavor),
      startTimeout: yield* Parse.optionalDuration("--start-timeout", a.startTimeout),
      transport: Option.getOrUndefined(a.transport),
      forwardHfToken: a.forwardHfToken,
      ...(a.volume.length > 0 ? { volumes: yield* Parse.volumes(a.volume) } : {}),
      ...(a.ssh ? { ssh: true } : {}),
      ...(Option.isSome(a.maxCost) ? { maxCost: a.maxCost.value } : {}),
      ...(a.port.length > 0 ? { ports: yield* Parse.ports(a.port) } : {}),
      ...(Option.isSome(a.name) ? { name: a.name.value } : {})
    }
  })

/** An optional `--NAME DURATION` flag (read with `Parse.optionalDuration`). */
export const durationFlag = (name: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName("DURATION"), Options.optional, Options.withDescription(description))
