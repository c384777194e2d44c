/**
 * Volumes and SSH of an emulated job: the create body's `volumes` and `ssh` checked as the Hub checks them,
 * and the mounts a job's emulated container gets.
 *
 * Each volume's mount point is a directory under the job's directory, `<workdir>/volumes<mountPath>` (the
 * container has no root of its own to mount at `mountPath`; the job's environment names the root as
 * `HF_EMULATOR_VOLUMES`). A model, dataset or Space volume holds the repo's files at its revision (below
 * its `path`), copied from the emulator's repo store when the job is created; the emulator has no bucket
 * store, so a bucket's mount point starts empty. A read-only mount has files 0444 in directories 0555,
 * and, where this machine lets it, the job runs in its own mount namespace in which each read-only mount
 * point is bind-mounted onto itself read-only (see {@link confine}), so that even a process running as
 * root fails to write there with `EROFS`, as on a real read-only mount. Where it does not (no `unshare`,
 * or no right to mount), only the modes stand, which a root process ignores.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
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

/** What a volume's mount holds: its files by path below the volume's `path` (none for a bucket). */
export type VolumeFiles = ReadonlyMap<string, Uint8Array>

/** The Hub's refusal of a create whose volume the job's owner cannot mount. */
export interface VolumeRefusal {
  readonly status: number
  readonly message: string
  readonly code: string
}

/**
 * Where the repo volumes' files come from: the files of `source` at `revision` (default `main`) that the
 * owner of the create's token may read, or the Hub's refusal (see ./repos.ts `volumeFiles`).
 */
export type VolumeSource = (volume: EmulatedVolume) => ReadonlyMap<string, Uint8Array> | VolumeRefusal

const isRefusal = (value: VolumeFiles | VolumeRefusal): value is VolumeRefusal => "status" in value

/** Each volume's files, in order (a bucket: none), or the first refusal, naming the volume. */
export const contents = (
  volumes: ReadonlyArray<EmulatedVolume>,
  source: VolumeSource
): ReadonlyArray<VolumeFiles> | VolumeRefusal => {
  const found: Array<VolumeFiles> = []
  for (const [i, volume] of volumes.entries()) {
    if (volume.type === "bucket") {
      found.push(new Map())
      continue
    }
    const files = source(volume)
    if (isRefusal(files)) return { ...files, message: `volumes[${i}]: ${files.message}` }
    const prefix = volume.path === undefined || volume.path === "" ? "" : `${volume.path.replace(/\/+$/, "")}/`
    const below = new Map([...files].flatMap(([p, c]) => (p.startsWith(prefix) ? [[p.slice(prefix.length), c]] : [])))
    if (below.size === 0 && prefix !== "") {
      const what = `${volume.type} ${volume.source}`
      return { status: 404, message: `volumes[${i}]: no path ${volume.path} in ${what}`, code: "EntryNotFound" }
    }
    found.push(below)
  }
  return found
}

/** The mounts of a job: each mount path with its directory, and the directories mounted read-only. */
export interface Mounts {
  readonly dirs: Record<string, string>
  readonly readOnly: ReadonlyArray<string>
}

const isReadOnly = (volume: EmulatedVolume) => volume.type !== "bucket" || volume.readOnly === true

/** Creates the mount points under `root` with their files (see the module docs). */
export const mount = async (
  root: string,
  volumes: ReadonlyArray<EmulatedVolume>,
  files: ReadonlyArray<VolumeFiles>
): Promise<Mounts> => {
  const dirs: Record<string, string> = {}
  const readOnly: Array<string> = []
  for (const [i, volume] of volumes.entries()) {
    const dir = path.join(root, path.posix.normalize(volume.mountPath))
    await fs.promises.mkdir(dir, { recursive: true })
    for (const [file, content] of files[i] ?? []) {
      const target = path.join(dir, ...file.split("/"))
      await fs.promises.mkdir(path.dirname(target), { recursive: true })
      await fs.promises.writeFile(target, content)
    }
    // Repos are read-only whatever is asked; a bucket is read-write unless `readOnly`.
    if (isReadOnly(volume)) {
      await setModes(dir, 0o444, 0o555)
      readOnly.push(dir)
    } else await fs.promises.chmod(dir, 0o755)
    dirs[volume.mountPath] = dir
  }
  return { dirs, readOnly: (await canConfine()) ? readOnly : [] }
}

/** Gives the files below `dir` mode `file` and the directories (itself included) mode `dir`, deepest first. */
const setModes = async (dir: string, file: number, dirMode: number): Promise<void> => {
  for (const entry of await fs.promises.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) await setModes(full, file, dirMode)
    else await fs.promises.chmod(full, file)
  }
  await fs.promises.chmod(dir, dirMode)
}

/** Makes read-only mounts writable by their owner again, so that the emulator's release can remove them. */
export const unlock = async (dirs: ReadonlyArray<string>) => {
  for (const dir of dirs) await setModes(dir, 0o644, 0o755).catch(() => {})
}

/**
 * The shell program `confine` runs: each argument before `--` is bind-mounted onto itself read-only, then
 * the command after `--` replaces the shell (same pid: the job's process is still the command).
 */
const CONFINE = `
while [ "$1" != "--" ]; do
  mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 125
  shift
done
shift
# As the container runtime says it when the command cannot start (see ./jobRunner.ts spawnFailure).
command -v "$1" >/dev/null 2>&1 || { echo "exec: \\"$1\\": executable file not found in \\$PATH" >&2; exit 127; }
exec "$@"
`

const unshare = (readOnly: ReadonlyArray<string>, argv: ReadonlyArray<string>) => [
  "unshare",
  "--mount",
  "--propagation",
  "private",
  "--",
  "/bin/sh",
  "-c",
  CONFINE,
  "confine",
  ...readOnly,
  "--",
  ...argv
]

/**
 * The job's command, run in a mount namespace of its own in which the read-only mounts are read-only
 * (EROFS even for root), when there are any; the command as it is otherwise. Every process the job starts
 * inherits the namespace, and it vanishes with them.
 */
export const confine = (readOnly: ReadonlyArray<string>, argv: ReadonlyArray<string>): ReadonlyArray<string> =>
  readOnly.length === 0 ? argv : unshare(readOnly, argv)

let confinable: Promise<boolean> | undefined

/** Whether this machine lets {@link confine} work (`unshare` present, and the right to mount), tried once. */
const canConfine = () => {
  confinable ??= (async () => {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), "hf-emulator-ro-"))
    try {
      const argv = unshare([dir], ["/bin/sh", "-c", 'touch "$1/probe" 2>/dev/null && exit 1 || exit 0', "probe", dir])
      return await new Promise<boolean>((resolve) =>
        execFile(argv[0]!, argv.slice(1), { timeout: 10_000 }, (error) => resolve(error === null))
      )
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true })
    }
  })()
  return confinable
}
