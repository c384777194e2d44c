/** The Hub emulator's answers over plain `node:http`: JSON (the Hub's shape), text, and bounded request bodies. */
import type * as http from "node:http"
import { hex } from "./util.js"

const MAX_BODY_BYTES = 4 * 1024 * 1024

export const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {}
) => {
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

export const sendError = (
  res: http.ServerResponse,
  status: number,
  error: string,
  headers: http.OutgoingHttpHeaders = {}
) => sendJson(res, status, { error }, headers)

export const sendText = (
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: http.OutgoingHttpHeaders = {}
) => {
  if (res.headersSent || res.destroyed) return
  res.writeHead(status, {
    "content-type": "text/plain; charset=UTF-8",
    "content-length": Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

export const readBody = (req: http.IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new Error("body too large"))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })
