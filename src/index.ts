/**
 * hf-sandbox: scoped, leak-proof sandboxes on Hugging Face Jobs and on this machine, for Effect 3.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Files from "./Files.js"

/**
 * @since 0.1.0
 */
export * as HfJobs from "./HfJobs.js"

/**
 * @since 0.1.0
 */
export * as LocalSandbox from "./LocalSandbox.js"

/**
 * @since 0.1.0
 */
export * as Protocol from "./Protocol.js"

/**
 * @since 0.1.0
 */
export * as Sandbox from "./Sandbox.js"

/**
 * @since 0.1.0
 */
export * as SandboxError from "./SandboxError.js"

/**
 * @since 0.1.0
 */
export * as SandboxProvider from "./SandboxProvider.js"

/**
 * @since 0.1.0
 */
export * as Schedules from "./Schedules.js"

/**
 * @since 0.1.0
 */
export * as Telemetry from "./Telemetry.js"

/**
 * @since 0.1.0
 */
export * as Testing from "./Testing.js"
