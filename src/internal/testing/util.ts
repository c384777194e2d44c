/** Small helpers every room of the Hub emulator uses. */
import { randomBytes } from "node:crypto"

/** `bytes` random bytes as hex: ids, request ids, ray ids. */
export const hex = (bytes: number) => randomBytes(bytes).toString("hex")

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

export const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
