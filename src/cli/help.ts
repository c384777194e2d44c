/**
 * `hf-sandbox --help`: the overview of the commands (and of `process`) is written here; a command's own
 * help is @effect/cli's, made readable for a terminal: usage lines that name `hf-sandbox`, no line longer
 * than {@link WIDTH}, without the generic "A true or false value." noise, and with examples.
 */
import { VERSION } from "../internal/version.js"

/**
 * The widest line help prints.
 *
 * @since 0.2.0
 * @category cli
 */
export const WIDTH = 100

/** Options that only the root takes, before a command name (they are accepted after it too). */
const GLOBAL_FLAGS = new Set(["--local", "--json", "-q", "--quiet"])

/**
 * @effect/cli's built-in options this CLI does not offer: they are undocumented in its help, so they are
 * refused as what they are here, unknown options.
 *
 * @since 0.2.0
 * @category cli
 */
export const REFUSED_BUILT_INS = ["--wizard", "--completions", "--log-level"]

/** The commands, as the overview lists them. */
const COMMANDS: ReadonlyArray<readonly [string, string]> = [
  ["create", "Create a sandbox that keeps running, and print its id."],
  ["exec", "Run a command in a sandbox, streaming its output; exit with its exit code."],
  ["spawn", "Start a command in the background of a sandbox; print its process id."],
  ["process", "Background processes of a sandbox: process ls | kill | logs."],
  ["cp", "Copy files or directories between this machine and a sandbox."],
  ["ls", "List running sandboxes."],
  ["logs", "Print a sandbox's log."],
  ["kill", "Stop sandboxes by id, or all of them with --all."],
  ["run", "Create a sandbox, run one command in it, and stop it."],
  ["expose", "Print the URL of a server listening on a port in a sandbox."],
  ["ssh", "Open an SSH session into a sandbox made with --ssh (HF Jobs)."],
  ["hardware", "List the HF Jobs hardware (flavors) with specs and price per hour."],
  ["top", "Show a sandbox's live CPU, memory, network and GPU use."],
  ["pool", "Pools of hosts packing many small sandboxes: pool up | ls | down; create --pool."]
]

const PROCESS_COMMANDS: ReadonlyArray<readonly [string, string]> = [
  ["ls", "List a sandbox's background processes, running and exited."],
  ["kill", "Signal background processes (their whole process group)."],
  ["logs", "Print a background process's output; -f follows it live."]
]

/**
 * At least one example for every command, shown at the end of its help.
 *
 * @since 0.2.0
 * @category cli
 */
export const EXAMPLES: Readonly<Record<string, ReadonlyArray<string>>> = {
  create: [
    "id=$(hf-sandbox create -q --flavor cpu-upgrade --idle-timeout 30m python:3.12)",
    "hf-sandbox create --local --json",
    "hf-sandbox create --ssh --flavor h200,a100-large --max-cost '$5' -v hf://datasets/org/ds:/data vllm/vllm-openai"
  ],
  exec: [
    "hf-sandbox exec $id -- python -c 'print(1 + 1)'",
    "hf-sandbox exec -e MODE=test --cwd /tmp --timeout 5m $id -- 'make test && ls'",
    "tar c ./src | hf-sandbox exec -i $id -- tar x"
  ],
  spawn: ["hf-sandbox spawn --tag web $id -- python -m http.server 8000"],
  process: ["hf-sandbox process ls $id"],
  "process ls": ["hf-sandbox process ls $id", "hf-sandbox process ls --json $id"],
  "process kill": ["hf-sandbox process kill $id p-1", "hf-sandbox process kill --signal KILL $id 1234"],
  "process logs": ["hf-sandbox process logs $id p-1", "hf-sandbox process logs -f $id p-1"],
  cp: ["hf-sandbox cp ./data $id:/work/data", "hf-sandbox cp $id:/work/out ./out"],
  ls: ["hf-sandbox ls", "hf-sandbox ls --local -q", "hf-sandbox ls --all --json"],
  logs: ["hf-sandbox logs --tail 20 $id", "hf-sandbox logs -f local-1a2b3c4d5e6f"],
  kill: ["hf-sandbox kill $id", "hf-sandbox kill --local --all"],
  run: [
    "hf-sandbox run -- nvidia-smi",
    "hf-sandbox run --flavor t4-small --timeout 30m pytorch/pytorch -- python train.py",
    "hf-sandbox run --local -- 'uname -a'",
    "hf-sandbox run -v hf://openai/gpt-oss-20b:/model --flavor a10g-large --max-cost 2 -- ls /model"
  ],
  expose: ["hf-sandbox expose $id 8000 --wait 2m", "hf-sandbox expose --local --via server --json $id 7860"],
  ssh: [
    "hf-sandbox ssh $id",
    "hf-sandbox ssh $id -- -L 6006:localhost:6006",
    "hf-sandbox ssh --dry-run -i ~/.ssh/id_ed25519 $id"
  ],
  hardware: ["hf-sandbox hardware", "hf-sandbox hardware --json"],
  top: ["hf-sandbox top $id", "hf-sandbox top --count 5 --json local-1a2b3c4d5e6f"],
  pool: ["hf-sandbox pool up --name evals --hosts 4", "hf-sandbox pool ls"],
  "pool up": [
    "hf-sandbox pool up --name evals --hosts 4 --per-host 50 --max-hosts 8 python:3.12",
    "hf-sandbox pool up --local --name dev"
  ],
  "pool ls": ["hf-sandbox pool ls", "hf-sandbox pool ls evals --json"],
  "pool down": ["hf-sandbox pool down evals", "hf-sandbox pool down --dry-run evals"]
}

const table = (rows: ReadonlyArray<readonly [string, string]>) => {
  const width = Math.max(...rows.map(([name]) => name.length))
  return rows.map(([name, text]) => `  ${name.padEnd(width)}  ${text}`)
}

const overview = (): string =>
  [
    `hf-sandbox ${VERSION}: sandboxes on Hugging Face Jobs, or with --local on this machine.`,
    "",
    "USAGE",
    "  hf-sandbox [--local] [--json] [-q] COMMAND [OPTIONS] [ARGS] [-- CMD [ARG...]]",
    "",
    "COMMANDS",
    ...table(COMMANDS),
    "",
    "OPTIONS (before or after the command name)",
    ...table([
      ["--local", "Use the local provider (this machine) instead of HF Jobs. Implied by local-… ids."],
      ["--json", "Machine-readable output: one JSON document, or one per line for streams."],
      ["-q, --quiet", "Print only the essential value (e.g. the id), for $(...)."],
      ["-h, --help", "Show this help, or a command's: hf-sandbox exec --help."],
      ["--version", "Show the version."]
    ]),
    "",
    "EXAMPLES",
    "  id=$(hf-sandbox create -q)",
    "  hf-sandbox exec $id -- python -c 'print(1 + 1)'",
    "  hf-sandbox cp ./data $id:data",
    "  hf-sandbox kill $id",
    "  hf-sandbox run --local -- 'echo hello'",
    "",
    "HF Jobs need a token: HF_TOKEN=hf_... in the environment, or `hf auth login`.",
    "Like the original hf-sandbox, each sandbox made on HF Jobs sends two anonymous usage events to the",
    "Hub (flavor, timeout, whether the HF token was forwarded, lifetime, how it ended; nothing else).",
    "Set HF_HUB_DISABLE_TELEMETRY=1 or DO_NOT_TRACK=1 to turn them off. See docs/cli.md."
  ].join("\n")

/** The commands that group subcommands (`process ls`, `pool up`), with what their overview says. */
const GROUPS: Readonly<
  Record<
    string,
    { readonly about: string; readonly usage: string; readonly commands: ReadonlyArray<readonly [string, string]> }
  >
> = {
  process: {
    about: "Background processes of a sandbox (started with spawn): list, signal, read their output.",
    usage: "hf-sandbox process COMMAND [OPTIONS] ID [PROC...]",
    commands: PROCESS_COMMANDS
  },
  pool: {
    about:
      "Pools of host sandboxes, each packing many small sandboxes (HF's SandboxPool): start them, list them, stop them.\n" +
      "Make a sandbox on a pool with hf-sandbox create --pool NAME; its id is HOST.LOCAL.",
    usage: "hf-sandbox pool COMMAND [OPTIONS] [NAME]",
    commands: [
      ["up", "Start a pool's hosts, which keep running after the command; print their ids."],
      ["ls", "List the running hosts of every pool, or of one."],
      ["down", "Stop every host of a pool, and with them their sandboxes."]
    ]
  }
}

const groupOverview = (name: string): string => {
  const group = GROUPS[name]!
  return [
    group.about,
    "",
    "USAGE",
    `  ${group.usage}`,
    "",
    "COMMANDS",
    ...table(group.commands),
    "",
    `Run \`hf-sandbox ${name} COMMAND --help\` for one of them.`,
    "",
    "EXAMPLES",
    ...group.commands.flatMap(([command]) => EXAMPLES[`${name} ${command}`] ?? []).map((e) => `  ${e}`)
  ].join("\n")
}

/**
 * The command the arguments name: `[]` for the root, `["exec"]`, `["process", "ls"]`.
 *
 * @since 0.2.0
 * @category cli
 */
export const commandPath = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const path: Array<string> = []
  for (const arg of args) {
    if (arg.startsWith("-")) {
      if (GLOBAL_FLAGS.has(arg) || arg === "--help" || arg === "-h") continue
      break
    }
    path.push(arg)
    if (GROUPS[path[0]!] === undefined || path.length === 2) break
  }
  return path
}

/**
 * The command a help request is about (`[]`: the root, `["process", "ls"]`), or undefined: no help asked.
 *
 * @since 0.2.0
 * @category cli
 */
export const helpRequest = (args: ReadonlyArray<string>): ReadonlyArray<string> | undefined =>
  args.includes("--help") || args.includes("-h") ? commandPath(args) : undefined

/**
 * The first argument that looks like an option (`-x`, `--xy`, `--xy=1`) but is none of `known` (the
 * command's own and the global ones); negative numbers are values, not options.
 *
 * @since 0.2.0
 * @category cli
 */
export const unknownOption = (args: ReadonlyArray<string>, known: ReadonlySet<string>): string | undefined =>
  args.find((arg) => {
    if (!arg.startsWith("-") || arg === "-" || /^-\d/.test(arg)) return false
    const name = arg.split("=")[0]!
    return !known.has(name) && !GLOBAL_FLAGS.has(name) && !["--help", "-h", "--version"].includes(name)
  })

/**
 * The overviews @effect/cli would print as one 250-character line per command; undefined for a command.
 *
 * @since 0.2.0
 * @category cli
 */
export const overviewFor = (path: ReadonlyArray<string>): string | undefined =>
  path.length === 0
    ? overview()
    : path.length === 1 && GROUPS[path[0]!] !== undefined
      ? groupOverview(path[0]!)
      : undefined

/** Lines @effect/cli adds to every option and argument that say nothing about this one. */
const NOISE = new Set([
  "A true or false value.",
  "A user-defined piece of text.",
  "An integer.",
  "This setting is optional."
])

/** Splits a usage line at spaces outside brackets, so that `(-e, --env NAME=VALUE)...` stays whole. */
const usageWords = (text: string): Array<string> => {
  const words: Array<string> = []
  let depth = 0
  let current = ""
  for (const c of text) {
    if (c === "[" || c === "(" || c === "<") depth++
    if (c === "]" || c === ")" || c === ">") depth--
    if (c === " " && depth <= 0) {
      if (current !== "") words.push(current)
      current = ""
    } else current += c
  }
  if (current !== "") words.push(current)
  return words
}

/** Words to lines of at most `width`, the first after `first`, the others after `rest`. */
const fill = (words: ReadonlyArray<string>, first: string, rest: string, width = WIDTH): Array<string> => {
  const lines: Array<string> = []
  let line = first
  let empty = true
  for (const word of words) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line)
      line = rest + word
    } else line = empty ? line + word : `${line} ${word}`
    empty = false
  }
  lines.push(line)
  return lines
}

/**
 * Any line longer than the width, wrapped at spaces with its own indentation.
 *
 * @since 0.2.0
 * @category cli
 */
export const wrap = (text: string, width = WIDTH): string =>
  text
    .split("\n")
    .flatMap((line) => {
      if (line.length <= width) return [line]
      const indent = /^ */.exec(line)![0]
      return fill(line.trim().split(/ +/), indent, indent, width)
    })
    .join("\n")

/**
 * A command's help as @effect/cli wrote it (without ANSI escapes), made readable: its usage names
 * `hf-sandbox` and wraps, the noise lines go, examples end it.
 *
 * @since 0.2.0
 * @category cli
 */
export const rewrite = (text: string, path: ReadonlyArray<string>): string => {
  const out: Array<string> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (NOISE.has(line.trim())) {
      if (lines[i + 1] === "") i++
      continue
    }
    const usage = /^\$ (\S+)(.*)$/.exec(line)
    if (usage !== undefined && usage !== null && usage[1] === path.at(-1)) {
      out.push(...fill(usageWords(`hf-sandbox ${path.join(" ")}${usage[2]}`), "$ ", "    "))
      continue
    }
    out.push(line)
  }
  const examples = EXAMPLES[path.join(" ")] ?? []
  const body = out.join("\n").trimEnd()
  return wrap(examples.length === 0 ? body : `${body}\n\nEXAMPLES\n\n${examples.map((e) => `  ${e}`).join("\n")}`)
}
