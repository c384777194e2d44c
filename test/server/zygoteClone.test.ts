/**
 * The warm wrappers' zygote (`rpc-server/sbx_server/zygote.py`, `clone_syscall`): the raw
 * clone(CLONE_PARENT) skips the C library's fork bookkeeping, so it is used only where the C library keeps
 * no cached pid or thread id for the child to inherit (glibc >= 2.25); musl, an older glibc or an unknown
 * C library get the double fork (-1). Driven in the server's own Python with the confstr answers.
 */
import { describe, expect, it } from "vitest"
import { serverPython } from "../support/server.js"

const SCRIPT = `
import json, sys
sys.path.insert(0, sys.argv[1])
from sbx_server.zygote import clone_syscall
cases = [["x86_64", "glibc 2.36"], ["aarch64", "glibc 2.25"], ["x86_64", "glibc 2.24"], ["x86_64", "glibc 2.17"],
         ["x86_64", None], ["x86_64", ""], ["x86_64", "glibc"], ["x86_64", "glibc two"], ["x86_64", "musl 1.2"],
         ["riscv64", "glibc 2.40"], ["x86_64", "glibc 3.0"]]
print(json.dumps([clone_syscall(machine, libc) for machine, libc in cases]))
`

describe("zygote clone_syscall", () => {
  it("uses the raw clone only under glibc >= 2.25 on a known machine", async () => {
    expect(await serverPython(SCRIPT)).toEqual([56, 220, -1, -1, -1, -1, -1, -1, -1, -1, 56])
  })
})
