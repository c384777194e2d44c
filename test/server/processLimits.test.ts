/**
 * The command line's limits on commands (`rpc-server/sbx_server/common.py`, `PROCESS_LIMITS`) are read
 * where they apply (background.py), never copied at import: a module imported before cli.main set them
 * (a supervisor, host mode) still obeys --max-processes. Driven in the server's own Python.
 */
import { describe, expect, it } from "vitest"
import { serverPython } from "../support/server.js"

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
  it("holds the background table to a limit set after background.py was imported", async () => {
    expect(await serverPython(SCRIPT)).toEqual({ second: "too_many_processes" })
  })
})
