/**
 * The provider an invocation runs on (`--local`, or HF Jobs by default) and the by-id operations the
 * commands need from it (`ls`, `kill`, `logs`), behind one service.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Stream from "effect/Stream"
import type * as HfJobs from "../HfJobs.js"
import * as StateHome from "../internal/stateHome.js"
import * as EmulatorRouter from "../internal/testing/router.js"
import * as LocalSandbox from "../LocalSandbox.js"
import type { SandboxError } from "../SandboxError.js"
import type * as SandboxProvider from "../SandboxProvider.js"

/** A sandbox as `ls` shows it: table cells for people, the whole record for `--json`. */
export interface Listing {
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<{ readonly id: string; readonly cells: ReadonlyArray<string>; readonly record: unknown }>
}

export interface Service {
  /** `"local"` or `"hf-jobs"`. */
  readonly provider: string
  /** What `kill` needs on the command line to reach the same provider again. */
  readonly flag: string
  readonly list: (all: boolean) => Effect.Effect<Listing, SandboxError>
  readonly kill: (id: string) => Effect.Effect<void, SandboxError>
  readonly logs: (id: string, options: SandboxProvider.LogOptions) => Stream.Stream<string, SandboxError>
}

export class Backend extends Context.Tag("hf-sandbox/cli/Backend")<Backend, Service>() {}

/** How long ago an ISO time was, for listings: `12s ago`, `3m ago`, `2h ago`, `1d ago`. */
export const ago = (iso: string | undefined) => {
  if (iso === undefined) return "-"
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (Number.isNaN(seconds)) return iso
  if (seconds < 60) return `${seconds}s ago`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`
  return `${Math.floor(seconds / 86400)}d ago`
}

const localBackend = (stateDir: string): Service => ({
  provider: "local",
  flag: "--local ",
  list: () =>
    Effect.map(LocalSandbox.list({ stateDir }), (sandboxes) => ({
      columns: ["ID", "PID", "PORT", "CREATED", "IDLE TIMEOUT"],
      rows: sandboxes.map((s) => ({
        id: s.id,
        cells: [
          s.id,
          String(s.pid),
          String(s.port),
          ago(s.createdAt),
          s.idleTimeoutSeconds > 0 ? `${s.idleTimeoutSeconds}s` : "never"
        ],
        record: { ...s, provider: "local" }
      }))
    })),
  kill: (id) => LocalSandbox.kill(id, { stateDir }),
  logs: (id, options) => LocalSandbox.logs(id, { ...options, stateDir })
})

const hfBackend = (jobs: HfJobs.Service): Service => ({
  provider: "hf-jobs",
  flag: "",
  list: (all) =>
    Effect.map(jobs.list({ all }), (sandboxes) => ({
      columns: ["ID", "STAGE", "IMAGE", "FLAVOR", "CREATED"],
      rows: sandboxes.map((s) => ({
        id: s.id,
        cells: [s.id, s.stage, s.image ?? "-", s.flavor ?? "-", ago(s.createdAt)],
        record: { ...s, provider: "hf-jobs" }
      }))
    })),
  kill: (id) => jobs.kill(id),
  logs: (id, options) => jobs.logs(id, options)
})

const httpLayer = (route: string | undefined) =>
  route === undefined
    ? NodeHttpClient.layerUndici
    : Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, EmulatorRouter.mapClient(route))).pipe(
        Layer.provide(NodeHttpClient.layerUndici)
      )

type Env = Readonly<Record<string, string | undefined>>

/**
 * Everything a command needs for the chosen provider: the provider, an HttpClient, Node services. `env`
 * is the invocation's environment (the state directory and the emulator route are read from it).
 */
export const layer = (local: boolean, env: Env = process.env) => {
  const route = EmulatorRouter.fromEnv(env)
  const stateDir = StateHome.localDirectory(env)
  const provider = local
    ? Layer.merge(LocalSandbox.layer({ stateDir }), Layer.succeed(Backend, localBackend(stateDir)))
    : // Loaded only for HF Jobs (with the Hub client under it): `--local` commands, `exec -i` among them,
      // start without evaluating it.
      Layer.unwrapEffect(
        Effect.map(
          Effect.promise(() => import("../HfJobs.js")),
          (HfJobs) =>
            Layer.effect(Backend, Effect.map(HfJobs.HfJobs, hfBackend)).pipe(
              Layer.provideMerge(
                // The same configuration as the library's (token discovery included); against the emulator no
                // public resolver is ever asked; whoami-v2 is strictly rate-limited, so it is asked once per token.
                HfJobs.layerConfig({
                  ...(route === undefined ? {} : { publicDns: Config.succeed(false as const) }),
                  namespaceCache: Config.succeed(StateHome.namespaceCacheDirectory(env))
                })
              )
            )
        )
      )
  return provider.pipe(Layer.provideMerge(NodeContext.layer), Layer.merge(httpLayer(route)))
}
