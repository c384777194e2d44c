/**
 * Job labels as the Hub accepts them: every key (1 to 100 characters) and value (up to 100) made of
 * `A-Z a-z 0-9 . _ -`. Checked on the caller's side, so a bad label fails before any job exists
 * instead of as a Hub 400 after a token lookup.
 */

const KEY = /^[A-Za-z0-9._-]{1,100}$/
const VALUE = /^[A-Za-z0-9._-]{0,100}$/

/** The rule, for messages. */
const LABEL_RULE = "label keys (1-100) and values (0-100 characters) may hold only letters, digits, '.', '_' and '-'"

/** What is wrong with the first bad label, or `undefined` when all are good. */
export const problem = (labels: Readonly<Record<string, string>>): string | undefined => {
  for (const [key, value] of Object.entries(labels)) {
    if (!KEY.test(key)) return `invalid label key ${JSON.stringify(key)}: ${LABEL_RULE}`
    if (typeof value !== "string" || !VALUE.test(value)) {
      return `invalid value ${JSON.stringify(value)} of label ${key}: ${LABEL_RULE}`
    }
  }
  return undefined
}
