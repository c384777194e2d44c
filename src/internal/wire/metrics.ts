/**
 * `POST /v1/metrics?follow=1&interval=S`: the sandbox server's resource samples, one NDJSON line per
 * interval (POST, so that a quick tunnel lets the stream through live). Pings and lines of a newer server
 * that are not samples are skipped.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import type * as Stream from "effect/Stream"
import type * as Protocol from "../../Protocol.js"
import type { OperationError } from "../../SandboxError.js"
import { decodeLine } from "../metrics/sample.js"
import { failFromResponse } from "./errors.js"
import { unpack } from "./ndjson.js"
import { ndjson, type Transport } from "./transport.js"

export const metrics = (
  transport: Transport,
  interval: Duration.Duration
): Stream.Stream<Protocol.MetricsLine, OperationError> => {
  const decoder = new TextDecoder()
  return ndjson(
    transport,
    "metrics",
    HttpClientRequest.post("/v1/metrics").pipe(
      HttpClientRequest.setUrlParams({ follow: "1", interval: String(Duration.toMillis(interval) / 1000) })
    ),
    unpack<Protocol.MetricsLine, OperationError>((line) => decodeLine(decoder.decode(line))),
    (response) => failFromResponse("metrics", undefined, response)
  )
}
