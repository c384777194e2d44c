/**
 * The journal of a local sandbox's unfinished writes (the server's `--journal`): a directory beside its
 * working directory, `hf-sandbox-XXXX.journal`, holding one symlink per temporary file the server is
 * writing (`.<name>.hf-sandbox-<id>.part`, beside a destination that may be anywhere on this machine).
 * The server's supervisor removes the files it lists when the server dies; when both died together
 * (SIGKILL of the whole process group, a power loss), whoever sweeps the sandbox's leftovers replays it
 * here, the same way: only regular files with the name of such a temporary file are ever removed.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { namesIn } from "../dirNames.js"

const TEMP_NAME = /^\..+\.hf-sandbox-[A-Za-z0-9_-]{8,64}\.part$/s
/** The server names each entry by a digest of its file's path. */
const ENTRY_NAME = /^[0-9a-f]{40}$/

/** The journal of a working directory. */
export const journalPath = (workdir: string): string => `${workdir}.journal`

/** Removes the temporary files the journal of `workdir` lists, then the journal. Returns how many went. */
export const replay = (workdir: string): number => {
  const journal = journalPath(workdir)
  let removed = 0
  // A journal that cannot be read has nothing to replay (and its removal below fails quietly).
  for (const name of namesIn(journal)) {
    if (!ENTRY_NAME.test(name)) continue
    const entry = path.join(journal, name)
    let temp: string
    try {
      temp = fs.readlinkSync(entry)
    } catch {
      continue // not a link: not the server's
    }
    try {
      if (path.isAbsolute(temp) && TEMP_NAME.test(path.basename(temp)) && fs.lstatSync(temp).isFile()) {
        fs.unlinkSync(temp)
        removed += 1
      }
    } catch {
      // Gone already (renamed into place, or removed by the supervisor meanwhile).
    }
    fs.rmSync(entry, { force: true })
  }
  try {
    fs.rmdirSync(journal)
  } catch {
    // Not empty (something else than the server's entries): left as it is.
  }
  return removed
}
