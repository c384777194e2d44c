/**
 * Where the emulator's jobs find Python. An image such as `python:3.12` has the interpreter itself on
 * PATH; a developer machine often has a shim there instead (pyenv, asdf), a shell script that costs
 * tens of milliseconds per call when quiet and a second or more on a loaded machine. The job's
 * bootstrap calls `python3` three times before the server runs, so the emulator puts the directory of
 * the real interpreter first, as the image would. It is the same interpreter: nothing is more lenient.
 */
import { execFile } from "node:child_process"
import * as path from "node:path"

let lookup: Promise<string | undefined> | undefined

/**
 * The directory of the interpreter `python3` on this machine's PATH resolves to, asked once per process;
 * undefined when there is none (the job then sees the PATH unchanged, and fails as an image without
 * Python does).
 */
export const interpreterDir = (): Promise<string | undefined> => {
  lookup ??= new Promise((resolve) => {
    execFile("python3", ["-S", "-c", "import sys; print(sys.executable)"], { timeout: 10_000 }, (error, stdout) => {
      const executable = error === null ? stdout.trim() : ""
      resolve(path.isAbsolute(executable) ? path.dirname(executable) : undefined)
    })
  })
  return lookup
}
