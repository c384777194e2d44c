/**
 * The Python interpreter tests spawn. `python3` on PATH is often a shim (pyenv, asdf): a shell script
 * that costs tens of milliseconds per start on a quiet machine and a second or more on a loaded one,
 * paid by every server and fake the suites start. The interpreter it resolves to is the same Python.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"

/** The absolute path of the interpreter `python` resolves to, or `python` itself if the lookup fails. */
export const realPython = (python = "python3"): string => {
  try {
    const executable = execFileSync(python, ["-S", "-c", "import sys; print(sys.executable)"], {
      encoding: "utf8",
      timeout: 30_000
    }).trim()
    return path.isAbsolute(executable) ? executable : python
  } catch {
    return python
  }
}
