/**
 * Job labels as the Hub accepts them: every key (1 to 100 characters) and value (up to 100) made of
 * `A-Z a-z 0-9 . _ -`. Checked on the caller's side, so a bad label fails before any job exists
 * instead of as a Hub 400 after a token lookup.
 */

const KEY = /^[A-Za-z0-9._-]{1,100}$/
const VALUE = /^[A-Za-z0-9._-]{0,100}$/

const CHARACTERS = "letters, digits, '.', '_' or '-'"

/**
 * What is wrong with the first bad label, or `undefined` when all are good; said without the option's
 * name (the error names it: `labels`, the CLI's `--label`).
 */
export const problem = (labels: Readonly<Record<string, string>>): string | undefined => {
  for (const [key, value] of Object.entries(labels)) {
    if (!KEY.test(key)) return `${JSON.stringify(key)} is not a label key (1 to 100 ${CHARACTERS})`
    if (typeof value !== "string" || !VALUE.test(value)) {
      return `${JSON.stringify(value)} (the value of ${key}) is not a label value (up to 100 ${CHARACTERS})`
    }
  }
  return undefined
}
