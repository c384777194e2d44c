/**
 * The Promise facade (`hf-sandbox/promise`), for programs that do not use Effect: a sandbox on the
 * local provider, commands, files and a live output stream, and `await using` to end it.
 *
 *   npx tsx examples/promise.ts
 *
 * Drop `provider: "local"` to run the same program on Hugging Face Jobs (the default provider; needs
 * an HF token with write access).
 */
import { Sandbox, SandboxError } from "hf-sandbox/promise"

const t0 = performance.now()
const log = (step: string, value: unknown) =>
  console.log(`${step.padEnd(30)} ${(performance.now() - t0).toFixed(0).padStart(6)} ms   ${String(value)}`)

{
  // Terminated at the end of the block, whether it ends normally or by a throw.
  await using sb = await Sandbox.create({ provider: "local", image: "python:3.12" })
  log("create sandbox", sb.id)

  const r = await sb.exec(["python3", "-c", "print(1+1)"])
  log("python3 -c 'print(1+1)'", r.stdout.trim())

  await sb.files.write("data/hello.txt", "hello from the sandbox\n")
  log("read data/hello.txt", JSON.stringify(await sb.files.readText("data/hello.txt")))

  // Output as it happens, at the loop's pace; leaving the loop early would kill the command.
  const lines: Array<string> = []
  for await (const event of sb.execStream("for i in 1 2 3; do echo line $i; sleep 0.1; done")) {
    if (event._tag === "Stdout") lines.push(event.text.trim())
    if (event._tag === "Exit") log("execStream", `${lines.join(", ")} (exit ${event.exitCode})`)
  }

  // Aborting a call kills the remote command.
  const started = performance.now()
  await sb.exec("sleep 30", { signal: AbortSignal.timeout(300) }).catch((e: Error) => {
    log("exec sleep 30, aborted", `${e.name} after ${(performance.now() - started).toFixed(0)} ms`)
  })

  // Failures are the typed errors of the Effect API, not wrappers.
  await sb.files.readText("missing.txt").catch((e: unknown) => {
    if (e instanceof SandboxError.FileNotFoundError) log("read missing.txt", `${e._tag} (${e.path})`)
    else throw e
  })
}
log("terminated", "done")
