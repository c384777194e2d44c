/**
 * A plain `await` program on the Promise facade that makes one sandbox on the Hub emulator (its URL
 * and token in argv) and terminates it, then prints when it did. Its telemetry pings go to the
 * emulator, which the test sets to never answer them: the program must exit once its own work is done.
 * The test preloads test/support/stretchTimers.ts, so quick schedules keep the program's own waits short.
 */
import * as Schedule from "effect/Schedule"
import { Sandbox } from "hf-sandbox/promise"
import * as EmulatorRouter from "../../src/internal/testing/router.js"

const [url, token] = process.argv.slice(2) as [string, string]

/** Jobs-proxy and tunnel hosts go to the emulator, as for the CLI's test hook (this process has no emulator object). */
const route = EmulatorRouter.mapClient(url)

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
