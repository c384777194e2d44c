/**
 * `hf-sandbox cp SRC DEST`: files and directory trees between this machine and a sandbox, with docker
 * cp's rules for where they land.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { LinkPolicy, SkippedLink } from "../../Files.js"
import type * as Sandbox from "../../Sandbox.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { action, isLocalId } from "../action.js"
import { attach } from "../attach.js"
import { globals } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"
import { CliError, type CopyTarget, bytes as formatBytes, UsageError } from "../parse.js"

const usage = (message: string) => new UsageError({ message })
const failure = (message: string) => new CliError({ message })

/** `dir/.` means the directory's contents, not the directory itself (docker cp). */
const contentsOnly = (p: string) => /(^|\/)\.$/.test(p)

const localKind = (p: string): "file" | "dir" | undefined => {
  const stat = fs.statSync(p, { throwIfNoEntry: false })
  return stat === undefined ? undefined : stat.isDirectory() ? "dir" : "file"
}

/** Names the links a tree copy left out (a few of them; the JSON output has them all). */
const skippedNote = (links: ReadonlyArray<SkippedLink>) => {
  const shown = links.slice(0, 5).map((l) => `${l.name} -> ${l.target}`)
  const more = links.length > shown.length ? `, and ${links.length - shown.length} more` : ""
  return (
    `Skipped ${links.length} symlink${links.length === 1 ? "" : "s"} that lead${links.length === 1 ? "s" : ""} out of the tree ` +
    `(${shown.join(", ")}${more}); --links keep recreates them, --links refuse stops such a copy`
  )
}

type Local = Extract<CopyTarget, { _tag: "Local" }>
type Remote = Extract<CopyTarget, { _tag: "Remote" }>

interface CopyOptions {
  readonly links?: LinkPolicy | undefined
  readonly preserveModes?: boolean | undefined
}

/** What both directions of a copy work with. */
interface Copying {
  readonly sb: Sandbox.Sandbox
  readonly options: CopyOptions
  /** The bytes moved so far, as the progress reports them. */
  readonly progress: { moved: number }
  readonly onProgress: (p: { readonly bytes: number; readonly total: number | undefined }) => void
}

/** Where a copy landed (`ID:path` in a sandbox), and the links a tree copy left out. */
interface Landed {
  readonly landed: string
  readonly skippedLinks: ReadonlyArray<SkippedLink>
}

const shown = (target: CopyTarget) => (target._tag === "Remote" ? `${target.id}:${target.path}` : target.path)

const remoteKind = (sb: Sandbox.Sandbox, p: string) =>
  sb.files.stat(p).pipe(
    Effect.map((info) => (info.type === "dir" ? ("dir" as const) : ("file" as const))),
    Effect.catchTag("FileNotFoundError", () => Effect.succeed(undefined))
  )

/**
 * Copies `source` to `destination`, exactly one of them in a sandbox. As with docker cp: a file copied
 * onto an existing directory (or a path ending in `/`) lands inside it under its own name; a directory
 * copied onto an existing directory lands inside it, unless the source ends in `/.`, which copies its
 * contents; a directory copied to a path that does not exist becomes that path.
 */
const copy = (
  source: CopyTarget,
  destination: CopyTarget,
  mode: Output.Mode,
  options: CopyOptions = {}
): Effect.Effect<void, unknown, SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    if (source._tag === destination._tag) {
      return yield* usage(
        source._tag === "Local"
          ? "one of SRC and DEST must be in a sandbox, written ID:PATH (e.g. hf-sandbox cp ./data ID:/work)"
          : "cp copies between this machine and a sandbox: one of SRC and DEST must be a local path"
      )
    }
    if (options.preserveModes === true && source._tag === "Local") {
      return yield* usage(
        "--preserve-modes applies to copies from a sandbox (a copy to a sandbox always keeps the permission bits)"
      )
    }
    const remote = source._tag === "Remote" ? source : (destination as Remote)
    const sb = yield* attach(remote.id)
    const bar = yield* Output.progress(mode, `${shown(source)} → ${shown(destination)}`)
    yield* Effect.addFinalizer(() => bar.clear)
    const progress = { moved: 0 }
    const copying: Copying = {
      sb,
      options,
      progress,
      onProgress: (p) => {
        progress.moved = p.bytes
        bar.update(p.bytes, p.total)
      }
    }
    const { landed, skippedLinks } =
      source._tag === "Local"
        ? yield* toSandbox(copying, source, destination as Remote)
        : yield* fromSandbox(copying, source, (destination as Local).path)
    const moved = progress.moved
    yield* bar.clear
    if (mode.json) yield* Output.json({ source: shown(source), destination: landed, bytes: moved, skippedLinks })
    else {
      yield* Output.note(mode, `Copied ${formatBytes(moved)} to ${landed}`)
      // A warning, not a note: `-q` must not hide that the copy is not whole.
      if (skippedLinks.length > 0) yield* Output.write("stderr", `${skippedNote(skippedLinks)}\n`)
    }
  })

/** A local file or tree into the sandbox. */
const toSandbox = (copying: Copying, source: Local, remote: Remote) =>
  Effect.gen(function* () {
    const { sb, onProgress, options, progress } = copying
    const kind = localKind(source.path)
    if (kind === undefined) return yield* failure(`no such file or directory on this machine: ${source.path}`)
    const existing = yield* remoteKind(sb, remote.path)
    const into =
      existing === "dir" || (kind === "file" && remote.path.endsWith("/"))
        ? path.posix.join(remote.path, path.basename(path.resolve(source.path)))
        : remote.path
    let landed: string
    let skippedLinks: ReadonlyArray<SkippedLink> = []
    if (kind === "dir") {
      if (existing === "file") return yield* failure(`cannot copy a directory onto the file ${shown(remote)}`)
      landed = contentsOnly(source.path) ? remote.path : into
      ;({ skippedLinks } = yield* sb.files.uploadDir(source.path, landed, { onProgress, links: options.links }))
    } else {
      landed = into
      yield* sb.files.upload(source.path, landed, { onProgress })
      progress.moved = Math.max(progress.moved, fs.statSync(source.path).size)
    }
    return { landed: `${remote.id}:${landed}`, skippedLinks } satisfies Landed
  })

/** A sandbox file or tree to this machine. */
const fromSandbox = (copying: Copying, source: Remote, target: string) =>
  Effect.gen(function* () {
    const { sb, onProgress, options, progress } = copying
    const kind = yield* remoteKind(sb, source.path)
    if (kind === undefined) return yield* failure(`no such file or directory in ${source.id}: ${source.path}`)
    const existing = localKind(target)
    const into =
      existing === "dir" || (kind === "file" && target.endsWith("/"))
        ? path.join(target, path.posix.basename(path.posix.normalize(source.path)))
        : target
    let landed: string
    let skippedLinks: ReadonlyArray<SkippedLink> = []
    if (kind === "dir") {
      if (existing === "file") return yield* failure(`cannot copy a directory onto the file ${target}`)
      landed = contentsOnly(source.path) ? target : into
      ;({ skippedLinks } = yield* sb.files.downloadDir(source.path, landed, {
        onProgress,
        links: options.links,
        preserveModes: options.preserveModes
      }))
    } else {
      landed = into
      yield* sb.files.download(source.path, landed, { onProgress, preserveModes: options.preserveModes })
      progress.moved = Math.max(progress.moved, fs.statSync(landed).size)
    }
    return { landed, skippedLinks } satisfies Landed
  })

export const cp = Command.make(
  "cp",
  {
    ...globals,
    source: Args.text({ name: "SRC" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    destination: Args.text({ name: "DEST" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    links: Options.choice("links", ["skip", "refuse", "keep"]).pipe(
      Options.optional,
      Options.withDescription(
        "Symlinks in a directory copy that are absolute or lead out of the tree: skip them (default from a sandbox), refuse the copy, or keep them (default to a sandbox)."
      )
    ),
    preserveModes: Options.boolean("preserve-modes").pipe(
      Options.withDescription(
        "From a sandbox: keep setuid, setgid, sticky and the exact permission bits (by default they are dropped and your umask applies)."
      )
    )
  },
  action(
    (a, mode) =>
      copy(Parse.copyTarget(a.source), Parse.copyTarget(a.destination), mode, {
        links: Option.getOrUndefined(a.links),
        preserveModes: a.preserveModes
      }),
    {
      impliesLocal: (a) =>
        [a.source, a.destination].some((raw) => {
          const target = Parse.copyTarget(raw)
          return target._tag === "Remote" && isLocalId(target.id)
        })
    }
  )
).pipe(
  Command.withDescription(
    "Copy files or directories between this machine and a sandbox, docker-style: cp ./data ID:/work, cp ID:/work/out ./out."
  )
)
