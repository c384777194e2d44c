/**
 * What names an HF job where a user gives one: its id, optionally after its namespace
 * (`alice/687fb701029421ae5549d998`, as the Hub's job pages and `hf jobs` print it). Every id is checked
 * here before it becomes part of a Hub URL: anything else (`../../x`) would send the token to another
 * API route.
 */
import * as Either from "effect/Either"

/** A Hub job id: 24 lowercase hex digits (a MongoDB ObjectId), e.g. `687fb701029421ae5549d998`. */
const JOB_ID = /^[0-9a-f]{24}$/

/** A user or organisation name as it may stand in a Hub path: no `/`, no `..`, no leading dot or dash. */
const NAMESPACE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/

/** Whether a namespace can stand in a Hub path as one segment. */
export const isNamespace = (value: string): boolean => NAMESPACE.test(value) && !value.includes("..")

export interface JobRef {
  /** The namespace the reference names, if it names one. */
  readonly namespace: string | undefined
  readonly id: string
}

const FORM =
  "an HF Jobs sandbox id is 24 hex digits (e.g. 687fb701029421ae5549d998), optionally after its namespace (alice/687fb701029421ae5549d998)"

/**
 * Parses `[namespace/]id`. A namespace given apart (`explicit`) must agree with the one in the reference.
 * The `Left` says what is wrong, for the caller's own error.
 */
export const parse = (input: string, explicit?: string | undefined): Either.Either<JobRef, string> => {
  const parts = input.split("/")
  if (parts.length > 2) return Either.left(`${JSON.stringify(input)} is not a sandbox id: ${FORM}`)
  const [first, second] = parts as [string, string | undefined]
  const namespace = second === undefined ? undefined : first
  const id = second === undefined ? first : second
  if (!JOB_ID.test(id)) return Either.left(`${JSON.stringify(input)} is not a sandbox id: ${FORM}`)
  if (namespace !== undefined && !isNamespace(namespace)) {
    return Either.left(
      `${JSON.stringify(input)} is not a sandbox id: ${JSON.stringify(namespace)} is not a namespace; ${FORM}`
    )
  }
  if (explicit !== undefined && !isNamespace(explicit)) {
    return Either.left(`${JSON.stringify(explicit)} is not a namespace (a Hub user or organisation name)`)
  }
  if (namespace !== undefined && explicit !== undefined && namespace !== explicit) {
    return Either.left(`${JSON.stringify(input)} names namespace ${namespace}, but the namespace ${explicit} was given`)
  }
  return Either.right({ namespace: namespace ?? explicit, id })
}
