/**
 * Volumes and SSH of an emulated job: the create body's `volumes` and `ssh` checked as the Hub checks them,
 * and the mounts a job's emulated container gets.
 *
 * The emulator has no store of repos or buckets to fill a mount from: each volume's mount point is an
 * empty directory under the job's directory, `<workdir>/volumes<mountPath>` (the container has no root of
 * its own to mount at `mountPath`; the job's environment names the root as `HF_EMULATOR_VOLUMES`), with
 * mode 0555 when it is read-only and 0755 when it is read-write. A process running as root ignores those
 * modes, as it would not ignore a real read-only mount.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { isPlainObject } from "./util.js"

export interface EmulatedVolume {
  readonly type: "model" | "dataset" | "space" | "bucket"
  readonly source: string
  readonly mountPath: string
  readonly revision?: string
  readonly readOnly?: boolean
  readonly path?: string
}

const KINDS = new Set(["model", "dataset", "space", "bucket"])
const FIELDS = new Set(["type", "source", "mountPath", "revision", "readOnly", "path"])
const ID = /^[\w.-]+\/[\w.-]{1,96}$/

/** What the Hub says of one bad volume, or undefined. */
const refusal = (v: unknown, at: string): string | undefined => {
  if (!isPlainObject(v)) return `${at} must be an object`
  const extra = Object.keys(v).find((key) => !FIELDS.has(key))
  if (extra !== undefined) return `${at}.${extra} is not allowed`
  if (typeof v.type !== "string" || !KINDS.has(v.type)) return `${at}.type must be one of model, dataset, space, bucket`
  if (typeof v.source !== "string" || !ID.test(v.source)) return `${at}.source must be of the form namespace/name`
  if (typeof v.mountPath !== "string" || !/^\/[^\0]+$/.test(v.mountPath) || v.mountPath.split("/").includes("..")) {
    return `${at}.mountPath must be an absolute path other than /`
  }
  if (v.revision !== undefined && (typeof v.revision !== "string" || v.revision === "" || v.type === "bucket")) {
    return `${at}.revision must be a non-empty string, on a repo only`
  }
  if (v.readOnly !== undefined && typeof v.readOnly !== "boolean") return `${at}.readOnly must be a boolean`
  if (v.readOnly === false && v.type !== "bucket") return `${at}: ${v.type} volumes are read-only`
  if (v.path !== undefined && (typeof v.path !== "string" || v.path.startsWith("/"))) {
    return `${at}.path must be a relative path`
  }
  return undefined
}

/** The create body's `volumes` (absent: none), or the Hub's 400 message. */
export const checkVolumes = (value: unknown): ReadonlyArray<EmulatedVolume> | string => {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) return "volumes must be an array"
  for (const [i, v] of value.entries()) {
    const problem = refusal(v, `volumes[${i}]`)
    if (problem !== undefined) return problem
  }
  const paths = value.map((v: EmulatedVolume) => path.posix.normalize(v.mountPath))
  if (new Set(paths).size !== paths.length) return "volumes must not share a mountPath"
  return value as ReadonlyArray<EmulatedVolume>
}

/** The create body's `ssh` (absent: off), or the Hub's 400 message. */
export const checkSsh = (value: unknown): boolean | string => {
  if (value === undefined || value === null) return false
  if (!isPlainObject(value) || typeof value.enabled !== "boolean" || Object.keys(value).length !== 1) {
    return "ssh must be an object { enabled: boolean }"
  }
  return value.enabled
}

/** The job's SSH URL, in the Hub's shape. */
export const sshUrl = (jobId: string) => `ssh://${jobId}@ssh.hf.jobs`

/** Creates the mount points under `root` (see the module docs); each mount path with its directory here. */
export const mount = async (root: string, volumes: ReadonlyArray<EmulatedVolume>): Promise<Record<string, string>> => {
  const mounts: Record<string, string> = {}
  for (const volume of volumes) {
    const dir = path.join(root, path.posix.normalize(volume.mountPath))
    await fs.promises.mkdir(dir, { recursive: true })
    // Repos are read-only whatever is asked; a bucket is read-write unless `readOnly`.
    await fs.promises.chmod(dir, volume.type !== "bucket" || volume.readOnly === true ? 0o555 : 0o755)
    mounts[volume.mountPath] = dir
  }
  return mounts
}
