/**
 * `sb.expose(port)` on HF Jobs: a port declared at create (`ports`, the job's `expose`) through its Jobs
 * proxy host, with the HF token; otherwise, with the tunnel transport, the port's own quick tunnel, which
 * the sandbox server starts; otherwise a typed refusal that says how to declare it.
 */
import * as Effect from "effect/Effect"
import { PortError } from "../../SandboxError.js"
import type * as SandboxProvider from "../../SandboxProvider.js"
import type * as Hub from "./hub.js"
import { SERVER_PORT } from "./jobs.js"
import { isJobProxyUrl } from "./tunnel.js"

/** The ports of a job the Jobs proxy serves, besides the sandbox server's own. */
const declaredPorts = (job: Hub.JobInfo, jobsDomain: string): ReadonlyArray<number> =>
  (job.status.exposeUrls ?? []).flatMap((url) => {
    const port = Number(/^https:\/\/[^/]*--(\d+)\./.exec(url)?.[1])
    return port !== SERVER_PORT && isJobProxyUrl(url, job.id, port, jobsDomain) ? [port] : []
  })

export const exposeOf =
  (options: {
    readonly job: Hub.JobInfo
    readonly jobsDomain: string
    readonly transport: "tunnel" | "proxy"
    /** The header of the current HF token, read per call. */
    readonly bearer: Effect.Effect<Record<string, string>>
  }): NonNullable<SandboxProvider.Endpoint["expose"]> =>
  (port, server) => {
    const { bearer, job, jobsDomain, transport } = options
    // Only a URL the Hub gave for this job and port, under the jobs domain, ever gets the HF token.
    const url = (job.status.exposeUrls ?? []).find((u) => isJobProxyUrl(u, job.id, port, jobsDomain))
    if (url !== undefined) {
      return Effect.map(bearer, (headers) => ({ url: url.replace(/\/+$/, ""), headers, via: "proxy" as const }))
    }
    if (transport === "tunnel") {
      return Effect.map(server.tunnel(port), (tunnel) => ({
        url: tunnel.replace(/\/+$/, ""),
        headers: {},
        via: "tunnel" as const
      }))
    }
    const declared = declaredPorts(job, jobsDomain)
    return Effect.fail(
      new PortError({
        port,
        reason: "NotDeclared",
        detail: `sandbox ${job.id} was made with ${declared.length === 0 ? "no ports" : `ports [${declared.join(", ")}]`}, and the proxy transport has no quick tunnel to fall back on`
      })
    )
  }
