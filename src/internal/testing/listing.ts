/**
 * `GET /api/jobs/{ns}` as the Hub pages it: `stage=` and `label=k[=v]` filters, newest first, pages of
 * `listPageSize` with an absolute `Link: <…?cursor=<last id>>; rel="next"` that keeps the filters.
 */
import type * as http from "node:http"
import type { Job } from "./job.js"

export interface ListingContext {
  readonly pageSize: number
  /** The emulator's base URL: the `Link` header is absolute, as `huggingface_hub` follows it. */
  readonly base: string
}

/** The page of a namespace's jobs the request asks for, and its `Link` header when more follow. */
export const listPage = (
  jobs: Iterable<Job>,
  url: URL,
  namespace: string,
  ctx: ListingContext
): { readonly page: ReadonlyArray<Job>; readonly headers: http.OutgoingHttpHeaders } => {
  const stages = url.searchParams.getAll("stage").map((s) => s.toUpperCase())
  const labels = url.searchParams.getAll("label").map((pair) => {
    const eq = pair.indexOf("=")
    return eq < 0 ? ([pair, undefined] as const) : ([pair.slice(0, eq), pair.slice(eq + 1)] as const)
  })
  const matching = [...jobs]
    .filter((job) => job.namespace === namespace)
    .filter((job) => stages.length === 0 || stages.includes(job.stage))
    .filter((job) =>
      labels.every(([key, value]) => (value === undefined ? key in job.labels : job.labels[key] === value))
    )
    .sort((a, b) => b.seq - a.seq)
  const cursor = url.searchParams.get("cursor")
  let start = 0
  if (cursor !== null) {
    const at = matching.findIndex((job) => job.id === cursor)
    start = at < 0 ? matching.length : at + 1
  }
  const size = ctx.pageSize
  const page = matching.slice(start, start + size)
  const headers: http.OutgoingHttpHeaders = {}
  if (start + size < matching.length) {
    const next = new URL(`${ctx.base}/api/jobs/${encodeURIComponent(namespace)}`)
    for (const [key, value] of url.searchParams) if (key !== "cursor") next.searchParams.append(key, value)
    next.searchParams.set("cursor", page[page.length - 1]!.id)
    headers.link = `<${next.href}>; rel="next"`
  }
  return { page, headers }
}
