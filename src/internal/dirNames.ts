/**
 * The "read a directory, or nothing" step of the sweeps that look around this machine (/proc, a state
 * directory, a temp directory): a directory that is missing or unreadable has nothing in it for them.
 */
import * as fs from "node:fs"

/** The names in `dir`, or none when it cannot be read. */
export const namesIn = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}
