/**
 * A plain `await` program on the Promise facade that makes one sandbox on the Hub emulator (its URL
 * and token in argv) and terminates it, then prints when it did. Its telemetry pings go to the
 * emulator, which the test sets to never answer them: the program must exit once its own work is done.
 * The test preloads test/support/stretch-timers.ts, so quick schedules keep the program's own waits short.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Schedule from "effect/Schedule"
import { Sandbox } from "hf-sandbox/promise"

const [url, token] = process.argv.slice(2) as [string, string]

/** Jobs-proxy hosts go to the emulator (as `Testing.routeHttpClient` does, without the emulator object). */
const route = (client: HttpClient.HttpClient) =>
  HttpClient.mapRequest(client, (request) => {
    const target = new URL(request.url)
    if (!target.hostname.endsWith(".hf.jobs")) return request
    return request.pipe(
      HttpClientRequest.setUrl(`${url}${target.pathname}${target.search}`),
      HttpClientRequest.setHeader("x-emulator-host", target.hostname)
    )
  })

/** The default stage check waits 3 s between looks at the job, a timer the stretch would make endless. */
const schedules = { stageCheck: Schedule.spaced("100 millis").pipe(Schedule.asVoid) }

const main = async () => {
  const sb = await Sandbox.create({
    token,
    endpoint: url,
    publicDns: false,
    transport: "proxy",
    httpClient: route,
    schedules
  })
  const said = (await sb.exec("echo hi")).stdout.trim()
  await sb.terminate()
  console.log(JSON.stringify({ said }))
}

void main()
