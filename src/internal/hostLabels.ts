/**
 * The labels that mark a pool host, HF's own (`huggingface_hub`'s `MODE_LABEL`/`POOL_LABEL`), so that a
 * host is found by its pool the same way on every provider that keeps labels (HF Jobs: the job's labels;
 * locally: its state file) and HF's client recognises ours.
 */
import type * as SandboxProvider from "../SandboxProvider.js"

export const MODE_LABEL = "hf-sandbox-mode"
export const POOL_LABEL = "hf-sandbox-pool"
/** The mode of a host (a dedicated sandbox is `dedicated`). */
export const MODE_POOL = "pool"

/** The labels of a host of pool `pool`. */
export const ofPool = (pool: string): Readonly<Record<string, string>> => ({
  [MODE_LABEL]: MODE_POOL,
  [POOL_LABEL]: pool
})

/** The labels of a host of `host.pool`. */
export const of = (host: SandboxProvider.HostSpec): Readonly<Record<string, string>> => ofPool(host.pool)
