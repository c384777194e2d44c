/**
 * A pool's hosts found by their labels, from any process: what the CLI's `pool ls` lists, `create
 * --pool NAME` makes a sandbox on, and `SandboxPool.layer` adopts (HF's `SandboxPool` discovers warm
 * hosts the same way). A sandbox made
 * here is not owned by the caller: closing its scope only detaches; `terminate` deletes it, and its host
 * (or its own `idleTimeout`) ends it otherwise.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { ConnectOptions, Sandbox } from "../../Sandbox.js"
import { type HubError, PoolError, StartError } from "../../SandboxError.js"
import type * as SandboxPool from "../../SandboxPool.js"
import * as SandboxProvider from "../../SandboxProvider.js"
import * as HostLabels from "../hostLabels.js"
import { attachTo } from "../sandbox/open.js"
import * as SandboxName from "../sandboxName.js"
import { withHost } from "./connect.js"
import * as Host from "./host.js"
import * as Options from "./options.js"
import * as Pooled from "./pooled.js"

const FULL = Symbol("full")

/** The running hosts of pool `name`, oldest first. */
export const hostsOf = (
  name: string,
  providerOptions?: Readonly<Record<string, unknown>>
): Effect.Effect<ReadonlyArray<SandboxProvider.Listed>, StartError | HubError, SandboxProvider.SandboxProvider> =>
  Effect.map(SandboxProvider.list({ labels: HostLabels.ofPool(name), providerOptions }), (listing) =>
    [...listing.rows].sort(SandboxName.byAge)
  )

/**
 * A sandbox made on the oldest running host of pool `name` that has room. Fails with
 * `StartError("NotFound")` when the pool has no running host, `PoolError("HostFailed")` when every one
 * is full or refused.
 */
export const createOnPool = (
  name: string,
  options: SandboxPool.MakeOptions & ConnectOptions = {}
): Effect.Effect<
  Sandbox,
  PoolError | StartError | HubError,
  SandboxProvider.SandboxProvider | HttpClient.HttpClient | Scope.Scope
> =>
  Effect.gen(function* () {
    const wanted = yield* Options.lease(name, options)
    const hosts = yield* hostsOf(name, { namespace: options.namespace })
    const provider = yield* SandboxProvider.SandboxProvider
    if (hosts.length === 0) {
      return yield* new StartError({
        provider: provider.name,
        reason: "NotFound",
        detail: `pool ${JSON.stringify(name)} has no running host: start one with SandboxPool.layer({ name })`
      })
    }
    const refusals: Array<string> = []
    for (const row of hosts) {
      const made = yield* withHost(row.id, options, (attached) =>
        Effect.gen(function* () {
          const answer = yield* attached.client.create(Pooled.createRequest(wanted.env, wanted.idleSeconds))
          const created = answer.sandboxes[0]
          // A full host: failing detaches from it (withHost closes its scope), and the next is tried.
          if (created === undefined) return yield* Effect.fail(FULL)
          const token = Pooled.tokenOf(created, attached.host.token)
          const kill = Pooled.remove(attached.client, created.id)
          return yield* Pooled.sandbox(
            { host: attached.host, sandbox: created, token, kill },
            { scope: attached.scope, timeouts: attached.timeouts, schedules: attached.schedules, cwd: options.cwd }
          )
        })
      ).pipe(
        Effect.catchAll((error) =>
          Effect.as(
            Effect.sync(() => refusals.push(`${row.id}: ${error === FULL ? "full" : error.message}`)),
            undefined
          )
        )
      )
      if (made !== undefined) return made
    }
    return yield* new PoolError({
      pool: name,
      reason: "HostFailed",
      detail: `no running host of the pool made a sandbox (${refusals.join("; ")})`
    })
  }).pipe(Effect.withSpan("SandboxPool.createOnPool", { attributes: { "pool.name": name } }))

/** How long adopting one listed host may take before it is skipped. */
const ADOPT_BOUND = Duration.seconds(30)

/**
 * The running hosts of the pool's name, adopted by `SandboxPool.layer` (HF's discovery): each attached
 * to through its provider in a scope of its own below the pool's hosts' (closing it detaches: the pool
 * did not start it and never terminates it), with its capacity as its server says (else the pool's),
 * and the sandboxes it already holds counted as taken. A host that does not answer within
 * `ADOPT_BOUND` is skipped; a provider that cannot list hosts has none to adopt.
 */
export const running = (
  ctx: Host.BootContext,
  hostsScope: Scope.Scope,
  nextSeq: () => number
): Effect.Effect<ReadonlyArray<Host.Host>, PoolError | StartError, SandboxProvider.SandboxProvider> =>
  Effect.gen(function* () {
    const { config, provider } = ctx
    if (provider.list === undefined) return []
    const rows = yield* hostsOf(config.name, { namespace: config.hostOptions.namespace }).pipe(
      Effect.catchTag("HubError", (error) =>
        Effect.fail(
          new PoolError({
            pool: config.name,
            reason: "HostFailed",
            detail: `could not list the pool's running hosts to adopt them: ${error.message}`,
            cause: error
          })
        )
      )
    )
    const adopted = yield* Effect.forEach(
      rows,
      (row) =>
        Effect.flatMap(Host.record(hostsScope, nextSeq(), config.sandboxesPerHost), (host) =>
          Host.boot(ctx, host, attachTo(row.id)).pipe(
            Effect.flatMap((booted) => taken(ctx, host, booted)),
            // A running host answers at once; one still booting or wedged must not hold the pool's start
            // (and every warm-up boot after it) for a whole start timeout.
            Effect.timeout(ADOPT_BOUND),
            Effect.as([host]),
            // Skipped (a host that ended since it was listed, or does not answer): detached at once.
            Effect.catchAll(() => Effect.as(Host.terminate(host), []))
          )
        ),
      { concurrency: 8 }
    )
    return adopted.flat()
  }).pipe(Effect.withSpan("SandboxPool.adopt", { attributes: { "pool.name": ctx.config.name } }))

/**
 * An adopted host's capacity and the sandboxes it already holds, as taken slots: from the health answer
 * its attach already read (our host says both), else (HF's host) its list.
 */
const taken = (ctx: Host.BootContext, host: Host.Host, booted: Host.Booted) =>
  Effect.gen(function* () {
    host.capacity = booted.health.capacity ?? host.capacity
    host.reserved = booted.health.sandboxes ?? (yield* booted.client.list).length
  }).pipe(Effect.provideService(HttpClient.HttpClient, ctx.http))
