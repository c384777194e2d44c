/**
 * SSH on HF Jobs, against the Hub emulator: `ssh: true` reaches the job spec as `ssh: { enabled: true }`,
 * the job's status carries `sshUrl` (`ssh://<job id>@ssh.hf.jobs`, which nothing answers in the emulator),
 * and `sb.sshCommand()` is the `ssh` command `hf jobs ssh` runs; a sandbox made without SSH refuses.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Sandbox from "hf-sandbox/Sandbox"
import { jobOf, resetFaults } from "../support/hfJobs.js"
import { emulatedHub } from "../support/hub.js"

layer(emulatedHub(), { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs: SSH (emulated Hub)", (it) => {
  it.effect("ssh: true asks the Hub for SSH; sshCommand is `ssh <job id>@ssh.hf.jobs`", () =>
    Effect.gen(function* () {
      yield* resetFaults
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ ssh: true, transport: "proxy" })
        const job = yield* jobOf(sb.id)
        assert.deepStrictEqual((job.spec as { ssh: unknown }).ssh, { enabled: true })
        const command = yield* sb.sshCommand()
        assert.deepStrictEqual(command, {
          argv: ["ssh", `${sb.id}@ssh.hf.jobs`],
          destination: `${sb.id}@ssh.hf.jobs`,
          port: undefined,
          url: `ssh://${sb.id}@ssh.hf.jobs`
        })
        // The same from another client of the same sandbox, which knows nothing of how it was made.
        const again = yield* Sandbox.connect(sb.id)
        assert.deepStrictEqual((yield* again.sshCommand()).argv, command.argv)
      }).pipe(Effect.scoped)
    })
  )

  it.effect("a sandbox made without ssh: SshError NotEnabled, saying how to get SSH; no ssh in the spec", () =>
    Effect.gen(function* () {
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy" })
        assert.notProperty((yield* jobOf(sb.id)).spec as object, "ssh")
        const error = yield* Effect.flip(sb.sshCommand())
        assert.strictEqual(error._tag, "SshError")
        assert.strictEqual(error._tag === "SshError" ? error.reason : undefined, "NotEnabled")
        assert.include(error.message, "Sandbox.make({ ssh: true })")
      }).pipe(Effect.scoped)
    })
  )

  it.effect("ssh must be true or false", () =>
    Effect.gen(function* () {
      const error = yield* Sandbox.make({ ssh: "yes" as never }).pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(error.reason, "InvalidOptions")
      assert.include(error.message, `ssh: "yes" is not true or false`)
    })
  )
})
