/**
 * The command line's limits on commands (`rpc-server/sbx_server/common.py`, `PROCESS_LIMITS`) are read
 * where they apply (background.py), never copied at import: a module imported before cli.main set them
 * (a supervisor, host mode) still obeys --max-processes. Driven in the server's own Python.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { PYTHON, SERVER } from "../support/server.js"

const SCRIPT = `
import json, sys
sys.path.insert(0, sys.argv[1])
from sbx_server.background import BGPROCS  # imported first, as a supervisor or host mode may
from sbx_server.common import PROCESS_LIMITS, HttpError
PROCESS_LIMITS.max_running = 1  # what cli.main sets from --max-processes, after that import
BGPROCS.claim()
try:
    BGPROCS.claim()
    second = "claimed"
except HttpError as e:
    second = e.code
print(json.dumps({"second": second}))
`

describe("PROCESS_LIMITS", () => {
  it("holds the background table to a limit set after background.py was imported", () => {
    const out = execFileSync(PYTHON, ["-S", "-c", SCRIPT, path.dirname(SERVER)], {
      encoding: "utf8",
      // A guard against a hang, not a measure of speed.
      timeout: 30_000
    })
    expect(JSON.parse(out)).toEqual({ second: "too_many_processes" })
  })
})
