/**
 * The host's stock of warm wrappers (`rpc-server/sbx_server/warm.py`, `Stock.take`), driven in the
 * server's own Python: a command that finds the stock empty has a wrapper forked for it by the zygote, and
 * that fork (a round trip to the zygote, up to its ANSWER_TIMEOUT) runs outside the stock's lock, which
 * every other command's take() and the refill thread need.
 */
import { describe, expect, it } from "vitest"
import { serverPython } from "../support/server.js"

const SCRIPT = `
import json, sys
sys.path.insert(0, sys.argv[1])
from sbx_server.warm import Stock

class Confined(object):
    confines = True

stock = Stock(Confined(), 2)
stock.target = 0
stock.zygote = object()  # a zygote is there: the empty stock forks for the command
held = []
def started(only=None):
    held.append(stock.cond._is_owned())
    return "forked"
stock.started = started
got = stock.take()
print(json.dumps({"got": got, "lock_held_while_forking": held, "target": stock.target}))
`

describe("warm Stock.take", () => {
  it("forks for an empty stock outside the stock's lock, and keeps one more ready from then on", async () => {
    expect(await serverPython(SCRIPT)).toEqual({ got: "forked", lock_held_while_forking: [false], target: 1 })
  })
})
