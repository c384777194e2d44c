/**
 * A tiny program using the Promise facade, run as a child process by test/promise.test.ts to check
 * what happens to its open sandbox when the program is signalled or ends. It prints one JSON line
 * `{ "server": pid, "command"?: pid }` once it is ready, then, by mode:
 *
 * - `idle`: keeps running (a timer) until signalled;
 * - `exec`: waits on a remote `sleep 30` until signalled;
 * - `end`: returns with `process.exitCode = 3`, the sandbox still open;
 * - `exit`: calls `process.exit(4)`, the sandbox still open;
 * - `throw`: dies of an uncaught exception, the sandbox still open.
 */
import { Sandbox } from "hf-sandbox/promise"

const mode = process.argv[2]
const sb = await Sandbox.create({ provider: "local" })
const server = sb.details.pid
const ready = (extra: Record<string, unknown> = {}) => console.log(JSON.stringify({ server, ...extra }))

switch (mode) {
  case "idle":
    setInterval(() => {}, 1000)
    ready()
    break
  case "exec":
    for await (const event of sb.execStream("exec sleep 30")) {
      if (event._tag === "Start") ready({ command: event.pid })
    }
    console.log("unreachable: the command was not killed")
    break
  case "end":
    await sb.exec("true")
    process.exitCode = 3
    ready()
    break
  case "exit":
    ready()
    process.exit(4)
    break
  case "throw":
    ready()
    setTimeout(() => {
      throw new Error("boom")
    }, 10)
    break
  default:
    throw new Error(`unknown mode ${mode}`)
}
