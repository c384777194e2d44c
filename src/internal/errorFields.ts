/**
 * A copy of a `Schema.TaggedError` with some fields changed, every other field of its schema kept: the
 * one mapping for everything that re-says an error (`startError.during`, the CLI's words), so that a
 * field added to an error later is kept by every copy.
 */

/** An error class made by `Schema.TaggedError`: its constructor and its schema's fields. */
export interface ErrorClass<A, Fields> {
  new (fields: Fields): A
  readonly fields: Readonly<Record<string, unknown>>
}

/** `error` as an instance of `Class` with `changes`: every other field kept, an unset one left unset. */
export const withFields = <A extends object, Fields>(
  Class: ErrorClass<A, Fields>,
  error: A,
  changes: Partial<Fields>
): A => {
  const fields: Record<string, unknown> = {}
  for (const key of Object.keys(Class.fields)) {
    if (key === "_tag") continue
    const value = key in changes ? (changes as Record<string, unknown>)[key] : (error as Record<string, unknown>)[key]
    if (value !== undefined) fields[key] = value
  }
  return new Class(fields as Fields)
}
