/**
 * Parsing of the CLI's own argument formats (durations, `K=V`, secrets, `ID:/path`), and the usage
 * error they fail with.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as HfJobs from "../HfJobs.js"
import * as Durations from "../internal/duration.js"
import * as JobLabels from "../internal/hfJobs/jobLabels.js"
import * as Volumes from "../internal/hfJobs/volumes.js"

/** A mistake on the command line: reported with its message and exit code 2, never a stack trace. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** Something the command could not do (a missing file, an unknown sandbox): its message and exit code 1. */
/** A failure the CLI words itself; `tag` keeps the tag of the library error it rewords (for `--json`). */
export class CliError extends Data.TaggedError("CliError")<{ readonly message: string; readonly tag?: string }> {}

const usage = (message: string) => new UsageError({ message })

/** `90` (seconds), `500ms`, `90s`, `30m`, `2h`, `1d`, `5 minutes`: the library's grammar (internal/duration). */
export const duration = (flag: string, raw: string): Effect.Effect<Duration.Duration, UsageError> => {
  const decoded = Durations.decode(raw)
  return decoded === undefined
    ? Effect.fail(usage(`invalid ${flag} "${raw}": use a number of seconds or a duration like 90s, 30m, 2h, 1d`))
    : Effect.succeed(decoded)
}

/** An optional duration flag. */
export const optionalDuration = (
  flag: string,
  raw: { readonly _tag: "Some"; readonly value: string } | { readonly _tag: "None" }
): Effect.Effect<Duration.Duration | undefined, UsageError> =>
  raw._tag === "None" ? Effect.succeed(undefined) : duration(flag, raw.value)

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** `-e K=V`, repeated. */
export const envPairs = (values: ReadonlyArray<string>): Effect.Effect<Record<string, string>, UsageError> =>
  Effect.suspend(() => {
    const env: Record<string, string> = {}
    for (const value of values) {
      const eq = value.indexOf("=")
      const name = eq < 0 ? value : value.slice(0, eq)
      if (eq < 0 || !NAME.test(name)) {
        return Effect.fail(usage(`invalid -e/--env "${value}": expected NAME=VALUE`))
      }
      env[name] = value.slice(eq + 1)
    }
    return Effect.succeed(env)
  })

/**
 * `-s K=V` or `-s K` (the value of `K` in this process's environment), repeated. Error messages name the
 * variable, never its value.
 */
export const secrets = (
  values: ReadonlyArray<string>,
  environment: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<Record<string, string>, UsageError> =>
  Effect.suspend(() => {
    const out: Record<string, string> = {}
    for (const value of values) {
      const eq = value.indexOf("=")
      const name = eq < 0 ? value : value.slice(0, eq)
      if (!NAME.test(name)) return Effect.fail(usage(`invalid -s/--secret: expected NAME or NAME=VALUE`))
      const secret = eq < 0 ? environment[name] : value.slice(eq + 1)
      if (secret === undefined) {
        return Effect.fail(usage(`-s/--secret ${name}: ${name} is not set in the environment (or pass ${name}=VALUE)`))
      }
      out[name] = secret
    }
    return Effect.succeed(out)
  })

/**
 * `--label KEY=VALUE` or `--label KEY` (an empty value, as `hf jobs run --label`), repeated; checked as
 * the Hub checks labels, before anything is created.
 */
export const labels = (values: ReadonlyArray<string>): Effect.Effect<Record<string, string>, UsageError> =>
  Effect.suspend(() => {
    const out: Record<string, string> = {}
    for (const value of values) {
      const eq = value.indexOf("=")
      out[eq < 0 ? value : value.slice(0, eq)] = eq < 0 ? "" : value.slice(eq + 1)
    }
    const bad = JobLabels.problem(out)
    return bad === undefined ? Effect.succeed(out) : Effect.fail(usage(`--label: ${bad}`))
  })

/** One side of `cp`: a path on this machine, or `ID:path` in a sandbox. */
export type CopyTarget =
  | { readonly _tag: "Local"; readonly path: string }
  | { readonly _tag: "Remote"; readonly id: string; readonly path: string }

/**
 * Docker's rule: `ID:path` (or `namespace/ID:path`) names a sandbox path; anything starting with `/`, `.` or `~`, or without a
 * colon, is local (write `./a:b` for a local name with a colon in it).
 */
export const copyTarget = (raw: string): CopyTarget => {
  // `namespace/ID:path` too, for an HF job id (24 hex digits) only: `dir/file:x` stays a local path.
  const match = /^((?:[A-Za-z0-9][A-Za-z0-9_.-]*\/[0-9a-f]{24})|[A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$/.exec(raw)
  if (match === null || /^[./~]/.test(raw)) return { _tag: "Local", path: raw }
  return { _tag: "Remote", id: match[1]!, path: match[2] === "" ? "." : match[2]! }
}

/** A positional value that looks like an option was an option the command does not know. */
export const notAnOption = (what: string, value: string): Effect.Effect<string, UsageError> =>
  value.startsWith("-") && value !== "-"
    ? Effect.fail(usage(`unknown option ${value} where ${what} was expected (see --help)`))
    : Effect.succeed(value)

/**
 * An `--idle-timeout` as the library takes it: `0` is "never", which the library spells
 * `Duration.infinity` (it refuses zero).
 */
export const idleTimeout = (idle: Duration.Duration | undefined): Duration.Duration | undefined =>
  idle !== undefined && Duration.toMillis(idle) === 0 ? Duration.infinity : idle

/** `--port` values: whole numbers from 1 to 65535. */
export const ports = (values: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<number>, UsageError> =>
  Effect.forEach(values, (raw) =>
    /^[0-9]{1,5}$/.test(raw) && Number(raw) >= 1 && Number(raw) <= 65535
      ? Effect.succeed(Number(raw))
      : Effect.fail(
          new UsageError({ message: `--port must be a port number from 1 to 65535, got ${JSON.stringify(raw)}` })
        )
  )

/**
 * The command of `exec`/`spawn`/`run`: everything after `--` (split off before parsing, so it is never
 * taken for options), or else the trailing arguments.
 */
export const commandOf = (
  forced: ReadonlyArray<string> | undefined,
  positional: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<string>, UsageError> => {
  if (forced !== undefined && positional.length > 0) {
    const first = positional[0]!
    return Effect.fail(
      usage(
        first.startsWith("-")
          ? `unknown option ${first} (see --help)`
          : `unexpected argument ${first} before -- (the command goes after --)`
      )
    )
  }
  const command = forced ?? positional
  if (command.length === 0) return Effect.fail(usage("missing the command to run: add -- CMD [ARG...]"))
  if (forced === undefined && command[0]!.startsWith("-")) {
    return Effect.fail(usage(`unknown option ${command[0]} (put the command after --)`))
  }
  return Effect.succeed(command)
}

/** One word runs through `/bin/sh -c` (so `'a | b'` works); several are exec'd as they are. */
export const commandForm = (command: ReadonlyArray<string>): string | ReadonlyArray<string> =>
  command.length === 1 ? command[0]! : command

/** Bytes for people: `512 B`, `1.5 KiB`, `12.3 MiB`. */
export const bytes = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/** `--flavor`, repeated or comma-separated: one name, an ordered list, or none. */
export const flavors = (
  given: ReadonlyArray<string>
): Effect.Effect<string | ReadonlyArray<string> | undefined, UsageError> => {
  const names = given.flatMap((value) => value.split(",")).map((name) => name.trim())
  if (names.some((name) => name === "")) {
    return Effect.fail(
      usage(`--flavor ${given.join(" --flavor ")}: a flavor name is empty (e.g. --flavor h200,a100-large)`)
    )
  }
  return Effect.succeed(names.length === 0 ? undefined : names.length === 1 ? names[0] : names)
}

/** `--volume`s in `hf jobs run -v`'s grammar, as the library's volumes. */
export const volumes = (given: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<HfJobs.Volume>, UsageError> =>
  Effect.try({
    try: () => given.map(Volumes.parse),
    catch: (error) => usage(`--${error instanceof Error ? error.message : String(error)}`)
  })
