/** The library's version, as it identifies itself to the Hub (User-Agent) and in telemetry. */
export const VERSION = "0.1.0"
