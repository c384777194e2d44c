/** `hf-sandbox top ID`: a sandbox's live resource use, one line per sample, until Ctrl-C (or `--count`). */

import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MetricsSample } from "../../Sandbox.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import { action, idOf } from "../action.js"
import { durationFlag, globals, sandboxId } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

const percent = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-")

/** One sample as a line: `CPU 12% of 2.0  MEM 45.3 MiB / 15.00 GiB (0.3%)  NET in 0 B/s out 0 B/s  GPU …`. */
const render = (s: MetricsSample) =>
  [
    `CPU ${s.cpuPercent}% of ${(s.cpuMillicores / 1000).toFixed(1)}`,
    `MEM ${Parse.bytes(s.memoryUsedBytes)} / ${Parse.bytes(s.memoryTotalBytes)} (${percent(s.memoryUsedBytes, s.memoryTotalBytes)})`,
    `NET in ${Parse.bytes(s.rxBps)}/s out ${Parse.bytes(s.txBps)}/s`,
    ...s.gpus.map(
      (gpu) =>
        `GPU ${gpu.id} ${gpu.utilization}% ${Parse.bytes(gpu.memoryUsedBytes)} / ${Parse.bytes(gpu.memoryTotalBytes)}`
    )
  ].join("  ")

export const top = Command.make(
  "top",
  {
    ...globals,
    interval: durationFlag("interval", "Time between samples (default 1s; HF Jobs send one a second whatever it is)."),
    count: Options.integer("count").pipe(
      Options.withAlias("n"),
      Options.withPseudoName("N"),
      Options.optional,
      Options.withDescription("Stop after N samples (default: until Ctrl-C).")
    ),
    id: sandboxId
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const id = yield* Parse.notAnOption("ID", a.id)
        const interval = yield* Parse.optionalDuration("--interval", a.interval)
        const count = Option.getOrUndefined(a.count)
        if (count !== undefined && count < 1)
          return yield* new Parse.UsageError({ message: "--count must be 1 or more" })
        const options = interval === undefined ? {} : { interval }
        // Where the platform measures the sandbox (HF Jobs), its samples need no connection to it; else
        // (and for a pooled id) the seam attaches to it.
        const samples = SandboxProvider.metrics(id, options)
        yield* (count === undefined ? samples : Stream.take(samples, count)).pipe(
          Stream.runForEach((sample) => (mode.json ? Output.json(sample) : Output.line(render(sample))))
        )
      }),
    { ids: idOf }
  )
).pipe(
  Command.withDescription(
    "Show a sandbox's live resource use (CPU, memory, network, GPUs), one line per sample, until Ctrl-C; " +
      "--json prints one JSON document per sample."
  )
)
