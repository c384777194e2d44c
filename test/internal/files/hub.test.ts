/**
 * The Hub transfer's pieces below `files.fromHub`/`toHub`: the stdlib program `rpc-server/hub_transfer.py`
 * run directly as a real process against the Hub emulator (a download cut more often than it retries is a
 * network failure naming the host and the attempts; a cut one resumes with `Range`), the program's source
 * read without keeping a failed read, and the stderr tail decoded across chunks.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type { ExecEvent } from "hf-sandbox/Sandbox"
import * as Testing from "hf-sandbox/testing"
import { collect, type Outcome, readProgram } from "../../../src/internal/files/hub.js"
import { runPython } from "../../support/python.js"
import { runTransferProgram } from "../../support/transferProgram.js"

const PROGRAM = fileURLToPath(new URL("../../../rpc-server/hub_transfer.py", import.meta.url))

/** Runs the program with `spec` (retry pauses of a few ms) and the token in its environment; its NDJSON lines. */
const transfer = (emu: Testing.HubEmulator, spec: Record<string, unknown>) =>
  runTransferProgram(
    PROGRAM,
    { endpoint: emu.url, revision: "main", path: "", retryBase: 0.001, ...spec },
    { env: { PATH: process.env.PATH, HF_TOKEN: Redacted.value(emu.token) } }
  )

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hub-transfer-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const content = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7) % 256))

layer(Testing.layer(), { excludeTestServices: true, timeout: "60 seconds" })(
  "hub_transfer.py (a real process)",
  (it) => {
    it.scoped("a cut download resumes from the bytes it has (Range), checked whole against the Hub's digest", () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        const dir = yield* tempDir
        const repo = `${emu.user}/resume-${Math.random().toString(36).slice(2, 8)}`
        const bytes = content(5000)
        yield* emu.seedRepo({
          repo,
          private: true,
          files: { "w.bin": bytes },
          cutDownloads: { afterBytes: 1500, times: 3 }
        })
        const dest = path.join(dir, "w.bin")
        const { lines, code } = yield* transfer(emu, { op: "fromHub", repo, repoType: "model", path: "w.bin", dest })
        assert.strictEqual(code, 0, JSON.stringify(lines.at(-1)))
        assert.deepStrictEqual(fs.readFileSync(dest), bytes)
        // Each attempt went on from where the last stopped: progress never went back, and no byte came twice.
        const progress = lines.filter((l) => "file" in l).map((l) => l.bytes as number)
        assert.deepStrictEqual(
          progress,
          [...progress].sort((a, b) => a - b)
        )
        assert.deepStrictEqual(lines.at(-1), { done: true, commit: lines.at(-1)!.commit, files: [dest], bytes: 5000 })
      })
    )

    it.scoped("a download cut on every attempt fails as a network failure naming the host and the attempts", () =>
      Effect.gen(function* () {
        const emu = yield* Testing.HubEmulatorService
        const dir = yield* tempDir
        const repo = `${emu.user}/cut-${Math.random().toString(36).slice(2, 8)}`
        // Cut before any byte, every time: no attempt gets further.
        yield* emu.seedRepo({ repo, files: { "w.bin": content(3000) }, cutDownloads: { afterBytes: 0, times: 99 } })
        const dest = path.join(dir, "w.bin")
        const { lines, code } = yield* transfer(emu, { op: "fromHub", repo, repoType: "model", path: "w.bin", dest })
        assert.strictEqual(code, 1)
        const error = lines.at(-1)!.error as { reason: string; detail: string }
        assert.strictEqual(error.reason, "Unreachable")
        assert.include(error.detail, "the network failed")
        assert.include(error.detail, `from ${new URL(emu.url).host} was cut 6 times in a row without getting further`)
        assert.include(error.detail, "0 of 3000 bytes received")
        assert.notInclude(error.detail, "cannot write")
        assert.notInclude(JSON.stringify(lines), Redacted.value(emu.token))
        assert.deepStrictEqual(fs.readdirSync(dir), [], "nothing is left behind")
      })
    )

    it.scoped(
      "a long download cut again and again, each attempt getting further, completes (the count of cuts starts again)",
      () =>
        Effect.gen(function* () {
          const emu = yield* Testing.HubEmulatorService
          const dir = yield* tempDir
          const repo = `${emu.user}/sporadic-${Math.random().toString(36).slice(2, 8)}`
          const bytes = content(3000)
          // 100 bytes an attempt: 29 cuts, far more than the retries, but never two without progress.
          yield* emu.seedRepo({ repo, files: { "w.bin": bytes }, cutDownloads: { afterBytes: 100, times: 29 } })
          const dest = path.join(dir, "w.bin")
          const { lines, code } = yield* transfer(emu, { op: "fromHub", repo, repoType: "model", path: "w.bin", dest })
          assert.strictEqual(code, 0, JSON.stringify(lines.at(-1)))
          assert.deepStrictEqual(fs.readFileSync(dest), bytes)
          assert.strictEqual(lines.at(-1)!.bytes, 3000)
        })
    )
  }
)

/**
 * Runs a Python snippet with `rpc-server/` importable (the program's own functions, driven directly); its
 * stdout.
 */
const python = (snippet: string) => {
  const prelude = `import sys; sys.path.insert(0, ${JSON.stringify(path.dirname(PROGRAM))}); import hub_transfer as t\n`
  return Effect.promise((signal) => runPython(prelude + snippet, { signal })).pipe(
    Effect.flatMap((run) =>
      run.status === 0
        ? Effect.succeed(run.stdout)
        : Effect.fail(new Error(`python exited ${run.signal ?? run.status}: ${run.stderr}`))
    )
  )
}

describe("hub_transfer.py (its functions)", () => {
  it.effect("an LFS PUT cut on every attempt leaves none of its attempts' files open", () =>
    Effect.gen(function* () {
      const out = yield* python(
        [
          "import os, tempfile",
          "t.PAUSE_BASE = 0.0001",
          "full = tempfile.mktemp()",
          "open(full, 'wb').write(b'x' * 1000)",
          "held = []",
          "class Cut(t.Hub):",
          "    # The connection is cut mid-body; like a connection object, it still holds what it was sending.",
          "    def open_once(self, method, url, data, content_type, extra=None, auth=True):",
          "        held.append(data)",
          "        data.read(100)",
          "        raise t.Failure('Unreachable', 'cut')",
          "hub = Cut('https://hub.example', None, 'r', 'model')",
          "try:",
          "    t.put_part(hub, 'https://storage.example/part', full, 0, 1000, {}, lambda n: None)",
          "except t.Failure as e:",
          "    kept = e",
          "fds = [f for f in os.listdir('/proc/self/fd') if os.path.realpath('/proc/self/fd/' + f) == os.path.realpath(full)]",
          "print(len(held), len(fds))",
          "os.unlink(full)"
        ].join("\n")
      )
      // Every attempt (1 + the retries) made its own body, and every one was closed.
      assert.strictEqual(out.trim(), "6 0")
    })
  )

  it.effect("Hub.open closes the body it made for each attempt, cut or answered, before the next is made", () =>
    Effect.gen(function* () {
      const out = yield* python(
        [
          "t.PAUSE_BASE = 0.0001",
          "made = []",
          "class Body:",
          "    closed = False",
          "    def __enter__(self): return self",
          "    def __exit__(self, *_): self.closed = True",
          "def body():",
          "    made.append(Body())",
          "    return made[-1]",
          "class Flaky(t.Hub):",
          "    # Two attempts cut, the third answered; each sees whether the bodies before it are closed.",
          "    def open_once(self, method, url, data, content_type, extra=None, auth=True):",
          "        print(all(b.closed for b in made[:-1]), data.closed)",
          "        if len(made) < 3:",
          "            raise t.Failure('Unreachable', 'cut')",
          "        return 'answer'",
          "hub = Flaky('https://hub.example', None, 'r', 'model')",
          "print(hub.open('PUT', 'https://storage.example/part', body, auth=False), [b.closed for b in made])"
        ].join("\n")
      )
      assert.strictEqual(out.trim(), "True False\nTrue False\nTrue False\nanswer [True, True, True]")
    })
  )
})

describe("files/hub", () => {
  it.effect("readProgram does not keep a failed read: the file read later is found", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hub-program-"))
      const file = path.join(dir, "hub_transfer.py")
      const missing = yield* Effect.flip(readProgram(file))
      assert.include(missing.message, file)
      fs.writeFileSync(file, "print('hi')\n")
      assert.strictEqual(yield* readProgram(file), "print('hi')\n")
      fs.rmSync(dir, { recursive: true })
      // Once read, it is kept: the program shipped is the one this process started with.
      assert.strictEqual(yield* readProgram(file), "print('hi')\n")
    })
  )

  it.effect("the stderr tail keeps a character split across chunks whole", () =>
    Effect.gen(function* () {
      const bytes = new TextEncoder().encode("échec: ünreachable ✓\n")
      const event = (data: Uint8Array): ExecEvent => ({ _tag: "Stderr", data, text: "" })
      // Split inside "é" (2 bytes), "ü" and "✓" (3 bytes).
      const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 9), bytes.subarray(9, 22), bytes.subarray(22)]
      const outcome: Outcome = { result: undefined, error: undefined, stderr: "" }
      yield* collect(Stream.fromIterable(chunks.map(event)), outcome, () => {})
      assert.strictEqual(outcome.stderr, "échec: ünreachable ✓\n")
    })
  )
})
