/**
 * `hf-sandbox hardware` and `hf-sandbox top`, in the CLI harness (test/support/cli.ts): the catalog of
 * the emulated Hub, and live samples of a local and an emulated HF sandbox, ended by `--count` or Ctrl-C.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import {
  cli,
  createHf,
  createLocal,
  emulator,
  expectCode,
  hf,
  local,
  startInProcess,
  useCliHarness
} from "../support/cli.js"
import { until } from "../support/processes.js"

useCliHarness()

interface Sample {
  readonly cpuPercent: number
  readonly cpuMillicores: number
  readonly memoryUsedBytes: number
  readonly memoryTotalBytes: number
  readonly gpus: ReadonlyArray<{ readonly id: string }>
}

describe("hf-sandbox hardware and top", () => {
  it("hardware prints the catalog as a table, names with -q, and the Hub's specs with --json", async () => {
    const table = await hf(["hardware"])
    expectCode(table, 0)
    const lines = table.stdout.trimEnd().split("\n")
    assert.match(lines[0]!, /^NAME +PRETTY NAME +CPU +RAM +ACCELERATOR +PRICE\/HOUR$/)
    assert.match(table.stdout, /^cpu-basic +CPU Basic +2 vCPU +16 GB +\$0\.01$/m)
    assert.match(table.stdout, /^a10g-largex2 +2x Nvidia A10G - large +24 vCPU +92 GB +2x A10G \(48 GB\) +\$3\.00$/m)
    const names = await hf(["hardware", "-q"])
    expectCode(names, 0)
    assert.includeMembers(names.stdout.trim().split("\n"), ["cpu-basic", "t4-small", "a100-large", "h200"])
    // The catalog is public: without a token it is asked anonymously.
    const anonymous = await cli(["hardware", "-q"], { env: { HF_ENDPOINT: emulator.url } })
    expectCode(anonymous, 0)
    assert.strictEqual(anonymous.stdout, names.stdout)
    const json = await hf(["hardware", "--json"])
    expectCode(json, 0)
    const t4 = (JSON.parse(json.stdout) as Array<Record<string, unknown>>).find((h) => h.name === "t4-small")
    assert.deepInclude(t4, { cpu: "4 vCPU", ram: "15 GB", unitLabel: "minute", pricePerHour: 0.4 })
  })

  it("hardware --local says that the catalog is HF Jobs' and lists nothing: local sandboxes have no flavors", async () => {
    for (const args of [
      ["--local", "hardware"],
      ["hardware", "--local"],
      ["--local", "hardware", "--json"]
    ]) {
      const refused = await cli(args, { hf: true })
      expectCode(refused, 2)
      assert.strictEqual(refused.stdout.includes("cpu-basic"), false, "no catalog on stdout")
      const said = args.includes("--json")
        ? (JSON.parse(refused.stdout) as { error: { type: string; message: string } }).error
        : { type: "UsageError", message: refused.stderr }
      assert.strictEqual(said.type, "UsageError")
      assert.match(said.message, /HF Jobs hardware.*--local.*no flavors.*without --local/s)
    }
  })

  it("top prints a local sandbox's samples (--json: one document each) and stops after --count", async () => {
    const id = await createLocal()
    const json = await local(["top", "--count", "2", "--interval", "200ms", "--json", id])
    expectCode(json, 0)
    const samples = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Sample)
    assert.strictEqual(samples.length, 2)
    for (const sample of samples) {
      assert.isAbove(sample.memoryTotalBytes, 0)
      assert.isAbove(sample.cpuMillicores, 0)
    }
    const plain = await local(["top", "-n", "1", "--interval", "200ms", id])
    expectCode(plain, 0)
    assert.match(plain.stdout, /^CPU \d+% of \d+\.\d {2}MEM .+ \/ .+ \(\d+\.\d%\) {2}NET in .+\/s out .+\/s\n$/)
    expectCode(await local(["top", "--count", "0", id]), 2)
    expectCode(await local(["kill", id]), 0)
  })

  it("top follows an HF sandbox's Jobs metrics until Ctrl-C, which only detaches", async () => {
    const id = await createHf("--flavor", "t4-small")
    try {
      const run = startInProcess(["top", id], { hf: true })
      await until(
        () => `a first line on stdout: ${run.stdout()}`,
        () => run.stdout().includes("\n"),
        30_000
      )
      const result = await run.interrupt()
      assert.strictEqual(result.code, 130)
      // t4-small: 4 vCPU, 15 GB, one T4 (16 GB).
      assert.match(
        result.stdout.split("\n")[0]!,
        /^CPU \d+% of 4\.0 {2}MEM .+ \/ 15\.0 GiB .+ {2}GPU [0-9a-f]{8} 0% 0 B \/ 14\.9 GiB$/
      )
      // The sandbox still runs: top attached to it, and leaving only detaches.
      const again = await hf(["top", "--count", "1", "--json", id])
      expectCode(again, 0)
      assert.strictEqual((JSON.parse(again.stdout) as Sample).gpus.length, 1)
    } finally {
      expectCode(await hf(["kill", id]), 0)
    }
  })

  it("top reads an HF sandbox's samples from the Hub alone: no log is followed and its dead tunnel is not asked", async () => {
    const id = await createHf() // the default transport: a quick tunnel
    try {
      // The tunnel dies, and the one cloudflared makes next answers 530 for as long as the test runs.
      emulator.faults.tunnelWarmup530Ms = 600_000
      assert.lengthOf(await Effect.runPromise(emulator.killTunnel(id)), 1)
      const before = (await Effect.runPromise(emulator.requests)).length
      const lookups = (await Effect.runPromise(emulator.dnsLookups)).length
      const result = await hf(["top", "--count", "2", "--json", id])
      expectCode(result, 0)
      assert.lengthOf(result.stdout.trim().split("\n"), 2)
      const asked = (await Effect.runPromise(emulator.requests)).slice(before).map((r) => r.route)
      assert.notInclude(asked, "logs")
      assert.includeMembers(asked, ["metrics"])
      assert.lengthOf((await Effect.runPromise(emulator.dnsLookups)).slice(lookups), 0, "no tunnel name looked up")
    } finally {
      emulator.faults.tunnelWarmup530Ms = 0
      expectCode(await hf(["kill", id]), 0)
    }
    // An ended sandbox has no samples to show, and top says why.
    const ended = await hf(["top", id])
    expectCode(ended, 1)
    assert.match(ended.stderr, /not running \(CANCEL/)
  })
})
