/**
 * The client takes a tunnel URL only from the server's marker line, and sends the HF token only to the
 * job's own proxy URL. Realistic cloudflared output must never be mistaken for either.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Option from "effect/Option"
import { isJobProxyUrl, parseMarker } from "../../../src/internal/hfJobs/tunnel.js"

// What a job's log looks like around a quick tunnel (cloudflared writes to stderr, merged in the logs).
const CLOUDFLARED_OUTPUT = [
  "2026-09-01T10:00:01Z INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. However, be aware that these account-less Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right to investigate your use of Tunnels for violations of such terms. If you intend to use Tunnels in production you should use a pre-created named tunnel by following: https://developers.cloudflare.com/cloudflare-one/connections/connect-networks",
  "2026-09-01T10:00:01Z INF Requesting new quick Tunnel on trycloudflare.com...",
  "2026-09-01T10:00:03Z INF +--------------------------------------------------------------------------------------------+",
  "2026-09-01T10:00:03Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |",
  "2026-09-01T10:00:03Z INF |  https://amber-falcon-river-lamp.trycloudflare.com                                         |",
  "2026-09-01T10:00:03Z INF +--------------------------------------------------------------------------------------------+",
  "2026-09-01T10:00:03Z INF Starting metrics server on 127.0.0.1:20241/metrics",
  "2026-09-01T10:00:04Z INF Registered tunnel connection connIndex=0 connection=6b1c2f0e-7d7a-4b55-9d0e-3b7f5b0d8a61 event=0 ip=198.41.200.13 location=ams08 protocol=http2",
  '2026-09-01T10:00:05Z ERR failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup api.trycloudflare.com: no such host',
  '2026-09-01T10:00:05Z ERR Error unmarshaling QuickTunnel response: error code: 1015 error="invalid character \'e\' looking for beginning of value" status_code="429 Too Many Requests"'
]

describe("parseMarker", () => {
  it("takes the URL from the server's marker line", () => {
    assert.deepStrictEqual(
      parseMarker('HF_SANDBOX_TUNNEL {"url":"https://oklahoma-solo-younger-truck.trycloudflare.com"}'),
      Option.some("https://oklahoma-solo-younger-truck.trycloudflare.com")
    )
    assert.isTrue(Option.isSome(parseMarker('  HF_SANDBOX_TUNNEL {"url":"https://a-b.trycloudflare.com"}  ')))
  })

  it("never takes a URL from cloudflared's own output, the box included", () => {
    for (const line of CLOUDFLARED_OUTPUT) assert.isTrue(Option.isNone(parseMarker(line)), line)
  })

  it("refuses markers that do not carry a quick-tunnel URL", () => {
    for (const line of [
      'HF_SANDBOX_TUNNEL {"url":"https://api.trycloudflare.com"}',
      'HF_SANDBOX_TUNNEL {"url":"http://plain-http.trycloudflare.com"}',
      'HF_SANDBOX_TUNNEL {"url":"https://evil.example.com"}',
      'HF_SANDBOX_TUNNEL {"url":"https://x.trycloudflare.com.evil.example"}',
      'HF_SANDBOX_TUNNEL {"url":"https://x.trycloudflare.com/path"}',
      "HF_SANDBOX_TUNNEL not-json",
      'echo HF_SANDBOX_TUNNEL {"url":"https://a-b.trycloudflare.com"}'
    ]) {
      assert.isTrue(Option.isNone(parseMarker(line)), line)
    }
  })
})

describe("isJobProxyUrl", () => {
  const id = "687fb701029421ae5549d998"
  it("accepts the job's own exposed server port under the Jobs domain", () => {
    assert.isTrue(isJobProxyUrl(`https://${id}--49983.hf.jobs`, id, 49983, "hf.jobs"))
  })
  it("refuses anything that could carry the HF token elsewhere", () => {
    for (const url of [
      `https://${id}--8000.hf.jobs`,
      `https://other0000000000000000000--49983.hf.jobs`,
      `http://${id}--49983.hf.jobs`,
      `https://${id}--49983.hf.jobs.evil.example`,
      `https://${id}--49983.evil.example`,
      `https://user:pw@${id}--49983.hf.jobs`,
      "not a url"
    ]) {
      assert.isFalse(isJobProxyUrl(url, id, 49983, "hf.jobs"), url)
    }
  })
})
