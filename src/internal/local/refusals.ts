/**
 * The `make` options the local provider cannot honour and refuses, rather than ignore: HF Jobs' volumes
 * (a Hub mount) and SSH. The other HF options (flavor, labels, maxCost, …) describe hardware and bookkeeping
 * this machine does not have, and are ignored as before.
 */
import * as Effect from "effect/Effect"
import type * as SandboxProvider from "../../SandboxProvider.js"
import { invalidOptions } from "../startError.js"
import * as Validate from "../validate.js"

/** Each refused option: why, said for any caller, and said with the library's calls. */
const REFUSED: ReadonlyArray<readonly [key: string, why: string, library: string]> = [
  [
    "volumes",
    "volumes are mounted by HF Jobs; on the local provider, copy the files into the sandbox, or download them inside it (e.g. `hf download REPO --local-dir DIR`)",
    "volumes are mounted by HF Jobs; on the local provider, copy the files in with files.upload, or download them inside the sandbox (files.fromHub, or e.g. `hf download REPO --local-dir DIR`)"
  ],
  [
    "ssh",
    "SSH is an HF Jobs feature; a local sandbox runs on this machine: run its commands with exec, or a shell here in its workdir",
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
  const [key, why, library] = refused
  const value = `${JSON.stringify(spec.providerOptions[key])} is refused`
  return Effect.fail(invalidOptions("local", new Validate.Invalid(key, `${value}: ${why}`), `${value}: ${library}`))
}
