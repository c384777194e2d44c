/**
 * The Hub emulator's repositories: models, datasets and Spaces held in memory, with the routes a
 * sandbox's Hub transfer uses, in the shapes `huggingface_hub` reads (`hf_api.py`, `file_download.py`):
 * `POST /api/{type}s/{repo}/paths-info/{revision}`, `GET /api/{type}s/{repo}/tree/{revision}/{path}`
 * (paginated by a `Link` header), `GET|HEAD /{prefix}{repo}/resolve/{revision}/{path}` (with
 * `X-Repo-Commit` and `ETag`; an LFS file redirects to the CDN route `/__emulator/cdn/{sha256}`), and
 * `POST /api/{type}s/{repo}/preupload/{revision}` and `.../commit/{revision}` (NDJSON, in
 * ./repoWrites.ts), and the LFS batch API, storage and verify (./repoLfs.ts). Access is as strict
 * as the Hub's: a private repo answers 401 without a token and 404 to a token of someone else; writing
 * needs a token of the repo's namespace.
 */
import { createHash } from "node:crypto"
import type * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { ORG } from "./accounts.js"
import { answer, readBody, sendError, sendJson } from "./http.js"
import type { OAuthState, Verdict } from "./oauth.js"
import { handleLfs, type LfsContext, type LfsTarget } from "./repoLfs.js"
import { commit as commitTo, preupload } from "./repoWrites.js"
import { hex } from "./util.js"
import type { EmulatedVolume, VolumeRefusal } from "./volumes.js"

type RepoType = "model" | "dataset" | "space"

export interface StoredFile {
  readonly content: Buffer
  readonly lfs: boolean
}

export interface Commit {
  readonly oid: string
  readonly files: ReadonlyMap<string, StoredFile>
  /** Other names this commit answers to as a revision (a seed's `tags`). */
  readonly tags?: ReadonlyArray<string>
}

export interface Repo {
  readonly type: RepoType
  readonly id: string
  readonly private: boolean
  /** Oldest first; `main` is the last. */
  readonly commits: Array<Commit>
  readonly pageSize: number
  readonly stallAfterBytes: number | undefined
  /** The next `times` downloads of a regular file are cut after `afterBytes` bytes (a seed's `cutDownloads`). */
  readonly cutDownloads: { readonly afterBytes: number; times: number } | undefined
  /** `preupload` answers `lfs` for files of at least this many bytes. */
  readonly lfsThreshold: number
  /** LFS objects above this many bytes are uploaded in parts of this size. */
  readonly lfsMultipartThreshold: number
  readonly corruptLfsUploads: boolean
  /** The LFS batch API refuses objects above this many bytes (422). */
  readonly lfsMaxObjectBytes: number
}

/** The Hub's own line for LFS: 10 MB (`preupload` answers `lfs` from there). */
const LFS_THRESHOLD = 10 * 1024 * 1024
/** The Hub's hard limit for one file: 500 GB (hub-docs storage-limits.md). */
const MAX_FILE_BYTES = 500 * 1000 ** 3
/** Above this the emulated storage asks for a multipart upload. */
const MULTIPART_THRESHOLD = 64 * 1024 * 1024

const gitOid = (content: Buffer) => createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex")
const sha256 = (content: Buffer) => createHash("sha256").update(content).digest("hex")

const TYPES: Record<string, RepoType> = { models: "model", datasets: "dataset", spaces: "space" }

export interface ReposContext {
  readonly oauth: OAuthState
  readonly user: () => string
  /** The emulator's base URL (absolute `Link` headers). */
  readonly url: () => string
}

export class Repos {
  private readonly repos = new Map<string, Repo>()
  private readonly blobs = new Map<string, StoredFile>()
  /** The LFS routes' state: the blobs, uploads handed out and every request the storage saw. */
  readonly lfs: LfsContext
  /** Responses a stalled download holds open: cut when the emulator closes. */
  readonly held = new Set<http.ServerResponse>()

  constructor(readonly ctx: ReposContext) {
    this.lfs = { blobs: this.blobs, url: ctx.url, pending: new Map(), storageRequests: [] }
  }

  seed(seed: Testing.HubRepoSeed): string {
    const type = seed.repoType ?? "model"
    const lfs = new Set(seed.lfs ?? [])
    const files = new Map<string, StoredFile>()
    for (const [path, content] of Object.entries(seed.files)) {
      const file = { content: Buffer.from(content), lfs: lfs.has(path) }
      files.set(path, file)
      if (file.lfs) this.blobs.set(sha256(file.content), file)
    }
    const oid = hex(20)
    const existing = this.repos.get(`${type}/${seed.repo}`)
    const commits = existing?.commits ?? []
    commits.push({ oid, files, tags: seed.tags ?? [] })
    this.repos.set(`${type}/${seed.repo}`, {
      type,
      id: seed.repo,
      private: seed.private ?? existing?.private ?? false,
      commits,
      pageSize: seed.treePageSize ?? 1000,
      stallAfterBytes: seed.stallAfterBytes,
      cutDownloads: seed.cutDownloads === undefined ? undefined : { ...seed.cutDownloads },
      lfsThreshold: seed.lfsThreshold ?? existing?.lfsThreshold ?? LFS_THRESHOLD,
      lfsMultipartThreshold: seed.lfsMultipartThreshold ?? existing?.lfsMultipartThreshold ?? MULTIPART_THRESHOLD,
      corruptLfsUploads: seed.corruptLfsUploads ?? existing?.corruptLfsUploads ?? false,
      lfsMaxObjectBytes: seed.lfsMaxObjectBytes ?? existing?.lfsMaxObjectBytes ?? MAX_FILE_BYTES
    })
    return oid
  }

  /** A revision's files (`main` by default), or undefined when there is no such repo or revision. */
  files(repo: string, repoType: RepoType = "model", revision = "main"): Record<string, Uint8Array> | undefined {
    const found = this.repos.get(`${repoType}/${repo}`)
    const commit = found === undefined ? undefined : revisionOf(found, revision)
    if (commit === undefined) return undefined
    return Object.fromEntries([...commit.files].map(([path, file]) => [path, new Uint8Array(file.content)]))
  }

  /** Answers a repo route, or returns false when the request is not one. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean {
    const segments = url.pathname.split("/").filter((s) => s !== "")
    if (segments[0] === "__emulator" && segments[1] === "cdn" && segments.length === 3) {
      const blob = this.blobs.get(segments[2]!)
      if (blob === undefined) sendError(res, 404, "Not found")
      else serve(req, res, { content: blob.content, etag: sha256(blob.content) }, this.held)
      return true
    }
    const write = (target: LfsTarget) => this.access(req, res, { ...target, revision: "main", rest: "" }, true)
    if (handleLfs(this.lfs, write, req, res, segments)) return true
    const api = segments[0] === "api" && TYPES[segments[1] ?? ""] !== undefined
    const action = api
      ? segments[4]
      : segments[0] === "datasets" || segments[0] === "spaces"
        ? segments[3]
        : segments[2]
    const type: RepoType = api ? TYPES[segments[1]!]! : (TYPES[segments[0]!] ?? "model")
    const base = api ? 2 : type === "model" ? 0 : 1
    const route = api ? `api:${action}` : `file:${action}`
    if (!["api:paths-info", "api:tree", "api:preupload", "api:commit", "file:resolve"].includes(route)) return false
    if (segments.length < base + 4) return false
    const repoId = `${segments[base]}/${segments[base + 1]}`
    const revision = decodeURIComponent(segments[base + 3]!)
    const rest = segments
      .slice(base + 4)
      .map(decodeURIComponent)
      .join("/")
    answer(res, this.route(req, res, url, { type, repoId, revision, rest, action: action! }))
    return true
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, target: Target) {
    const write = target.action === "preupload" || target.action === "commit"
    const repo = this.access(req, res, target, write)
    if (repo === undefined) return req.resume()
    const commit = revisionOf(repo, target.revision)
    if (commit === undefined) {
      req.resume()
      return sendError(res, 404, `Invalid rev id: ${target.revision}`, { "x-error-code": "RevisionNotFound" })
    }
    if (target.action === "paths-info") return this.pathsInfo(req, res, commit)
    if (target.action === "tree") return tree(res, url, repo, commit, target.rest, this.ctx.url())
    if (target.action === "resolve") return this.resolve(req, res, repo, commit, target.rest)
    if (target.action === "preupload") return preupload(req, res, repo)
    return commitTo(req, res, repo, commit, target.revision, this.ctx.url(), this.blobs)
  }

  /** The repo when the request may see it (and write it, for `write`), else the Hub's refusal is sent. */
  private access(req: http.IncomingMessage, res: http.ServerResponse, target: Target, write: boolean) {
    const authorization = req.headers.authorization
    const verdict = authorization === undefined ? undefined : this.ctx.oauth.verify(authorization)
    if (verdict?._tag === "Invalid") {
      sendError(res, 401, "Invalid credentials in Authorization header")
      return undefined
    }
    const mine = mayWrite(this.ctx, verdict, target.repoId)
    const repo = this.repos.get(`${target.type}/${target.repoId}`)
    if (repo === undefined || (repo.private && !mine)) {
      // Without a token the Hub cannot tell a private repo from a missing one: 401 either way.
      if (verdict === undefined)
        sendError(res, 401, "Invalid username or password.", { "x-error-code": "RepoNotFound" })
      else sendError(res, 404, "Repository not found", { "x-error-code": "RepoNotFound" })
      return undefined
    }
    if (write && !mine) {
      sendError(res, verdict === undefined ? 401 : 403, `You don't have the rights to write to ${target.repoId}`)
      return undefined
    }
    return repo
  }

  /**
   * A repo volume's files at its revision as the emulator's user may read them, or the Hub's refusal: a
   * repo that does not exist and a private one of someone else are both 404, as the Hub hides the latter.
   */
  volumeFiles(volume: EmulatedVolume): ReadonlyMap<string, Uint8Array> | VolumeRefusal {
    const repo = this.repos.get(`${volume.type}/${volume.source}`)
    return filesOfVolume(
      repo?.private === true && !mayWrite(this.ctx, { _tag: "Valid" }, volume.source) ? undefined : repo,
      volume
    )
  }

  private async pathsInfo(req: http.IncomingMessage, res: http.ServerResponse, commit: Commit) {
    const form = new URLSearchParams((await readBody(req)).toString("utf8"))
    const entries = form.getAll("paths").flatMap((path) => {
      const entry = entriesOf(commit, "", true).find((e) => e.path === path.replace(/^\/+|\/+$/g, ""))
      return entry === undefined ? [] : [entry]
    })
    sendJson(res, 200, entries)
  }

  private resolve(req: http.IncomingMessage, res: http.ServerResponse, repo: Repo, commit: Commit, path: string) {
    const file = commit.files.get(path)
    if (file === undefined) return sendError(res, 404, "Entry not found", { "x-error-code": "EntryNotFound" })
    if (file.lfs) {
      // As the Hub: an LFS file's resolve redirects to the CDN, which needs no token.
      res.writeHead(302, {
        location: `${this.ctx.url()}/__emulator/cdn/${sha256(file.content)}`,
        "x-repo-commit": commit.oid,
        etag: `"${sha256(file.content)}"`,
        "x-linked-size": file.content.length,
        "content-length": 0
      })
      return res.end()
    }
    const served = { content: file.content, etag: gitOid(file.content), commitOid: commit.oid }
    serve(req, res, { ...served, stallAfter: repo.stallAfterBytes, cutAfter: takeCut(repo) }, this.held)
  }

  dropHeld() {
    for (const res of this.held) res.destroy()
    this.held.clear()
  }
}

interface Target {
  readonly type: RepoType
  readonly repoId: string
  readonly revision: string
  readonly rest: string
  readonly action: string
}

/** Whether a token with this verdict may write the repo (and read it when it is private). */
const mayWrite = (ctx: ReposContext, verdict: Verdict | undefined, repoId: string) => {
  const namespace = repoId.split("/")[0]
  return (
    (verdict?._tag === "Valid" && (namespace === ctx.user() || namespace === ORG)) ||
    (verdict?._tag === "Scoped" && verdict.resource.endsWith(repoId))
  )
}

/** The files a volume of `repo` (undefined: not readable by the job's owner, or missing) mounts, or the refusal. */
const filesOfVolume = (repo: Repo | undefined, volume: EmulatedVolume) => {
  const what = `${volume.type} ${volume.source}`
  if (repo === undefined) return { status: 404, message: `Repository not found: ${what}`, code: "RepoNotFound" }
  const commit = revisionOf(repo, volume.revision ?? "main")
  if (commit === undefined) {
    return { status: 404, message: `Invalid rev id: ${volume.revision} in ${what}`, code: "RevisionNotFound" }
  }
  return new Map([...commit.files].map(([path, file]) => [path, new Uint8Array(file.content)]))
}

/** Spends one of the repo's `cutDownloads`: the bytes after which this download is cut, if it is. */
const takeCut = (repo: Repo) => {
  const cut = repo.cutDownloads
  if (cut === undefined || cut.times <= 0) return undefined
  cut.times -= 1
  return cut.afterBytes
}

const revisionOf = (repo: Repo, revision: string) =>
  revision === "main"
    ? repo.commits.at(-1)
    : [...repo.commits].reverse().find((c) => c.oid === revision || c.tags?.includes(revision) === true)

/** The tree entries below `path` (itself included only in a recursive listing of ""), sorted by path. */
const entriesOf = (commit: Commit, path: string, recursive: boolean) => {
  const prefix = path === "" ? "" : `${path}/`
  const dirs = new Set<string>()
  const entries: Array<Record<string, unknown>> = []
  for (const [filePath, file] of commit.files) {
    if (!filePath.startsWith(prefix)) continue
    const rest = filePath.slice(prefix.length).split("/")
    for (let depth = 1; depth < rest.length; depth++) {
      if (!recursive && depth > 1) break
      dirs.add(prefix + rest.slice(0, depth).join("/"))
    }
    if (!recursive && rest.length > 1) continue
    entries.push({
      type: "file",
      oid: gitOid(file.content),
      size: file.content.length,
      path: filePath,
      ...(file.lfs ? { lfs: { oid: sha256(file.content), size: file.content.length, pointerSize: 134 } } : {})
    })
  }
  for (const dir of dirs) entries.push({ type: "directory", oid: hex(20), size: 0, path: dir })
  return entries.sort((a, b) => String(a.path).localeCompare(String(b.path)))
}

/** A page of a tree listing, with the `Link` header of the next one. */
const tree = (res: http.ServerResponse, url: URL, repo: Repo, commit: Commit, path: string, baseUrl: string) => {
  const recursive = url.searchParams.get("recursive") === "true"
  const all = entriesOf(commit, path, recursive)
  if (path !== "" && all.length === 0) {
    return sendError(res, 404, `Entry not found: ${path}`, { "x-error-code": "EntryNotFound" })
  }
  const cursor = Number(url.searchParams.get("cursor") ?? "0")
  const page = all.slice(cursor, cursor + repo.pageSize)
  const headers: http.OutgoingHttpHeaders = {}
  if (cursor + repo.pageSize < all.length) {
    const next = new URL(url.pathname + url.search, baseUrl)
    next.searchParams.set("cursor", String(cursor + repo.pageSize))
    headers.link = `<${next.toString()}>; rel="next"`
  }
  sendJson(res, 200, page, headers)
}

/** What `serve` sends: a file's bytes, and the faults of its repo. */
interface Served {
  readonly content: Buffer
  readonly etag: string
  readonly commitOid?: string | undefined
  /** Send this many bytes, then hold the response open (an interrupted transfer that never ends). */
  readonly stallAfter?: number | undefined
  /** Send this many bytes, then cut the connection (a transfer that must resume). */
  readonly cutAfter?: number | undefined
}

/**
 * A file's bytes, from the start or (a `Range: bytes=N-` request, as a resumed download sends) from byte N
 * with 206 and `Content-Range`, as the Hub and its CDN answer; held open or cut mid-way for fault tests.
 */
const serve = (req: http.IncomingMessage, res: http.ServerResponse, served: Served, held: Set<http.ServerResponse>) => {
  const { content, stallAfter, cutAfter } = served
  const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ""))
  const start = range === null ? 0 : Number(range[1])
  if (start > 0 && start >= content.length) {
    res.writeHead(416, { "content-range": `bytes */${content.length}`, "content-length": 0 })
    return res.end()
  }
  const body = content.subarray(start)
  res.writeHead(start > 0 ? 206 : 200, {
    "content-type": "application/octet-stream",
    "content-length": body.length,
    etag: `"${served.etag}"`,
    "accept-ranges": "bytes",
    ...(start > 0 ? { "content-range": `bytes ${start}-${content.length - 1}/${content.length}` } : {}),
    ...(served.commitOid === undefined ? {} : { "x-repo-commit": served.commitOid })
  })
  if (req.method === "HEAD") return res.end()
  if (cutAfter !== undefined && cutAfter < body.length) {
    res.write(body.subarray(0, cutAfter), () => res.destroy())
    return
  }
  if (stallAfter === undefined || stallAfter >= body.length) return res.end(body)
  // A download that stops mid-way and never ends, for interruption tests.
  res.write(body.subarray(0, stallAfter))
  held.add(res)
  res.on("close", () => held.delete(res))
}
