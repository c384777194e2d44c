/** The Hub emulator's answers over plain `node:http`: JSON (the Hub's shape), text, and bounded request bodies. */
import type * as http from "node:http"
import { hex } from "./util.js"

const MAX_BODY_BYTES = 4 * 1024 * 1024

/** Answers `res` with `status` and `body`, unless it is answered or gone already. */
type Send<A> = (res: http.ServerResponse, status: number, body: A, headers?: http.OutgoingHttpHeaders) => void

export const sendJson: Send<unknown> = (res, status, body, headers = {}) => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "x-request-id": `Root=1-${hex(4)}-${hex(12)}`,
    ...headers
  })
  res.end(text)
}

/** The Hub's error body, `{"error": "…"}`. */
export const sendError: Send<string> = (res, status, error, headers = {}) => sendJson(res, status, { error }, headers)

export const sendText: Send<string> = (res, status, text, headers = {}) => {
  if (res.headersSent || res.destroyed) return
  res.writeHead(status, {
    "content-type": "text/plain; charset=UTF-8",
    "content-length": Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

/** Answers with `promise`, or the Hub's 500 (a cut connection once answering began) if it fails. */
export const answer = (res: http.ServerResponse, promise: Promise<unknown>) => {
  void promise.catch((error: unknown) => {
    if (!res.headersSent) sendError(res, 500, `Hub emulator internal error: ${String(error)}`)
    else res.destroy()
  })
}

export const readBody = (req: http.IncomingMessage, limit = MAX_BODY_BYTES) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new Error("body too large"))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })
