/**
 * The `make` options the local provider cannot honour and refuses, rather than ignore: HF Jobs' volumes
 * (a Hub mount) and SSH. The other HF options (flavor, labels, maxCost, …) describe hardware and bookkeeping
 * this machine does not have, and are ignored as before.
 */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { invalidOptions } from "../startError.js"
import * as Validate from "../validate.js"

const REFUSED: ReadonlyArray<readonly [key: string, what: string]> = [
  [
    "volumes",
    "volumes are mounted by HF Jobs; on the local provider, copy the files in with files.upload, or download them inside the sandbox (e.g. `hf download REPO --local-dir DIR`)"
  ],
  [
    "ssh",
    "ssh is an HF Jobs option; a local sandbox runs on this machine: use exec, or a shell here in its workdir (sb.details.workdir)"
  ]
]

/** Whether an option was asked for: given, and not empty or false. */
const asked = (value: unknown) =>
  value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0)

/** Fails with `InvalidOptions` naming the first refused option the spec asks for. */
export const refuseUnsupported = (spec: SandboxProvider.Spec) => {
  const refused = REFUSED.find(([key]) => asked(spec.providerOptions[key]))
  if (refused === undefined) return Effect.void
  const [key, what] = refused
  const problem = `${JSON.stringify(spec.providerOptions[key])} is refused: ${what}`
  return Effect.fail(invalidOptions("local", new Validate.Invalid(key, problem)))
}
