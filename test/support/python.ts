/**
 * The Python interpreter tests spawn. `python3` on PATH is often a shim (pyenv, asdf): a shell script
 * that costs tens of milliseconds per start on a quiet machine and a second or more on a loaded one,
 * paid by every server and fake the suites start. The interpreter it resolves to is the same Python.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"

/**
 * Where the run's main process hands down what `python3` resolved to (vitest.config.ts asks first), so
 * that its workers and a vitest run inside the suite need not ask again.
 */
const ENV = "HF_SANDBOX_TEST_PYTHON"

/** What each interpreter name resolved to in this process: the answer cannot change during a run. */
const resolved = new Map<string, string>()

/** The absolute path of the interpreter `python` resolves to, or `python` itself if the lookup fails. */
export const realPython = (python = "python3"): string => {
  const known = resolved.get(python) ?? (python === "python3" ? process.env[ENV] : undefined)
  if (known !== undefined) return known
  const found = lookUp(python)
  resolved.set(python, found)
  if (python === "python3") process.env[ENV] = found
  return found
}

const lookUp = (python: string): string => {
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
