/**
 * Writing a tree that a sandbox offers onto this machine without ever resolving outside the destination.
 *
 * The sandbox is the adversary: it chooses names, types, link targets and modes, and it can change its
 * tree between two downloads into the same place (a link on the first, a directory on the second). It
 * cannot touch this machine's files meanwhile. So the rule is about what the copy itself meets below
 * the destination: every directory on the way to what it writes is checked with `lstat` and created by
 * it when missing; a symlink or file in the way is removed (the link itself) and replaced by a real
 * directory; files go to an exclusive temp file in a checked directory and are renamed into place, which
 * replaces a link rather than writing through it; links are made last, so nothing is ever written
 * through one the copy made.
 */

import { constants, readFileSync } from "node:fs"
import * as NodeFs from "node:fs/promises"
import { join, posix } from "node:path"
import * as Effect from "effect/Effect"
import type { LinkPolicy, SkippedLink } from "../../Files.js"
import { InvalidArgumentError, LocalFileError } from "../../SandboxError.js"

/** The link policies, for the check of an option given from plain JavaScript. */
const POLICIES: ReadonlyArray<LinkPolicy> = ["skip", "refuse", "keep"]

/** The `links` option, checked, or `fallback` when it is not given. */
export const checkLinks = (
  operation: string,
  links: unknown,
  fallback: LinkPolicy
): Effect.Effect<LinkPolicy, InvalidArgumentError> =>
  links === undefined
    ? Effect.succeed(fallback)
    : POLICIES.includes(links as LinkPolicy)
      ? Effect.succeed(links as LinkPolicy)
      : Effect.fail(
          new InvalidArgumentError({
            operation,
            argument: "links",
            detail: `${JSON.stringify(links)} is not one of "skip", "refuse" or "keep"`
          })
        )

/** Enough of a tree entry to judge its links: a `/`-separated name relative to the tree's root. */
export interface TreeEntry {
  readonly name: string
  readonly type: "file" | "dir" | "symlink"
  readonly target?: string | undefined
}

/** Symlinks followed at most this many times in one resolution, as the kernel's ELOOP bound. */
const MAX_HOPS = 40

/**
 * The links of `entries` whose target is absolute or leads out of the tree. A relative target is
 * followed component by component through the tree's own links (each `..` pops the resolved place,
 * not the text), so a chain of links that each look inside cannot lead out; a target that needs more
 * than 40 hops counts as leading out.
 */
export const linksOutside = (entries: ReadonlyArray<TreeEntry>): Array<SkippedLink> => {
  const links = new Map<string, string | undefined>()
  for (const e of entries) if (e.type === "symlink") links.set(e.name, e.target)
  const outside: Array<SkippedLink> = []
  for (const [name, target] of links) {
    let hops = 0
    // The place `target` leads to from the directory `from`, or undefined when it leaves the tree.
    const resolve = (from: ReadonlyArray<string>, target: string | undefined): Array<string> | undefined => {
      if (target === undefined || target === "" || target.startsWith("/") || target.includes("\0")) return undefined
      let place = [...from]
      for (const part of target.split("/")) {
        if (part === "" || part === ".") continue
        if (part === "..") {
          if (place.length === 0) return undefined
          place.pop()
          continue
        }
        const next = [...place, part].join("/")
        if (!links.has(next)) {
          place.push(part)
          continue
        }
        if (++hops > MAX_HOPS) return undefined
        const resolved = resolve(place, links.get(next))
        if (resolved === undefined) return undefined
        place = resolved
      }
      return place
    }
    if (resolve(name.split("/").slice(0, -1), target) === undefined) outside.push({ name, target: target ?? "" })
  }
  return outside.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** The error of a link that `links: "refuse"` stops at. */
export const refusedLink = (operation: string, path: string, link: SkippedLink, direction: "download" | "upload") =>
  new LocalFileError({
    path,
    operation,
    detail:
      `the ${direction === "download" ? "sandbox's" : "local"} symlink ${link.name} points to ${JSON.stringify(link.target)}, ` +
      `outside the copied tree, and links: "refuse" stops the copy (nothing was written). ` +
      `Pass links: "skip" to leave such links out, or links: "keep" to recreate them as they are`
  })

/**
 * Applies a link policy to a tree's entries: the links that lead out of it and the names to leave out
 * (none with "keep"); with "refuse", fails on the first such link before anything is copied.
 */
export const selectLinks = (
  operation: string,
  localDir: string,
  entries: ReadonlyArray<TreeEntry>,
  links: LinkPolicy,
  direction: "download" | "upload"
): Effect.Effect<{ readonly outside: Array<SkippedLink>; readonly left: ReadonlySet<string> }, LocalFileError> => {
  const outside = links === "keep" ? [] : linksOutside(entries)
  const refused = links === "refuse" ? outside[0] : undefined
  return refused !== undefined
    ? Effect.fail(refusedLink(operation, localPath(localDir, refused.name), refused, direction))
    : Effect.succeed({ outside, left: new Set(outside.map((l) => l.name)) })
}

/**
 * The umask of this process. Linux tells it in /proc without changing it; elsewhere `process.umask()`
 * sets it and sets it back, a moment in which a file made by another thread would get no mask at all,
 * so it is read once per transfer, before the transfer makes any file.
 */
export const currentUmask = (): number => {
  try {
    const match = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))
    if (match?.[1] !== undefined) return Number.parseInt(match[1], 8)
  } catch {
    // Not Linux: fall through.
  }
  return process.umask()
}

/**
 * The mode a downloaded entry gets: without setuid, setgid and sticky and masked by `umask`, as if
 * this user had created it, unless `preserve` asks for the sandbox's bits exactly.
 */
export const tamedMode = (mode: number, preserve: boolean, umask: number) =>
  preserve ? mode & 0o7777 : mode & 0o777 & ~umask

/** The `preserveModes` option, checked: only a boolean (or nothing) says what it means. */
export const checkPreserveModes = (
  operation: string,
  preserveModes: unknown
): Effect.Effect<boolean, InvalidArgumentError> =>
  preserveModes === undefined || typeof preserveModes === "boolean"
    ? Effect.succeed(preserveModes === true)
    : Effect.fail(
        new InvalidArgumentError({
          operation,
          argument: "preserveModes",
          detail: `${JSON.stringify(preserveModes)} is not true or false`
        })
      )

const errorDetail = (e: unknown) => (e instanceof Error ? e.message : String(e))
const hasCode = (e: unknown, ...codes: ReadonlyArray<string>) =>
  typeof e === "object" && e !== null && codes.includes((e as { code?: string }).code ?? "")

/** An async step on a local path, its failure a `LocalFileError` naming that path. */
export const local = <A>(operation: string, path: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (e) => (e instanceof LocalFileError ? e : new LocalFileError({ path, operation, detail: errorDetail(e) }))
  })

const inTheWay = (operation: string, path: string, what: string) =>
  new LocalFileError({
    path,
    operation,
    detail:
      `a local directory is in the way of the sandbox's ${what}; downloads merge into directories but never ` +
      `replace one: remove it or choose another destination`
  })

/**
 * Makes `root/parts...` a real directory, checking every component below `root` without following any:
 * a missing one is created (0o700 until the copy sets its mode), a symlink or file is removed and
 * replaced by a directory. A copy runs it for every directory it needs before writing files, one at a
 * time; it also survives a parallel run for the same path.
 */
const ensureDirPromise = async (root: string, parts: ReadonlyArray<string>) => {
  let path = root
  for (const part of parts) {
    path = join(path, part)
    const info = await NodeFs.lstat(path).catch((e) => (hasCode(e, "ENOENT") ? undefined : Promise.reject(e)))
    if (info?.isDirectory()) continue
    // ENOENT or EISDIR: a parallel copy replaced it first.
    if (info !== undefined)
      await NodeFs.unlink(path).catch((e) => (hasCode(e, "ENOENT", "EISDIR") ? undefined : Promise.reject(e)))
    await NodeFs.mkdir(path, 0o700).catch(async (e) => {
      // A parallel copy made it first: fine if it is a directory now, never if it is anything else.
      if (!hasCode(e, "EEXIST") || !(await NodeFs.lstat(path)).isDirectory()) throw e
    })
  }
  return path
}

/** {@link ensureDirPromise} as an effect; the directory's path on success. */
export const ensureDir = (operation: string, root: string, parts: ReadonlyArray<string>) =>
  local(operation, join(root, ...parts), () => ensureDirPromise(root, parts))

/**
 * Renames `temp` (a file or link the copy made in the same checked directory) over `path`: a file or
 * symlink there is replaced as a whole, a directory refused.
 */
export const placeOver = (operation: string, temp: string, path: string, what: string) =>
  local(operation, path, async () => {
    const info = await NodeFs.lstat(path).catch((e) => (hasCode(e, "ENOENT") ? undefined : Promise.reject(e)))
    if (info?.isDirectory()) throw inTheWay(operation, path, what)
    await NodeFs.rename(temp, path)
  })

/** Creates the link `temp -> target` and renames it over `path` (see {@link placeOver}). */
export const placeLink = (operation: string, temp: string, target: string, path: string) =>
  local(operation, path, () => NodeFs.symlink(target, temp)).pipe(
    Effect.zipRight(placeOver(operation, temp, path, "a symlink")),
    Effect.tapError(() => Effect.promise(() => NodeFs.unlink(temp).catch(() => undefined)))
  )

/** Sets a directory's mode through a handle opened without following a link at its place. */
export const chmodDir = (operation: string, path: string, mode: number) =>
  local(operation, path, async () => {
    const handle = await NodeFs.open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(
      async (e) => {
        // A directory of ours that we may not read (merged into as it was): checked, then set by path.
        if (!hasCode(e, "EACCES") || !(await NodeFs.lstat(path)).isDirectory()) throw e
        await NodeFs.chmod(path, mode)
        return undefined
      }
    )
    if (handle === undefined) return
    try {
      await handle.chmod(mode)
    } finally {
      await handle.close()
    }
  })

/** The local path of a tree entry, `name` being `/`-separated and already checked to stay inside. */
export const localPath = (root: string, name: string) => join(root, ...name.split("/"))

/** The directory parts of a `/`-separated name. */
export const parentParts = (name: string) =>
  posix
    .dirname(name)
    .split("/")
    .filter((p) => p !== "" && p !== ".")
