/**
 * The Python interpreter tests spawn, and Python scripts run to their end. `python3` on PATH is often a
 * shim (pyenv, asdf): a shell script that costs tens of milliseconds per start on a quiet machine and a
 * second or more on a loaded one, paid by every server and fake the suites start. The interpreter it
 * resolves to is the same Python.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { type Run, type RunOptions, run } from "./run.js"

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

export interface PythonOptions extends RunOptions {
  /** The interpreter (default: `python3`). */
  readonly python?: string | undefined
  /** Run with the `site` module (default: `-S`, as the server runs: stdlib only, no site's start-up hooks). */
  readonly site?: boolean | undefined
  /** The script's own arguments (its `sys.argv[1:]`). */
  readonly args?: ReadonlyArray<string> | undefined
}

/** Runs the Python `code` (`python -S -c code args...`) to its end: its exit and output. */
export const runPython = (code: string, options: PythonOptions = {}): Promise<Run> => {
  const { python = "python3", site = false, args = [], ...runOptions } = options
  return run(python, [...(site ? [] : ["-S"]), "-c", code, ...args], runOptions)
}

/**
 * Runs the Python `code` (see {@link runPython}) that prints one JSON value: that value. It fails, saying
 * how the script ended and what it printed, when the script exits other than 0 or writes to stderr (a
 * traceback, a warning: what the script checks is then in doubt).
 */
export const pythonJson = async (code: string, options: PythonOptions = {}): Promise<unknown> => {
  // A guard against a hang that fails naming it, inside the test's own timeout; not a measure of speed.
  const result = await runPython(code, { timeout: 30_000, ...options })
  if (result.status !== 0 || result.stderr !== "") {
    const how = `${result.signal ?? `exit ${result.status}`}${result.stderr === "" ? "" : ", writing to stderr"}`
    throw new Error(`the Python script ended with ${how}:\n${result.stderr}\nstdout:\n${result.stdout}`)
  }
  return JSON.parse(result.stdout) as unknown
}
