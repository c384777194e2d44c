/**
 * The order test files start in (vitest's `sequence.sequencer`). Vitest runs the files it has timed
 * before longest first, which keeps the end of a run short: no worker is left alone with a long file.
 * But a fresh clone (every CI run) has no timings, and vitest then starts the largest files first. A
 * file's size says little of its time here: `live.test.ts` is 70 lines and one test of 12 s, mostly
 * waiting on the emulator's realistic delays, so it was started last and ended the run alone ~9 s after
 * every other file. Without timings, the files below go first, longest first as timed on a 2-core machine;
 * the rest follow by size, as vitest orders them (a file missing from the list only starts later). With
 * timings, vitest's own order stands.
 */
import * as path from "node:path"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * The files that held a worker 4 s or more when a whole run was timed (2 cores, four workers), longest
 * first. Started in this order, the long ones overlap the many short ones, which fill the end of the run.
 */
const LONG_FIRST = [
  "test/HfJobs/tunnel.test.ts",
  "test/cli/hfJobs.test.ts",
  "test/Telemetry.test.ts",
  "test/HfJobs/hubFaults.test.ts",
  "test/cli/local.test.ts",
  "test/server/tunnel.test.ts",
  "test/HfJobs.test.ts",
  "test/Files/transfers.test.ts",
  "test/live.test.ts",
  "test/promise.test.ts",
  "test/lifecycle.test.ts",
  "test/server/bounds.test.ts",
  "test/Sandbox/execResume.test.ts",
  "test/cli/ssh.test.ts",
  "test/docs.test.ts",
  "test/SandboxPool/hfJobs.test.ts",
  "test/server/conformance.test.ts",
  "test/Testing.test.ts",
  "test/Sandbox/stdin.test.ts",
  "test/cli/metrics.test.ts",
  "test/Sandbox.test.ts",
  "test/server/hostMode.test.ts",
  "test/docsRun.test.ts",
  "test/Files/hub.test.ts",
  "test/Files/readStreamSilence.test.ts",
  "test/HfJobs/cloudflared.test.ts",
  "test/HfJobs/flavors.test.ts",
  "test/SandboxPool.test.ts",
  "test/Sandbox/metrics.test.ts",
  "test/Files/hubBuckets.test.ts",
  "test/cli/start.test.ts",
  "test/server/processes.test.ts"
]

export default class Sequencer extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const root = this.ctx.config.root
    const timed = files.every((file) =>
      this.ctx.cache.getFileTestResults(`${file.project.name}:${path.relative(root, file.moduleId)}`)
    )
    const sorted = await super.sort(files)
    if (timed) return sorted
    const rank = (file: TestSpecification) => {
      const index = LONG_FIRST.indexOf(path.relative(root, file.moduleId).split(path.sep).join("/"))
      return index === -1 ? LONG_FIRST.length : index
    }
    // Array.prototype.sort is stable: the unlisted files keep vitest's order among themselves.
    return sorted.sort((a, b) => rank(a) - rank(b))
  }
}
