/** The Hub emulator's repo writes: `preupload` (regular or LFS) and the NDJSON `commit` (see ./repos.ts). */
import type * as http from "node:http"
import { readBody, sendError, sendJson } from "./http.js"
import type { Commit, Repo, StoredFile } from "./repos.js"
import { hex } from "./util.js"

/** `preupload`: which of the files go as regular (base64 in the commit) and which need LFS. */
export const preupload = async (req: http.IncomingMessage, res: http.ServerResponse, repo: Repo) => {
  let body: { files?: Array<{ path: string; size: number }> }
  try {
    body = JSON.parse((await readBody(req)).toString("utf8"))
  } catch {
    return sendError(res, 400, "Invalid JSON body")
  }
  sendJson(res, 200, {
    files: (body.files ?? []).map((f) => ({
      path: f.path,
      uploadMode: f.size >= repo.lfsThreshold ? "lfs" : "regular",
      shouldIgnore: false
    }))
  })
}

/**
 * `commit`: the NDJSON `header`, `file` (base64), `lfsFile` (an uploaded LFS object: `blobs` by sha256) and
 * `deletedFile` lines, applied as one new commit on main.
 */
export const commit = async (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  repo: Repo,
  parent: Commit,
  revision: string,
  baseUrl: string,
  blobs: ReadonlyMap<string, StoredFile>
) => {
  if (revision !== "main") return sendError(res, 400, `Cannot commit to ${revision}: only main is a branch here`)
  const lines = (await readBody(req))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
  const files = new Map(parent.files)
  let header = false
  for (const line of lines) {
    let parsed: { key?: unknown; value?: Record<string, unknown> }
    try {
      parsed = JSON.parse(line)
    } catch {
      return sendError(res, 400, "Invalid NDJSON line in commit payload")
    }
    const value = parsed.value ?? {}
    if (parsed.key === "header") header = typeof value.summary === "string"
    else if (parsed.key === "file" && typeof value.path === "string" && typeof value.content === "string") {
      if (value.encoding !== "base64") return sendError(res, 400, "file content must be base64")
      files.set(value.path, { content: Buffer.from(value.content, "base64"), lfs: false })
    } else if (parsed.key === "lfsFile" && typeof value.path === "string") {
      const blob = typeof value.oid === "string" ? blobs.get(value.oid) : undefined
      if (value.algo !== "sha256" || blob === undefined || blob.content.length !== value.size) {
        // As the Hub: a pointer to an object its LFS storage does not hold is refused.
        return sendError(
          res,
          422,
          `Your push was rejected: LFS object ${String(value.oid)} of ${value.path} is missing`
        )
      }
      files.set(value.path, { content: blob.content, lfs: true })
    } else if (parsed.key === "deletedFile" && typeof value.path === "string") files.delete(value.path)
    else return sendError(res, 400, `Unsupported commit operation: ${JSON.stringify(parsed.key)}`)
  }
  if (!header) return sendError(res, 400, "The commit payload needs a header with a summary")
  const oid = hex(20)
  repo.commits.push({ oid, files })
  const prefix = repo.type === "model" ? "" : `${repo.type}s/`
  sendJson(res, 200, {
    success: true,
    commitOid: oid,
    commitUrl: `${baseUrl}/${prefix}${repo.id}/commit/${oid}`
  })
}
