import * as path from "node:path"
import { configDefaults, defineConfig, type Plugin } from "vitest/config"
import type { Reporter } from "vitest/reporters"
import { compiledFiles, resolveImport } from "./test/support/library.js"
import { realPython } from "./test/support/python.js"
import Sequencer from "./test/support/sequencer.js"

/**
 * Tests import the library by its package name, exactly as users do, or a module of `src/` by its path;
 * both resolve to the copy of `src/` compiled for the run (test/support/library.ts), which Node loads
 * natively instead of through vitest's module runner.
 */
const library: Plugin = { name: "hf-sandbox-library", enforce: "pre", resolveId: resolveImport }

type Task = { type: string; mode?: string; result?: { state?: string }; tasks?: Array<Task> }

/** Ends the run with one plain `N passed, N failed, N skipped` line that any log reader understands. */
const summary: Reporter = {
  onFinished(files = []) {
    const count = { passed: 0, failed: 0, skipped: 0 }
    const walk = (task: Task) => {
      if (task.tasks) return task.tasks.forEach(walk)
      if (task.type !== "test") return
      const state = task.result?.state
      if (state === "pass") count.passed++
      else if (state === "fail") count.failed++
      else count.skipped++
    }
    ;(files as unknown as Array<Task>).forEach(walk)
    console.log(`\n${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped`)
  }
}

/**
 * PATH with the directory of the interpreter `python3` resolves to put first. On machines where
 * `python3` is a shim (pyenv, asdf; see test/support/python.ts), every local sandbox, server and fake the
 * suites start pays it; the interpreter behind it is the same Python. Without python3, PATH stays as it
 * is: the suites that need it say so themselves.
 */
const pathWithRealPython = (): string | undefined => {
  const python = realPython()
  return path.isAbsolute(python) ? `${path.dirname(python)}${path.delimiter}${process.env.PATH ?? ""}` : undefined
}
const PATH = pathWithRealPython()

export default defineConfig({
  plugins: [library],
  test: {
    globalSetup: ["./test/support/library.ts", "./test/support/runBundles.ts"],
    setupFiles: ["./test/support/sharedWorker.ts"],
    // In watch mode a change of the library reruns the tests, against the tree compiled again.
    forceRerunTriggers: [...configDefaults.forceRerunTriggers, "**/src/**"],
    server: { deps: { external: [compiledFiles] } },
    include: ["test/**/*.test.ts"],
    sequence: { sequencer: Sequencer },
    // `global.gc` lets the streaming suites measure what the client retains, not garbage not yet collected;
    // source maps make stack traces through the compiled library name the lines of `src/`.
    // Four files at a time even on a 2-core machine (the default would be one): most of a test's time is
    // spent waiting on real processes, sleeps of the commands under test and loopback I/O, not computing
    // (with two the suite used under one core on average; with three, ~1.6 of 2). On a quiet 2-core
    // machine four took 106 s where three took 119–123 s.
    // Files share their worker (`isolate: false`): a fresh worker per file paid ~2 s of CPU to load Effect
    // and the library again, a third of the suite's CPU. What a file leaves in a loaded module is reset
    // before the next one (test/support/sharedWorker.ts). As many workers from the start as at most:
    // with fewer, tinypool retires workers while the run ends and reports "Terminating worker thread".
    poolOptions: {
      forks: { execArgv: ["--expose-gc", "--enable-source-maps"], isolate: false, maxForks: 4, minForks: 4 }
    },
    ...(PATH !== undefined ? { env: { PATH } } : {}),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", summary]
  }
})
