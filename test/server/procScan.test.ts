/**
 * The host server's shared /proc scan (`rpc-server/sbx_server/proctree.py`, `FreshScan`), driven in the
 * server's own Python: every caller gets a scan that began after its call, and one scan serves all the
 * callers waiting when it began, so that deletes at once (each killing its sandbox's processes until none
 * is left) cost about two scans instead of one each. The scan is a stand-in that blocks until the test
 * lets it finish, so every interleaving is decided by the test, not by timing.
 */
import { describe, expect, it } from "vitest"
import { serverPython } from "../support/server.js"

const SCRIPT = `
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from sbx_server.proctree import FreshScan

calls, gates = [], []
def scan():
    gate = threading.Event()
    gates.append(gate)
    calls.append(len(calls) + 1)
    n = len(calls)
    gate.wait()
    return n

fresh = FreshScan(scan)
got = {}
def call(name):
    got[name] = fresh()

def until(check):
    while not check():
        threading.Event().wait(0.001)

def waiting(n):  # callers blocked on the condition: deterministic, no timing
    return len(fresh.cond._waiters) == n

a = threading.Thread(target=call, args=("a",)); a.start()
until(lambda: len(gates) == 1)            # a runs scan 1
b = threading.Thread(target=call, args=("b",)); b.start()
c = threading.Thread(target=call, args=("c",)); c.start()
until(lambda: waiting(2))                 # b and c wait: scan 1 began before their calls
gates[0].set(); a.join()
until(lambda: len(gates) == 2)            # one of them runs scan 2 ...
until(lambda: waiting(1))                 # ... and the other waits for it
running_after_a = len(calls)
gates[1].set(); b.join(); c.join()
e = threading.Thread(target=call, args=("e",)); e.start()
until(lambda: len(gates) == 3)            # a call after every scan ended begins its own
gates[2].set(); e.join()
print(json.dumps({"got": got, "scans": len(calls), "scans_before_release": running_after_a}))
`

describe("FreshScan", () => {
  it("gives each caller a scan begun after its call, one scan serving every caller waiting", async () => {
    expect(await serverPython(SCRIPT)).toEqual({ got: { a: 1, b: 2, c: 2, e: 3 }, scans: 3, scans_before_release: 2 })
  })
})
