#!/usr/bin/env node
/**
 * The `hf-sandbox` executable. Ctrl-C (SIGINT), SIGTERM or SIGHUP interrupts the running command: what
 * it owns is released first (`run` stops its sandbox), then the process exits with 130.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import { main } from "./app.js"

// A closed terminal (SIGHUP) ends the CLI like Ctrl-C does: releasing what it owns first.
process.once("SIGHUP", () => process.kill(process.pid, "SIGTERM"))

NodeRuntime.runMain(main(process.argv), {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    const code = Exit.isSuccess(exit)
      ? typeof exit.value === "number"
        ? exit.value
        : 1
      : Cause.isInterruptedOnly(exit.cause)
        ? 130
        : 1
    // Exit once what was written has reached stdout, even if a stray handle would keep the loop alive.
    process.stdout.write("", () => {
      onExit(code)
      process.exit(code)
    })
  }
})
