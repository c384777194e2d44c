/**
 * hf-sandbox: scoped, leak-proof sandboxes on Hugging Face Jobs and on this machine, for Effect 3.
 *
 * @since 0.1.0
 */

/**
 * The files API of a sandbox (`sb.files`) and the options of its transfers.
 *
 * @since 0.1.0
 */
export * as Files from "./Files.js"

/**
 * The Hugging Face Jobs provider: every sandbox is an HF Job; `list`, `kill` and `logs` by id.
 *
 * @since 0.1.0
 */
export * as HfJobs from "./HfJobs.js"

/**
 * The local provider: the in-sandbox server as a child process of this machine (no isolation).
 *
 * @since 0.1.0
 */
export * as LocalSandbox from "./LocalSandbox.js"

/**
 * The wire protocol between the client and the in-sandbox server, as Schemas.
 *
 * @since 0.1.0
 */
export * as Protocol from "./Protocol.js"

/**
 * A sandbox as a scoped resource: `make`, `connect`, `layer`, and what a running sandbox offers.
 *
 * @since 0.1.0
 */
export * as Sandbox from "./Sandbox.js"

/**
 * Every failure a user of a sandbox can meet, as tagged errors.
 *
 * @since 0.1.0
 */
export * as SandboxError from "./SandboxError.js"

/**
 * Many small sandboxes packed into a few host sandboxes: `SandboxPool.layer`, `SandboxPool.make`.
 *
 * @since 0.2.0
 */
export * as SandboxPool from "./SandboxPool.js"

/**
 * The seam between the `Sandbox` module and the backends that run sandboxes.
 *
 * @since 0.1.0
 */
export * as SandboxProvider from "./SandboxProvider.js"

/**
 * The named schedules hf-sandbox waits and retries on: a Context value (`Schedules.layer`,
 * `Schedules.withSchedules`), each also replaceable per sandbox.
 *
 * @since 0.1.0
 */
export * as Schedules from "./Schedules.js"

/**
 * Anonymous usage telemetry, off unless a layer turns it on.
 *
 * @since 0.1.0
 */
export * as Telemetry from "./Telemetry.js"

/**
 * The offline Hugging Face Hub emulator, for testing HF Jobs code without the Hub (also `hf-sandbox/testing`).
 *
 * @since 0.1.0
 */
export * as Testing from "./Testing.js"
