/**
 * The Hub emulator's LFS uploads, as `huggingface_hub`'s `lfs.py` meets them without Xet: the batch API
 * `POST /{prefix}{repo}.git/info/lfs/objects/batch` (an object the Hub has already gets no `actions`),
 * the storage (`/__emulator/lfs/{upload}`: a basic PUT, or numbered part PUTs answered with an `etag` and
 * a completion POST), which checks the size and sha256 as the real storage does and needs no token, and
 * `verify` on the repo (`.../objects/verify`). An object counts as uploaded only once complete, and only
 * then may a commit's `lfsFile` line name it (./repoWrites.ts).
 */
import { createHash } from "node:crypto"
import type * as http from "node:http"
import type * as Testing from "../../Testing.js"
import { answer, readBody, sendError, sendJson } from "./http.js"
import type { Repo, StoredFile } from "./repos.js"
import { hex } from "./util.js"

/** Bodies the emulated storage takes (the shared request limit is for API calls). */
const MAX_OBJECT_BYTES = 256 * 1024 * 1024

const LFS_JSON = "application/vnd.git-lfs+json"

/** An upload the batch API handed out, until its bytes are complete. */
interface PendingUpload {
  readonly oid: string
  readonly size: number
  readonly repo: Repo
  readonly parts: Map<number, Buffer>
  readonly etags: Map<number, string>
}

/** What the LFS routes share with the repo store. */
export interface LfsContext {
  /** Objects by sha256: seeded LFS files and completed uploads. */
  readonly blobs: Map<string, StoredFile>
  readonly url: () => string
  readonly pending: Map<string, PendingUpload>
  readonly storageRequests: Array<Testing.HubStorageRequest>
}

const sha256 = (content: Buffer) => createHash("sha256").update(content).digest("hex")

const readJson = async (req: http.IncomingMessage): Promise<Record<string, unknown> | undefined> => {
  try {
    return JSON.parse((await readBody(req)).toString("utf8"))
  } catch {
    return undefined
  }
}

/** The repo an LFS API call names, and which call. */
export interface LfsTarget {
  readonly type: Repo["type"]
  readonly repoId: string
  readonly action: "batch" | "verify"
}

/**
 * Answers an LFS route, or returns false when the request is not one: the storage (no token needed, as
 * on S3), and `POST /{prefix}{repo}.git/info/lfs/objects/{batch|verify}`, which need the write access an
 * upload does (`write` sends the Hub's refusal and gives undefined).
 */
export const handleLfs = (
  ctx: LfsContext,
  write: (target: LfsTarget) => Repo | undefined,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  segments: ReadonlyArray<string>
) => {
  if (segments[0] === "__emulator" && segments[1] === "lfs" && segments.length >= 3) {
    answer(res, storage(ctx, req, res, segments))
    return true
  }
  const target = lfsTarget(segments)
  if (target === undefined) return false
  if (req.method !== "POST") {
    req.resume()
    sendError(res, 405, "Method not allowed")
    return true
  }
  const repo = write(target)
  if (repo === undefined) req.resume()
  else answer(res, target.action === "batch" ? batch(ctx, req, res, repo) : verify(ctx, req, res))
  return true
}

/** The repo and action of `/{prefix}{repo}.git/info/lfs/objects/{batch|verify}`, or undefined for another path. */
const lfsTarget = (segments: ReadonlyArray<string>): LfsTarget | undefined => {
  const type = segments[0] === "datasets" ? "dataset" : segments[0] === "spaces" ? "space" : "model"
  const base = type === "model" ? 0 : 1
  const [namespace, gitName, info, lfs, objects, action] = segments.slice(base)
  const isLfs = info === "info" && lfs === "lfs" && objects === "objects" && segments.length === base + 6
  if (!isLfs || !gitName?.endsWith(".git") || (action !== "batch" && action !== "verify")) return undefined
  return { type, repoId: `${namespace}/${gitName.slice(0, -4)}`, action }
}

/** The batch API: upload actions (basic, or multipart above the repo's threshold) for the objects it lacks. */
export const batch = async (ctx: LfsContext, req: http.IncomingMessage, res: http.ServerResponse, repo: Repo) => {
  const body = await readJson(req)
  if (!String(req.headers["content-type"] ?? "").startsWith(LFS_JSON)) {
    return sendError(res, 400, `The LFS batch API takes Content-Type: ${LFS_JSON}`)
  }
  if (body === undefined || body.operation !== "upload" || !Array.isArray(body.objects)) {
    return sendError(res, 422, "Invalid LFS batch request: operation upload and objects expected")
  }
  const transfers = Array.isArray(body.transfers) ? body.transfers : ["basic"]
  const multipart = transfers.includes("multipart")
  const prefix = repo.type === "model" ? "" : `${repo.type}s/`
  const verify = { href: `${ctx.url()}/${prefix}${repo.id}.git/info/lfs/objects/verify` }
  const objects = (body.objects as Array<{ oid?: unknown; size?: unknown }>).map(({ oid, size }) => {
    if (typeof oid !== "string" || !/^[0-9a-f]{64}$/.test(oid) || typeof size !== "number" || size < 0) {
      return { oid, size, error: { code: 422, message: "oid must be a sha256 and size a byte count" } }
    }
    if (size > repo.lfsMaxObjectBytes) {
      // The Hub's hard limit per file is 500 GB (hub-docs storage-limits.md); a git-lfs server refuses an
      // object it will not take in the batch answer, per object, with 422 (the exact wording is the emulator's).
      const message = `Object of ${size} bytes is larger than the maximum file size of ${repo.lfsMaxObjectBytes} bytes`
      return { oid, size, error: { code: 422, message } }
    }
    if (ctx.blobs.get(oid)?.content.length === size) return { oid, size }
    const id = hex(16)
    ctx.pending.set(id, { oid, size, repo, parts: new Map(), etags: new Map() })
    const href = `${ctx.url()}/__emulator/lfs/${id}`
    if (!multipart || size <= repo.lfsMultipartThreshold) {
      return { oid, size, authenticated: true, actions: { upload: { href }, verify } }
    }
    const chunk = repo.lfsMultipartThreshold
    const header: Record<string, string> = { chunk_size: String(chunk) }
    for (let part = 1; part <= Math.ceil(size / chunk); part++) header[String(part)] = `${href}/${part}`
    return { oid, size, authenticated: true, actions: { upload: { href, header }, verify } }
  })
  sendJson(res, 200, { transfer: multipart ? "multipart" : "basic", objects }, { "content-type": LFS_JSON })
}

/** `verify`: the object is stored with that size (on the repo, so with the Hub's auth). */
export const verify = async (ctx: LfsContext, req: http.IncomingMessage, res: http.ServerResponse) => {
  const body = await readJson(req)
  const blob = typeof body?.oid === "string" ? ctx.blobs.get(body.oid) : undefined
  if (blob === undefined || blob.content.length !== body?.size) return sendError(res, 404, "Object not found")
  sendJson(res, 200, { success: true })
}

/** The storage: `/__emulator/lfs/{upload}` (PUT: basic; POST: multipart completion) and `.../{part}` (PUT). */
export const storage = async (
  ctx: LfsContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  segments: ReadonlyArray<string>
) => {
  ctx.storageRequests.push({ method: req.method ?? "", path: `/${segments.join("/")}`, headers: { ...req.headers } })
  const upload = ctx.pending.get(segments[2] ?? "")
  if (upload === undefined) {
    req.resume()
    return sendError(res, 404, "NoSuchUpload")
  }
  if (segments.length === 4 && req.method === "PUT") {
    const content = await readBody(req, MAX_OBJECT_BYTES)
    const etag = `"${createHash("md5").update(content).digest("hex")}"`
    upload.parts.set(Number(segments[3]), content)
    upload.etags.set(Number(segments[3]), etag)
    res.writeHead(200, { etag, "content-length": 0 })
    return res.end()
  }
  if (segments.length === 3 && req.method === "PUT")
    return store(ctx, res, segments[2]!, await readBody(req, MAX_OBJECT_BYTES))
  if (segments.length === 3 && req.method === "POST") {
    const body = await readJson(req)
    const parts = Array.isArray(body?.parts) ? (body.parts as Array<{ partNumber?: unknown; etag?: unknown }>) : []
    const expected = Math.ceil(upload.size / upload.repo.lfsMultipartThreshold)
    const ordered = parts.every((p, i) => p.partNumber === i + 1 && p.etag === upload.etags.get(i + 1))
    if (body?.oid !== upload.oid || parts.length !== expected || !ordered) {
      return sendError(res, 400, "InvalidPart: the completion names parts or etags the storage did not receive")
    }
    const content = Buffer.concat(parts.map((_, i) => upload.parts.get(i + 1)!))
    return store(ctx, res, segments[2]!, content)
  }
  req.resume()
  sendError(res, 405, "Method not allowed")
}

/** Keeps a complete object when its size and sha256 are the ones announced, as the storage checks them. */
const store = (ctx: LfsContext, res: http.ServerResponse, id: string, received: Buffer) => {
  const upload = ctx.pending.get(id)!
  // A repo seeded with `corruptLfsUploads` loses a byte on the way, for the storage's sha256 check.
  const content = upload.repo.corruptLfsUploads && received.length > 0 ? flipFirst(received) : received
  if (content.length !== upload.size) {
    return sendError(res, 400, `Size mismatch: expected ${upload.size} bytes, received ${content.length}`)
  }
  if (sha256(content) !== upload.oid) {
    return sendError(res, 400, `BadDigest: the sha256 of the content is not ${upload.oid}`)
  }
  ctx.pending.delete(id)
  ctx.blobs.set(upload.oid, { content, lfs: true })
  res.writeHead(200, { etag: `"${upload.oid}"`, "content-length": 0 })
  res.end()
}

const flipFirst = (content: Buffer) => {
  const copy = Buffer.from(content)
  copy[0] = copy[0]! ^ 0xff
  return copy
}
