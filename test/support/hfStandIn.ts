/**
 * A stand-in `hf` CLI for the bucket transfer tests (`hf_standin.py` beside this file: see its docs), in a
 * fresh directory removed with the scope: its PATH, the calls and environments it recorded, its bucket
 * store, and `go()`, which lets a download it holds at half go on.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import { realPython } from "./python.js"

const SCRIPT = fileURLToPath(new URL("./hf_standin.py", import.meta.url))

/**
 * A stand-in `hf` of `version` (none when undefined) whose `buckets` commands exit `exit` (non-zero: a
 * 403 refusal), whose `hf version` exits `versionExit` (non-zero: no version printed) and whose store holds
 * `store` (`"ns/name/path"` → content).
 */
export const hfStandIn = (
  version: string | undefined,
  options: { exit?: number; versionExit?: number; store?: Record<string, string | Uint8Array> } = {}
) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-standin-"))
      const bin = path.join(dir, "bin")
      fs.mkdirSync(bin)
      fs.writeFileSync(
        path.join(dir, "config.json"),
        JSON.stringify({ version, exit: options.exit ?? 0, versionExit: options.versionExit ?? 0 })
      )
      if (version !== undefined) {
        const source = fs.readFileSync(SCRIPT, "utf8")
        fs.writeFileSync(path.join(bin, "hf"), `#!${realPython()} -S\n${source}`, { mode: 0o755 })
      }
      for (const [name, content] of Object.entries(options.store ?? {})) {
        const file = path.join(dir, "store", name)
        fs.mkdirSync(path.dirname(file), { recursive: true })
        fs.writeFileSync(file, content)
      }
      const read = (name: string) => {
        try {
          return fs.readFileSync(path.join(dir, name), "utf8")
        } catch {
          return ""
        }
      }
      return {
        dir,
        path: `${bin}:/usr/bin:/bin`,
        /** Each call's argv. */
        calls: () =>
          read("calls")
            .split("--\n")
            .filter((c) => c !== "")
            .map((c) => c.split("\n").filter((l) => l !== "")),
        /** The environments of all calls, one `KEY=value` a line. */
        env: () => read("env"),
        /** A file of the bucket store (`"ns/name/path"`), or undefined. */
        stored: (name: string) => {
          try {
            return fs.readFileSync(path.join(dir, "store", name), "utf8")
          } catch {
            return undefined
          }
        },
        /** Lets a download held at half go on (this and every later one). */
        go: () => fs.writeFileSync(path.join(dir, "go"), "")
      }
    }),
    ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
