/**
 * Volumes of a sandbox job: Hub repos and buckets mounted in its container, in the Jobs API's own shape
 * (`huggingface_hub`'s `Volume.to_dict`: `type`, `source`, `mountPath`, `revision?`, `readOnly?`,
 * `path?`), checked before any job exists, and the CLI's `hf://…:/MOUNT[:ro|:rw]` grammar (`parse_hf_mount`).
 */
import type { Volume } from "../../HfJobs.js"
import * as Validate from "../validate.js"

const TYPES = ["model", "dataset", "space", "bucket"] as const
/** The plural prefixes of an `hf://` URI, as `huggingface_hub`'s `HF_URI_TYPE_PREFIXES` spells them. */
const PREFIXES: Readonly<Record<string, Volume["type"]>> = {
  models: "model",
  datasets: "dataset",
  spaces: "space",
  buckets: "bucket"
}
/** `huggingface_hub`'s `REPO_ID_REGEX` for `namespace/name`: word characters, `-` and `.`, at most 96 in the name. */
const REPO_ID = /^[\w.-]+\/[\w.-]{1,96}$/
const EDGE = /(^|\/)[-.]|[-.](\/|$)/

/** What is wrong with a repo or bucket id, as the Hub's validator says it; undefined when it is fine. */
const idProblem = (id: string, type: Volume["type"]): string | undefined => {
  if (!REPO_ID.test(id)) return `must be "namespace/name" of letters, digits, "-", "_" or "."`
  if (type === "bucket") return undefined
  if (EDGE.test(id)) return `a name cannot start or end with "-" or "."`
  if (id.includes("--") || id.includes("..")) return `cannot contain "--" or ".."`
  if (id.endsWith(".git")) return `cannot end with ".git"`
  return undefined
}

const describe = (value: unknown) => JSON.stringify(value) ?? String(value)

/** What is wrong with one volume, or undefined. Every field is checked as the Hub checks it. */
const volumeProblem = (volume: unknown): string | undefined => {
  if (typeof volume !== "object" || volume === null || Array.isArray(volume)) {
    return `${describe(volume)} is not { type, source, mountPath, revision?, readOnly?, path? }`
  }
  const v = volume as Record<string, unknown>
  const unknownKeys = Object.keys(v).filter(
    (k) => !["type", "source", "mountPath", "revision", "readOnly", "path"].includes(k) && v[k] !== undefined
  )
  if (unknownKeys.length > 0)
    return `unknown field ${unknownKeys.join(", ")} (the Jobs API takes type, source, mountPath, revision, readOnly, path)`
  if (!TYPES.includes(v.type as Volume["type"])) return `type ${describe(v.type)} is not one of ${TYPES.join(", ")}`
  const type = v.type as Volume["type"]
  if (typeof v.source !== "string") return `source ${describe(v.source)} is not a string`
  const bad = idProblem(v.source, type)
  if (bad !== undefined) return `source ${describe(v.source)}: ${bad}`
  if (typeof v.mountPath !== "string" || !v.mountPath.startsWith("/") || v.mountPath === "/") {
    return `mountPath ${describe(v.mountPath)} is not an absolute path other than "/" (e.g. "/data")`
  }
  if (v.mountPath.split("/").some((part) => part === "." || part === "..")) {
    return `mountPath ${describe(v.mountPath)} must not contain "." or ".." segments`
  }
  if (v.revision !== undefined && (typeof v.revision !== "string" || v.revision === "")) {
    return `revision ${describe(v.revision)} is not a non-empty string`
  }
  if (type === "bucket" && v.revision !== undefined) return `a bucket has no revision (got ${describe(v.revision)})`
  if (v.readOnly !== undefined && typeof v.readOnly !== "boolean")
    return `readOnly ${describe(v.readOnly)} is not true or false`
  if (type !== "bucket" && v.readOnly === false) {
    return `a ${type} is always mounted read-only; only a bucket can be read-write (leave readOnly out)`
  }
  if (v.path !== undefined && (typeof v.path !== "string" || v.path.startsWith("/") || v.path.includes("//"))) {
    return `path ${describe(v.path)} is not a relative path inside the ${type} (e.g. "train")`
  }
  return undefined
}

/**
 * The volumes as the job spec sends them, or a `Validate.Invalid` of the volume at fault (`volumes[1]`,
 * as `env.NAME` names a variable) saying what is wrong with it. Mount paths may not repeat or nest: one
 * mount would hide the other.
 */
export const check = (volumes: unknown): ReadonlyArray<Volume> => {
  if (!Array.isArray(volumes)) throw new Validate.Invalid("volumes", `${describe(volumes)} is not an array of volumes`)
  volumes.forEach((volume, i) => {
    const problem = volumeProblem(volume)
    if (problem !== undefined) throw new Validate.Invalid(`volumes[${i}]`, problem)
  })
  const paths = (volumes as ReadonlyArray<Volume>).map((v) => v.mountPath.replace(/\/+$/, ""))
  paths.forEach((p, i) => {
    const other = paths.find((q, j) => j !== i && (q === p || p.startsWith(`${q}/`)))
    // The other volume by its mount path, as both the library's and the CLI's user wrote it.
    if (other !== undefined)
      throw new Validate.Invalid(
        `volumes[${i}]`,
        `mount path ${describe(p)} is inside (or the same as) another volume's, ${describe(other)}: one would hide the other`
      )
  })
  return (volumes as ReadonlyArray<Volume>).map((v) => ({
    type: v.type,
    source: v.source,
    mountPath: v.mountPath,
    ...(v.revision !== undefined ? { revision: v.revision } : {}),
    ...(v.readOnly !== undefined ? { readOnly: v.readOnly } : {}),
    ...(v.path !== undefined ? { path: v.path } : {})
  }))
}

/** Splits the `:/MOUNT[:ro|:rw]` suffix off a mount, as `huggingface_hub`'s `_split_mount` does. */
const splitMount = (body: string) => {
  const flag = body.endsWith(":ro") ? true : body.endsWith(":rw") ? false : undefined
  const rest = flag === undefined ? body : body.slice(0, -3)
  const at = rest.lastIndexOf(":/")
  return at <= 0 ? undefined : { location: rest.slice(0, at), mountPath: rest.slice(at + 1), readOnly: flag }
}

/** Revisions that hold a `/` (`refs/pr/N`, `refs/convert/NAME`), matched first as the Hub's parser does. */
const SPECIAL_REF = /^refs\/(?:convert\/[\w.-]+|pr\/\d+)/

/** `ID[@REVISION][/PATH]` of a repo, or `ID[/PATH]` of a bucket. */
const splitLocation = (location: string, type: Volume["type"]) => {
  const [namespace = "", name = "", ...rest] = location.split("/")
  const at = name.indexOf("@")
  if (type === "bucket" || at < 0) {
    return { source: `${namespace}/${name}`, revision: undefined, path: rest.length > 0 ? rest.join("/") : undefined }
  }
  const after = [name.slice(at + 1), ...rest].join("/")
  const revision = SPECIAL_REF.exec(after)?.[0] ?? after.split("/")[0] ?? ""
  const path = after.slice(revision.length).replace(/^\//, "")
  return { source: `${namespace}/${name.slice(0, at)}`, revision, path: path === "" ? undefined : path }
}

/**
 * One `--volume` of the CLI: `hf://[TYPE/]SOURCE[@REVISION][/PATH]:/MOUNT_PATH[:ro|:rw]` (`hf jobs run
 * -v`'s grammar; TYPE is `models` (default), `datasets`, `spaces` or `buckets`), checked as `make` checks
 * it. `hf jobs`' local-directory sources are not taken: they need an upload to a bucket first.
 */
export const parse = (spec: string): Volume => {
  const usage = `expected hf://[TYPE/]SOURCE[@REVISION][/PATH]:/MOUNT_PATH[:ro|:rw], e.g. hf://datasets/org/ds:/data`
  if (!spec.startsWith("hf://")) {
    throw new Error(
      `volume ${describe(spec)}: ${usage} (a local directory is not mounted: upload it with \`hf-sandbox cp\` instead)`
    )
  }
  const parts = splitMount(spec.slice("hf://".length))
  if (parts === undefined) throw new Error(`volume ${describe(spec)}: no mount path; ${usage}`)
  const first = parts.location.split("/")[0] ?? ""
  const type = PREFIXES[first] ?? "model"
  if (PREFIXES[first] === undefined && TYPES.includes(first as Volume["type"])) {
    throw new Error(`volume ${describe(spec)}: the type prefix is plural (${first}s/…); ${usage}`)
  }
  const location = PREFIXES[first] === undefined ? parts.location : parts.location.slice(first.length + 1)
  const { path, revision, source } = splitLocation(location, type)
  const volume: Volume = {
    type,
    source,
    mountPath: parts.mountPath,
    ...(revision !== undefined ? { revision: decodeURIComponent(revision) } : {}),
    ...(parts.readOnly !== undefined ? { readOnly: parts.readOnly } : {}),
    ...(path !== undefined ? { path } : {})
  }
  const problem = volumeProblem(volume)
  if (problem !== undefined) throw new Error(`volume ${describe(spec)}: ${problem}`)
  return volume
}
