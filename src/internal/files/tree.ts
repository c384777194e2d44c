/**
 * Whole-tree copies: a local directory into the sandbox, a sandbox directory onto this machine (with the
 * rules of localTree.ts for what the sandbox may name).
 */
import { randomBytes } from "node:crypto"
import type { Dirent } from "node:fs"
import * as NodeFs from "node:fs/promises"
import { join, posix } from "node:path"
import * as Effect from "effect/Effect"
import type { DownloadDirOptions, TreeCopy, UploadDirOptions } from "../../Files.js"
import type * as Protocol from "../../Protocol.js"
import { BadRequestError, ConnectionLostError, LocalFileError } from "../../SandboxError.js"
import { type Context, localFs } from "./context.js"
import { download } from "./download.js"
import * as LocalTree from "./localTree.js"
import { annotateTree, makePlan, type Plan } from "./plan.js"
import { upload } from "./upload.js"

/** A local tree entry, found without following symlinks. */
interface LocalEntry {
  /** Path relative to the tree's root, with `/` separators. */
  readonly name: string
  readonly type: "file" | "dir" | "symlink"
  readonly size: number
  readonly mode: number
  readonly target?: string | undefined
}

const walkLocal = async (root: string): Promise<Array<LocalEntry>> => {
  const entries: Array<LocalEntry> = []
  const visit = async (relative: string): Promise<void> => {
    const dirents: Array<Dirent> = await NodeFs.readdir(join(root, relative), { withFileTypes: true })
    dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const dirent of dirents) {
      const name = relative === "" ? dirent.name : `${relative}/${dirent.name}`
      const path = join(root, name)
      const info = await NodeFs.lstat(path)
      const mode = info.mode & 0o7777
      if (info.isSymbolicLink()) {
        entries.push({ name, type: "symlink", size: 0, mode, target: await NodeFs.readlink(path) })
      } else if (info.isDirectory()) {
        entries.push({ name, type: "dir", size: 0, mode })
        await visit(name)
      } else if (info.isFile()) {
        entries.push({ name, type: "file", size: info.size, mode })
      }
      // Sockets, fifos and devices have no meaning in a copy: skipped, like `cp -r` without `-a` would not.
    }
  }
  await visit("")
  return entries
}

/** A name from a remote listing must stay inside the tree it was listed from. */
const isSafeRelative = (name: string) =>
  name !== "" &&
  !name.startsWith("/") &&
  !name.includes("\0") &&
  name.split("/").every((part) => part !== "" && part !== "." && part !== "..")

export const uploadDir = (ctx: Context, localDir: string, remoteDir: string, options: UploadDirOptions) =>
  Effect.gen(function* () {
    const operation = "files.uploadDir"
    yield* localFs(ctx, operation, localDir)
    const links = yield* LocalTree.checkLinks(operation, options.links, "keep")
    const walked = yield* Effect.tryPromise({
      try: () => walkLocal(localDir),
      catch: (e) =>
        new LocalFileError({ path: localDir, operation, detail: e instanceof Error ? e.message : String(e) })
    })
    const { outside, left } = yield* LocalTree.selectLinks(operation, localDir, walked, links, "upload")
    const entries = walked.filter((e) => !left.has(e.name))
    yield* Effect.annotateCurrentSpan("files.skipped_links", outside.length)
    const total = entries.reduce((sum, e) => sum + e.size, 0)
    const plan = yield* makePlan(operation, options, total)
    yield* annotateTree(entries.length, total, plan)
    const remote = (name: string) => posix.join(remoteDir, name)
    const dirs = entries.filter((e) => e.type === "dir")
    // Directories first (empty ones too), files next, links after the files (so that nothing is ever
    // written through one), and directory modes last (so that a read-only directory is filled first).
    yield* plan.slot(ctx.wire.mkdir(remoteDir))
    yield* Effect.forEach(dirs, (d) => plan.slot(ctx.wire.mkdir(remote(d.name))), {
      concurrency: plan.parallelism,
      discard: true
    })
    yield* Effect.forEach(
      entries.filter((e) => e.type === "file"),
      (f) => upload(ctx, operation, join(localDir, f.name), remote(f.name), undefined, plan, f),
      { concurrency: plan.parallelism, discard: true }
    )
    yield* Effect.forEach(
      entries.filter((e) => e.type === "symlink"),
      // A merge, like `cp -r`: what the tree copy brings replaces what was there.
      (l) => plan.slot(ctx.wire.symlink(remote(l.name), l.target ?? "", true)),
      { concurrency: plan.parallelism, discard: true }
    )
    yield* Effect.forEach(dirs, (d) => plan.slot(ctx.wire.chmod(remote(d.name), d.mode.toString(8))), {
      concurrency: plan.parallelism,
      discard: true
    })
    yield* Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())
    return { skippedLinks: outside } satisfies TreeCopy
  })

export const downloadDir = (ctx: Context, remoteDir: string, localDir: string, options: DownloadDirOptions) =>
  Effect.gen(function* () {
    const operation = "files.downloadDir"
    const fs = yield* localFs(ctx, operation, localDir)
    const local = (path: string) => (e: { readonly message: string }) =>
      new LocalFileError({ path, operation, detail: e.message })
    const links = yield* LocalTree.checkLinks(operation, options.links, "skip")
    const preserve = yield* LocalTree.checkPreserveModes(operation, options.preserveModes)
    const modes = { preserve, umask: LocalTree.currentUmask() }
    const { entries, skipped = [] } = yield* ctx.wire.list(remoteDir, true)
    // A partial copy must not pass for a whole one.
    const unreadable = skipped[0]
    if (unreadable !== undefined) {
      return yield* Effect.fail(
        new BadRequestError({
          operation,
          status: 400,
          code: unreadable.code,
          detail: `cannot copy ${remoteDir}: ${unreadable.error}${skipped.length > 1 ? ` (and ${skipped.length - 1} more)` : ""}`
        })
      )
    }
    const unsafe = entries.find((e) => !isSafeRelative(e.name))
    if (unsafe !== undefined) {
      return yield* Effect.fail(
        new ConnectionLostError({
          operation,
          detail: `the sandbox listed an entry outside ${remoteDir}: ${unsafe.name}`
        })
      )
    }
    const { outside, left } = yield* LocalTree.selectLinks(operation, localDir, entries, links, "download")
    const total = entries.reduce((sum, e) => sum + (e.type === "file" ? e.size : 0), 0)
    const plan = yield* makePlan(operation, options, total)
    yield* annotateTree(entries.length, total, plan)
    yield* Effect.annotateCurrentSpan("files.skipped_links", outside.length)
    // Sizes are known from the listing: the ranged reads must not count them again.
    const filePlan: Plan = { ...plan, progress: { ...plan.progress, grow: () => {} } }
    const dirs = entries.filter((e) => e.type === "dir")
    const localOf = (e: Protocol.FileEntry) => LocalTree.localPath(localDir, e.name)
    // `localDir` is the caller's and followed as given; nothing below it is.
    yield* fs.makeDirectory(localDir, { recursive: true }).pipe(Effect.mapError(local(localDir)))
    // Every directory on the way to what is written, checked (and made) one at a time, before the
    // parallel file copies, so that two of them never replace the same entry at once.
    const needed = new Set<string>()
    for (const e of entries) {
      const parts = e.type === "dir" ? e.name.split("/") : LocalTree.parentParts(e.name)
      for (let i = 1; i <= parts.length; i++) needed.add(parts.slice(0, i).join("/"))
    }
    yield* Effect.forEach([...needed].sort(), (name) => LocalTree.ensureDir(operation, localDir, name.split("/")), {
      discard: true
    })
    yield* Effect.forEach(
      entries.filter((e) => e.type === "file"),
      (f) => download(ctx, operation, f.path, localOf(f), filePlan, modes, true),
      { concurrency: plan.parallelism, discard: true }
    )
    // Links last, one at a time, each renamed over what is there (never a directory): nothing is
    // written through a link, and nothing is written after one is made but directory modes.
    yield* Effect.forEach(
      entries.filter((e) => e.type === "symlink" && !left.has(e.name)),
      (l) => {
        const path = localOf(l)
        return LocalTree.placeLink(operation, `${path}.${randomBytes(6).toString("hex")}.part`, l.target ?? "", path)
      },
      { discard: true }
    )
    // Deepest first, so that a read-only directory is filled before it closes; through handles opened
    // without following a link.
    yield* Effect.forEach(
      [...dirs].reverse(),
      (d) =>
        LocalTree.chmodDir(
          operation,
          localOf(d),
          LocalTree.tamedMode(Number.parseInt(d.mode, 8), preserve, modes.umask)
        ),
      { discard: true }
    )
    yield* Effect.annotateCurrentSpan("files.bytes", plan.progress.bytes())
    return { skippedLinks: outside } satisfies TreeCopy
  })
