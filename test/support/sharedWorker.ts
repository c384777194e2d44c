/**
 * Run before each test file (vitest's `setupFiles`). Test files share their worker process
 * (`isolate: false` in vitest.config.ts), so whatever a file changes in a module that stays loaded
 * reaches the files after it. One such change is not ours: `@effect/vitest`'s `layer(...)` assigns its
 * own `effect`/`scoped`/… testers onto vitest's `it` itself, so a later file's `it.effect` would run in
 * that layer's (closed) runtime instead of a fresh TestContext. The testers as first loaded are put back.
 * The other is the list of servers a file started (test/support/server.ts), emptied after each file.
 */
import { afterAll, it } from "@effect/vitest"
import { started, stopServer } from "./server.js"

const methods = ["effect", "scoped", "live", "scopedLive", "flakyTest", "layer", "prop"] as const
type Methods = Pick<typeof it, (typeof methods)[number]>

const key = Symbol.for("hf-sandbox/test/pristineTesters")
const store = globalThis as { [key]?: Methods }
// The first file of a worker sees @effect/vitest just loaded, before any `layer(...)` ran.
store[key] ??= Object.fromEntries(methods.map((name) => [name, it[name]])) as unknown as Methods
Object.assign(it, store[key])

// The list is emptied for the next file; a server the file failed to stop (its own afterAll threw before
// reaching it) would live on in the worker for every later file. Registered first, this runs after the
// file's own afterAll hooks (they run in stack order), which stop theirs and check how they exited.
afterAll(async () => {
  const running = started.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null)
  started.length = 0
  const failed = (await Promise.allSettled(running.map(stopServer))).find((s) => s.status === "rejected")
  if (failed !== undefined) throw failed.reason
})
