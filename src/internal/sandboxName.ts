/**
 * Sandbox names (`Sandbox.make({ name })`) and the filters that select sandboxes (`list`, `sweep`): the
 * one rule of a name, checked before anything is asked of a provider, and the order that decides which
 * of two live sandboxes of one name keeps it.
 */
import * as Validate from "./validate.js"

/**
 * 1 to 63 of `A-Z a-z 0-9 . _ -`: a DNS label's length, and a value HF Jobs takes as a job label (where
 * the name is kept) and as a file name (where the local provider keeps it).
 */
const NAME = /^[A-Za-z0-9._-]{1,63}$/

/** The rule, for messages. */
const NAME_RULE = "1 to 63 characters, each a letter, a digit, '.', '_' or '-'"

/** A sandbox name, or {@link Validate.Invalid} naming the option. */
export const check = (option: string, input: unknown): string => {
  if (typeof input !== "string" || !NAME.test(input) || input === "." || input === "..") {
    throw new Validate.Invalid(
      option,
      `${typeof input === "string" ? JSON.stringify(input) : String(input)} is not a sandbox name (${NAME_RULE})`
    )
  }
  return input
}

/** A labels filter: an object of strings, or {@link Validate.Invalid} naming the option. */
export const checkLabels = (option: string, input: unknown): Readonly<Record<string, string>> | undefined => {
  if (input === undefined) return undefined
  if (
    typeof input !== "object" ||
    input === null ||
    Array.isArray(input) ||
    !Object.values(input).every((v) => typeof v === "string")
  ) {
    throw new Validate.Invalid(option, `${JSON.stringify(input)} is not an object of string labels`)
  }
  return input as Readonly<Record<string, string>>
}

/** Whether `labels` carry every one of `wanted`. */
export const hasLabels = (
  labels: Readonly<Record<string, string>> | undefined,
  wanted: Readonly<Record<string, string>> | undefined
): boolean => Object.entries(wanted ?? {}).every(([key, value]) => labels?.[key] === value)

/**
 * The order that decides which of two live sandboxes of one name keeps it: the earlier created, then the
 * lower id. Both sides of a race apply it to what they see, so they agree on the winner (see
 * `Sandbox.getOrCreate`).
 */
export const byAge = <A extends { readonly id: string; readonly createdAt: string | undefined }>(
  a: A,
  b: A
): number => {
  const at = (x: A) => (x.createdAt === undefined ? Number.POSITIVE_INFINITY : Date.parse(x.createdAt))
  return at(a) - at(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}
