/**
 * `hf-sandbox pool up|ls|down`: pools of host sandboxes that outlive the command (HF's `hf sandbox pool`),
 * found again by their name (the `hf-sandbox-pool` label of their hosts). `create --pool NAME` makes a
 * sandbox on one of them (see create.ts).
 */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as HostLabels from "../../internal/hostLabels.js"
import * as PoolOptions from "../../internal/pool/options.js"
import * as SandboxPool from "../../SandboxPool.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import { action } from "../action.js"
import { durationFlag, flavor, globals, image, startTimeout, transport } from "../options.js"
import * as Output from "../output.js"
import * as Parse from "../parse.js"

const poolName = Options.text("name").pipe(
  Options.withPseudoName("NAME"),
  Options.optional,
  Options.withDescription(
    `The pool's name (the hf-sandbox-pool label of its hosts; default ${PoolOptions.DEFAULT_NAME}).`
  )
)

const count = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withPseudoName("N"), Options.optional, Options.withDescription(description))

export const poolUp = Command.make(
  "up",
  {
    ...globals,
    image,
    flavor,
    name: poolName,
    hosts: count("hosts", "How many hosts the pool runs now: its running ones count, the rest start (default 1)."),
    perHost: count(
      "per-host",
      `How many sandboxes one host holds (default ${PoolOptions.DEFAULT_SANDBOXES_PER_HOST}).`
    ),
    maxHosts: count("max-hosts", "The most hosts the pool may ever run (kept on each host, for create --pool)."),
    idleTimeout: durationFlag(
      "idle-timeout",
      "A host stops after it has had no sandboxes for this long (default 10m; 0: never)."
    ),
    weakIsolation: Options.boolean("weak-isolation").pipe(
      Options.withDescription(
        "Accept hosts that cannot give each sandbox its own uid and Landlock confinement (not root, no Landlock)."
      )
    ),
    transport,
    startTimeout
  },
  action(
    (a, mode) =>
      Effect.gen(function* () {
        const imageName = Option.isSome(a.image) ? yield* Parse.notAnOption("IMAGE", a.image.value) : undefined
        const idle = yield* Parse.optionalDuration("--idle-timeout", a.idleTimeout)
        const name = Option.getOrElse(a.name, () => PoolOptions.DEFAULT_NAME)
        // The counts are checked by the pool, whose error names the option and the CLI its flag.
        const options: SandboxPool.LayerOptions = {
          ...(imageName !== undefined ? { image: imageName } : {}),
          flavor: yield* Parse.flavors(a.flavor),
          name,
          warmUp: Option.getOrUndefined(a.hosts),
          sandboxesPerHost: Option.getOrUndefined(a.perHost),
          maxHosts: Option.getOrUndefined(a.maxHosts),
          idleTimeout: Parse.idleTimeout(idle),
          weakIsolation: a.weakIsolation,
          transport: Option.getOrUndefined(a.transport),
          startTimeout: yield* Parse.optionalDuration("--start-timeout", a.startTimeout),
          detach: true
        }
        // The layer's scope closes when this returns: detached hosts keep running.
        const hosts = yield* Effect.flatMap(SandboxPool.SandboxPool, (pool) => pool.hosts).pipe(
          Effect.provide(Layer.fresh(SandboxPool.layer(options)))
        )
        if (mode.json) return yield* Output.json({ pool: name, hosts })
        for (const host of hosts) yield* Output.line(host.id)
        yield* Output.note(
          mode,
          `Pool ${name} is running ${hosts.length} host${hosts.length === 1 ? "" : "s"}; they keep running after this command ` +
            "and each stops after its idle timeout without sandboxes." +
            `\nMake a sandbox on it: hf-sandbox create --pool ${name}   Stop it: hf-sandbox pool down ${name}`
        )
      }),
    { starts: true }
  )
).pipe(Command.withDescription("Start a pool's hosts, which keep running after the command, and print their ids."))

export const poolLs = Command.make(
  "ls",
  {
    ...globals,
    name: Args.text({ name: "NAME" }).pipe(Args.optional, Args.withDescription("Only this pool's hosts."))
  },
  action((a, mode) =>
    Effect.gen(function* () {
      const provider = yield* SandboxProvider.SandboxProvider
      const labels = Option.match(a.name, {
        onNone: () => ({ [HostLabels.MODE_LABEL]: HostLabels.MODE_POOL }),
        onSome: HostLabels.ofPool
      })
      const listing = yield* SandboxProvider.list({ labels })
      if (mode.json) return yield* Output.json(listing.rows.map((r) => r.record))
      if (mode.quiet) return yield* Effect.forEach(listing.rows, (r) => Output.line(r.id), { discard: true })
      if (listing.rows.length === 0) {
        const which = Option.match(a.name, { onNone: () => "pool hosts", onSome: (n) => `hosts of pool ${n}` })
        return yield* Output.note(mode, `No ${provider.name} ${which} running.`)
      }
      yield* Output.table(
        listing.columns,
        listing.rows.map((r) => r.cells)
      )
    })
  )
).pipe(Command.withDescription("List the running hosts of every pool, or of one."))

export const poolDown = Command.make(
  "down",
  {
    ...globals,
    name: Args.text({ name: "NAME" }).pipe(Args.withDescription("The pool whose hosts to stop.")),
    dryRun: Options.boolean("dry-run").pipe(
      Options.withDescription("Stop nothing: print the hosts that would be stopped.")
    )
  },
  action((a, mode) =>
    Effect.gen(function* () {
      const name = yield* Parse.notAnOption("NAME", a.name)
      const stopped = yield* SandboxProvider.sweep({ labels: HostLabels.ofPool(name), dryRun: a.dryRun })
      const ids = stopped.map((r) => r.id)
      if (mode.json) return yield* Output.json(a.dryRun ? { wouldKill: ids } : { killed: ids })
      for (const id of ids) yield* Output.line(id)
      if (ids.length === 0) return yield* Output.note(mode, `Pool ${name} has no running host.`)
      if (a.dryRun)
        yield* Output.note(mode, `Dry run: ${ids.length} host${ids.length === 1 ? "" : "s"} would be stopped.`)
    })
  )
).pipe(Command.withDescription("Stop every host of a pool, and with them their sandboxes."))

export const pool = Command.make("pool", globals, () =>
  Effect.zipRight(Output.write("stderr", "usage: hf-sandbox pool <up|ls|down> ...\n"), Output.setExitCode(2))
).pipe(
  Command.withDescription("Pools of host sandboxes that pack many small sandboxes each: start, list, stop."),
  Command.withSubcommands([poolUp, poolLs, poolDown])
)
