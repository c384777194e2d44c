/** A job's specification as the Hub checks it (create), and the hardware flavors it knows. */
import { FLAVORS } from "./hardware.js"
import { isPlainObject } from "./util.js"
import { checkSsh, checkVolumes, type EmulatedVolume } from "./volumes.js"

const isStringRecord = (value: unknown): value is Record<string, string> =>
  isPlainObject(value) && Object.values(value).every((v) => typeof v === "string")
const isStringArray = (value: unknown): value is Array<string> =>
  Array.isArray(value) && value.every((v) => typeof v === "string")
const present = (value: unknown) => value !== undefined && value !== null

export interface ValidSpec {
  readonly image: { readonly dockerImage: string } | { readonly spaceId: string }
  readonly command: ReadonlyArray<string>
  readonly arguments: ReadonlyArray<string>
  readonly environment: Record<string, string>
  readonly secrets: Record<string, string>
  readonly labels: Record<string, string>
  readonly flavor: string
  readonly timeoutSeconds: number | undefined
  readonly expose: ReadonlyArray<number> | undefined
  readonly volumes: ReadonlyArray<EmulatedVolume>
  readonly ssh: boolean
}

/** The normalised spec, or what is wrong with it. */
export const validate = (body: unknown): ValidSpec | string => {
  if (!isPlainObject(body)) return "The request body must be a JSON object"
  const hasImage = present(body.dockerImage)
  const hasSpace = present(body.spaceId)
  if (hasImage === hasSpace) return "Exactly one of dockerImage and spaceId must be provided"
  if (hasImage && (typeof body.dockerImage !== "string" || body.dockerImage === "")) {
    return "dockerImage must be a non-empty string"
  }
  if (hasSpace && (typeof body.spaceId !== "string" || !/^[^/\s]+\/[^/\s]+$/.test(body.spaceId))) {
    return "spaceId must be a string of the form owner/space"
  }
  if (!isStringArray(body.command) || body.command.length === 0) {
    return "command must be a non-empty array of strings"
  }
  if (present(body.arguments) && !isStringArray(body.arguments)) return "arguments must be an array of strings"
  for (const key of ["environment", "secrets", "labels"] as const) {
    if (present(body[key]) && !isStringRecord(body[key])) return `${key} must be an object whose values are strings`
  }
  if (present(body.labels)) {
    for (const [key, value] of Object.entries(body.labels as Record<string, string>)) {
      if (!/^[A-Za-z0-9._-]{1,100}$/.test(key) || !/^[A-Za-z0-9._-]{0,100}$/.test(value)) {
        return `Invalid label ${JSON.stringify(key)}: label keys and values must be at most 100 characters of [a-zA-Z0-9._-]`
      }
    }
  }
  const flavor = present(body.flavor) ? body.flavor : "cpu-basic"
  if (typeof flavor !== "string" || !FLAVORS.includes(flavor)) {
    return `flavor must be one of ${FLAVORS.join(", ")} (got ${JSON.stringify(body.flavor)})`
  }
  if (present(body.timeoutSeconds)) {
    const t = body.timeoutSeconds
    if (typeof t !== "number" || !Number.isInteger(t) || t <= 0) return "timeoutSeconds must be a positive integer"
  }
  let expose: Array<number> | undefined
  if (present(body.expose)) {
    const ports = isPlainObject(body.expose) ? body.expose.ports : undefined
    if (
      !Array.isArray(ports) ||
      !ports.every((p): p is number => typeof p === "number" && Number.isInteger(p) && p >= 1 && p <= 65535)
    ) {
      return "expose.ports must be an array of port numbers (integers from 1 to 65535)"
    }
    if (new Set(ports).size !== ports.length) return "expose.ports must not repeat a port"
    expose = ports
  }
  const volumes = checkVolumes(body.volumes)
  if (typeof volumes === "string") return volumes
  const ssh = checkSsh(body.ssh)
  if (typeof ssh === "string") return ssh
  return {
    image: hasImage ? { dockerImage: body.dockerImage as string } : { spaceId: body.spaceId as string },
    command: body.command,
    arguments: present(body.arguments) ? (body.arguments as Array<string>) : [],
    environment: present(body.environment) ? { ...(body.environment as Record<string, string>) } : {},
    secrets: present(body.secrets) ? { ...(body.secrets as Record<string, string>) } : {},
    labels: present(body.labels) ? { ...(body.labels as Record<string, string>) } : {},
    flavor,
    timeoutSeconds: present(body.timeoutSeconds) ? (body.timeoutSeconds as number) : undefined,
    expose,
    volumes,
    ssh
  }
}
