/**
 * The Hub emulator's stand-ins for where a job finds cloudflared: the version on its PATH, and GitHub's
 * release download, so that the in-sandbox server's download-and-verify path runs for real.
 *
 * - `GET {control}/github.com/cloudflare/cloudflared/releases/download/{version}/cloudflared-linux-{arch}`
 *   answers 302 to the objects host, as github.com does (it redirects every release asset to
 *   `release-assets.githubusercontent.com`, a signed URL that expires).
 * - `GET {control}/release-assets.githubusercontent.com/{version}/{asset}?X-Amz-…` serves the bytes: the
 *   stand-in cloudflared impersonating `{version}`, whose sha256 tests read from the emulator.
 *
 * Both are plain loopback HTTP on the emulator's port; an unknown version or asset is 404 `Not Found`.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import type * as http from "node:http"
import * as path from "node:path"
import type * as Testing from "../../Testing.js"
import { cloudflaredScript } from "./cloudflared.js"

const RELEASE = /^\d{4}\.\d{1,2}\.\d{1,3}$/
const ASSET = /^cloudflared-linux-(amd64|arm64)$/
const GITHUB = "github.com"
const OBJECTS = "release-assets.githubusercontent.com"

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** The release host and the per-version bin directories put on jobs' PATH. */
export class Releases {
  readonly records: Array<Mutable<Testing.DownloadRecord>> = []
  private readonly bins = new Map<string, string>()

  constructor(
    /** The emulator's control base, `http://127.0.0.1:PORT/__emulator`. */
    readonly control: () => string,
    readonly faults: Testing.Faults,
    readonly root: string
  ) {}

  /** The stand-in's bytes for `version`: what the release host serves. */
  asset(version: string): Buffer {
    return Buffer.from(cloudflaredScript(process.execPath, version))
  }

  /** What a test sets as SBX_CLOUDFLARED_BASE_URL / SBX_CLOUDFLARED_VERSION / SBX_CLOUDFLARED_SHA256. */
  release(version: string): Testing.CloudflaredRelease {
    if (!RELEASE.test(version)) throw new Error(`not a cloudflared release tag: ${JSON.stringify(version)}`)
    return {
      baseUrl: `${this.control()}/${GITHUB}/cloudflare/cloudflared/releases/download`,
      version,
      sha256: createHash("sha256").update(this.asset(version)).digest("hex")
    }
  }

  /**
   * The directory to put first on a job's PATH: it holds a stand-in cloudflared reporting
   * `faults.cloudflaredOnPath`, or nothing when that is `null`.
   */
  async pathDir(): Promise<string> {
    const version = this.faults.cloudflaredOnPath
    const key = version ?? "none"
    const known = this.bins.get(key)
    if (known !== undefined) return known
    const dir = path.join(this.root, "bin", key)
    await fs.promises.mkdir(dir, { recursive: true })
    if (version !== null) {
      const file = path.join(dir, "cloudflared")
      await fs.promises.writeFile(file, cloudflaredScript(process.execPath, version), { mode: 0o755 })
      await fs.promises.chmod(file, 0o755)
    }
    this.bins.set(key, dir)
    return dir
  }

  /** Handles `{control}/<host>/…`; false when `parts` (the path after `__emulator`) is not a release route. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, parts: ReadonlyArray<string>, query: string): boolean {
    const [host, ...rest] = parts
    if (host !== GITHUB && host !== OBJECTS) return false
    req.resume()
    const record: Mutable<Testing.DownloadRecord> = { host, path: `/${rest.join("/")}${query}`, status: 0, bytes: 0 }
    this.records.push(record)
    const notFound = () => {
      record.status = 404
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "content-length": 9 })
      res.end("Not Found")
      return true
    }
    if (req.method !== "GET" && req.method !== "HEAD") return notFound()
    if (host === GITHUB) {
      // /cloudflare/cloudflared/releases/download/{version}/{asset}
      const [owner, repo, releases, download, version, asset, ...extra] = rest
      if (
        owner !== "cloudflare" ||
        repo !== "cloudflared" ||
        releases !== "releases" ||
        download !== "download" ||
        version === undefined ||
        !RELEASE.test(version) ||
        asset === undefined ||
        !ASSET.test(asset) ||
        extra.length > 0
      ) {
        return notFound()
      }
      record.status = 302
      const signature = randomBytes(32).toString("hex")
      const location =
        `${this.control()}/${OBJECTS}/${version}/${asset}?X-Amz-Algorithm=AWS4-HMAC-SHA256` +
        `&X-Amz-Expires=300&X-Amz-Signature=${signature}&response-content-disposition=attachment%3B%20filename%3D${asset}`
      res.writeHead(302, { location, "content-length": 0 })
      res.end()
      return true
    }
    const [version, asset, ...extra] = rest
    if (version === undefined || !RELEASE.test(version) || asset === undefined || !ASSET.test(asset) || extra.length) {
      return notFound()
    }
    let bytes = this.asset(version)
    if (this.faults.cloudflaredDownloadCorrupt > 0) {
      this.faults.cloudflaredDownloadCorrupt -= 1
      bytes = Buffer.from(bytes)
      bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x20 // same size, another digest
    }
    record.status = 200
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": bytes.length,
      "last-modified": new Date(0).toUTCString()
    })
    if (req.method === "HEAD") {
      res.end()
      return true
    }
    if (this.faults.cloudflaredDownloadTruncated > 0) {
      // The connection drops halfway, after a Content-Length that promised the whole file.
      this.faults.cloudflaredDownloadTruncated -= 1
      const half = bytes.subarray(0, Math.floor(bytes.length / 2))
      record.bytes = half.length
      res.write(half, () => res.destroy())
      return true
    }
    record.bytes = bytes.length
    res.end(bytes)
    return true
  }
}
