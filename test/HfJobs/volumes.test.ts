/**
 * Volumes on HF Jobs, against the Hub emulator: sent in the Jobs API's own shape, checked before any job
 * exists, refused by the emulated Hub as the Hub refuses them, and mounted in the emulated container under
 * `$HF_EMULATOR_VOLUMES` with the seeded repo's files at the volume's revision and path. A read-only mount
 * refuses writes from the job's commands (root included: its own mount namespace, see the emulator's
 * volumes.ts); a private repo the job's owner cannot read refuses the create. A bucket starts empty (the
 * emulator has no bucket store) and is writable unless `readOnly`.
 */
import * as fs from "node:fs"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import { emulator, jobOf, resetFaults } from "../support/hfJobs.js"
import { emulatedHub } from "../support/hub.js"

/** Seeds the repos the volumes below name: a model with two commits, a dataset with a subfolder. */
const seeded = Effect.gen(function* () {
  const emu = yield* emulator
  const suffix = Math.random().toString(36).slice(2, 8)
  const model = `openai/gpt-oss-${suffix}`
  const dataset = `${emu.user}/imdb-${suffix}`
  const first = yield* emu.seedRepo({ repo: model, files: { "config.json": '{"v": 1}', "w/a.bin": "AAAA" } })
  yield* emu.seedRepo({ repo: model, files: { "config.json": '{"v": 2}' } })
  yield* emu.seedRepo({
    repo: dataset,
    repoType: "dataset",
    private: true,
    files: { "plain_text/train.csv": "a,b\n", "other/x.txt": "x" }
  })
  const volumes: ReadonlyArray<HfJobs.Volume> = [
    { type: "model", source: model, mountPath: "/model", revision: first },
    { type: "dataset", source: dataset, mountPath: "/data", path: "plain_text" },
    { type: "bucket", source: "acme/checkpoints", mountPath: "/out" },
    { type: "bucket", source: "acme/inputs", mountPath: "/in", readOnly: true }
  ]
  return { model, volumes }
})

layer(emulatedHub(), { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs: volumes (emulated Hub)", (it) => {
  it.effect("volumes reach the job spec as the Jobs API takes them, and the container gets their mount points", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const { volumes } = yield* seeded
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ transport: "proxy", volumes })
        const job = yield* jobOf(sb.id)
        assert.deepStrictEqual((job.spec as { volumes: unknown }).volumes, volumes)
        const root = job.environment.HF_EMULATOR_VOLUMES!
        const listed = yield* sb.exec(["sh", "-c", 'cd "$HF_EMULATOR_VOLUMES" && ls -d model data out in'])
        assert.strictEqual(listed.stdout, "data\nin\nmodel\nout\n")
        const mode = (mountPath: string) => fs.statSync(job.mounts[mountPath]!).mode & 0o777
        assert.strictEqual(job.mounts["/model"], `${root}/model`)
        assert.strictEqual(mode("/model"), 0o555, "a repo is read-only")
        assert.strictEqual(mode("/data"), 0o555)
        assert.strictEqual(mode("/out"), 0o755, "a bucket is read-write by default")
        assert.strictEqual(mode("/in"), 0o555, "a bucket with readOnly")
        assert.strictEqual(fs.readdirSync(job.mounts["/out"]!).length, 0, "a bucket starts empty: no bucket store")
      }).pipe(Effect.scoped)
    })
  )

  it.effect("a repo volume holds the repo's files at its revision and path, read-only even for root", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const { volumes } = yield* seeded
      yield* Effect.gen(function* () {
        const sb = yield* Sandbox.make({ volumes })
        const sh = (script: string) => sb.exec(["sh", "-c", `cd "$HF_EMULATOR_VOLUMES" && ${script}`])
        // The model at its first commit (not main's), the dataset's `plain_text` folder only.
        assert.strictEqual((yield* sh("cat model/config.json model/w/a.bin")).stdout, '{"v": 1}AAAA')
        assert.strictEqual((yield* sh("ls -R data")).stdout, "data:\ntrain.csv\n")
        const modes = yield* sh("stat -c '%a %n' model/config.json model/w model")
        assert.strictEqual(modes.stdout, "444 model/config.json\n555 model/w\n555 model\n")

        // Writing, creating or deleting in a read-only mount fails, whoever the job runs as: as root, only
        // because the mount itself is read-only (EROFS), as on HF.
        const refusal = process.getuid?.() === 0 ? /Read-only file system/ : /Read-only file system|Permission denied/
        for (const write of [
          "echo x > model/config.json",
          "echo x > model/new.txt",
          "rm model/w/a.bin",
          "mkdir data/d",
          "echo x > in/new.txt"
        ]) {
          const result = yield* sh(write)
          assert.notStrictEqual(result.exitCode, 0, write)
          assert.match(result.stderr, refusal, write)
        }
        assert.strictEqual((yield* sh("cat model/config.json; ls model/w")).stdout, '{"v": 1}a.bin\n')
        // A read-write bucket takes writes.
        assert.strictEqual((yield* sh("echo kept > out/ckpt.txt && cat out/ckpt.txt")).stdout, "kept\n")
      }).pipe(Effect.scoped)
    })
  )

  it.effect("a volume the job's owner cannot read (private to someone else, or missing) refuses the create", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const { model } = yield* seeded
      const theirs = `someone-else/private-${Math.random().toString(36).slice(2, 8)}`
      yield* emu.seedRepo({ repo: theirs, private: true, files: { "a.txt": "a" } })
      const before = (yield* emu.jobs).length
      const refused = (volume: HfJobs.Volume) => Sandbox.make({ volumes: [volume] }).pipe(Effect.scoped, Effect.flip)
      const hidden = yield* refused({ type: "model", source: theirs, mountPath: "/m" })
      assert.include(hidden.message, "404")
      assert.include(hidden.message, `volumes[0]: Repository not found: model ${theirs}`)
      const missing = yield* refused({ type: "dataset", source: `${emu.user}/no-such-dataset`, mountPath: "/d" })
      assert.include(missing.message, "Repository not found: dataset")
      const revision = yield* refused({ type: "model", source: model, mountPath: "/m", revision: "f".repeat(40) })
      assert.include(revision.message, "Invalid rev id")
      const noPath = yield* refused({ type: "model", source: model, mountPath: "/m", path: "nope" })
      assert.include(noPath.message, `no path nope in model ${model}`)
      assert.strictEqual((yield* emu.jobs).length, before, "no job was created")
    })
  )

  it.effect("a bad volume fails with InvalidOptions naming it, before any job exists", () =>
    Effect.gen(function* () {
      yield* resetFaults
      const emu = yield* emulator
      const before = (yield* emu.jobs).length
      const cases: ReadonlyArray<[unknown, string]> = [
        [
          { type: "dataset", source: "org/ds", mountPath: "/data", readOnly: false },
          "a dataset is always mounted read-only"
        ],
        [{ type: "model", source: "org/m", mountPath: "data" }, `mountPath "data" is not an absolute path`],
        [{ type: "model", source: "org/m", mountPath: "/" }, `mountPath "/" is not an absolute path other than "/"`],
        [{ type: "model", source: "just-a-name", mountPath: "/m" }, `source "just-a-name": must be "namespace/name"`],
        [{ type: "model", source: "org/bad--name", mountPath: "/m" }, `cannot contain "--" or ".."`],
        [{ type: "bucket", source: "org/b", mountPath: "/b", revision: "main" }, "a bucket has no revision"],
        [{ type: "repo", source: "org/m", mountPath: "/m" }, `type "repo" is not one of model, dataset, space, bucket`],
        [{ type: "model", source: "org/m", mountPath: "/m", mount_path: "/m" }, "unknown field mount_path"],
        [{ type: "model", source: "org/m", mountPath: "/m", path: "/abs" }, `path "/abs" is not a relative path`]
      ]
      for (const [volume, expected] of cases) {
        const error = yield* Sandbox.make({ volumes: [volume as HfJobs.Volume] }).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(error.reason, "InvalidOptions", expected)
        assert.include(error.message, `invalid sandbox options: volumes[0]: `)
        assert.include(error.message, expected)
        // Named apart from the prose, once: the CLI says it as its flag (--volume #1).
        assert.strictEqual(error.invalid?.option, "volumes[0]", expected)
        assert.notInclude(error.invalid?.problem ?? "", "volumes", expected)
      }
      const nested = yield* Sandbox.make({
        volumes: [
          { type: "model", source: "org/m", mountPath: "/data" },
          { type: "bucket", source: "org/b", mountPath: "/data/out" }
        ]
      }).pipe(Effect.scoped, Effect.flip)
      assert.include(
        nested.message,
        `options: volumes[1]: mount path "/data/out" is inside (or the same as) another volume's, "/data"`
      )
      assert.strictEqual(nested.invalid?.option, "volumes[1]")
      const notList = yield* Sandbox.make({ volumes: "hf://org/m:/m" as never }).pipe(Effect.scoped, Effect.flip)
      assert.include(notList.message, "is not a list of volumes")
      assert.strictEqual((yield* emu.jobs).length, before, "no job was created")
    })
  )

  it.effect("the emulated Hub refuses a malformed volume or ssh with 400, as the Hub does", () =>
    Effect.gen(function* () {
      const emu = yield* emulator
      const create = (extra: Record<string, unknown>) =>
        Effect.promise(async () => {
          const response = await fetch(`${emu.url}/api/jobs/${emu.user}`, {
            method: "POST",
            headers: { authorization: `Bearer ${Redacted.value(emu.token)}`, "content-type": "application/json" },
            body: JSON.stringify({ dockerImage: "python:3.12", command: ["true"], ...extra })
          })
          return { status: response.status, body: (await response.json()) as { error?: string } }
        })
      const readWriteModel = yield* create({
        volumes: [{ type: "model", source: "o/m", mountPath: "/m", readOnly: false }]
      })
      assert.deepStrictEqual(readWriteModel, {
        status: 400,
        body: { error: "volumes[0]: model volumes are read-only" }
      })
      const shared = yield* create({
        volumes: [
          { type: "model", source: "o/m", mountPath: "/m" },
          { type: "dataset", source: "o/d", mountPath: "/m" }
        ]
      })
      assert.strictEqual(shared.status, 400)
      const ssh = yield* create({ ssh: true })
      assert.deepStrictEqual(ssh, { status: 400, body: { error: "ssh must be an object { enabled: boolean }" } })
    })
  )
})

describe("HfJobs.parseVolume: `hf jobs run -v`'s grammar", () => {
  it("reads types, revisions (special refs too), paths and :ro/:rw", () => {
    assert.deepStrictEqual(HfJobs.parseVolume("hf://org/model:/data"), {
      type: "model",
      source: "org/model",
      mountPath: "/data"
    })
    assert.deepStrictEqual(HfJobs.parseVolume("hf://datasets/org/ds@v1/train:/data:ro"), {
      type: "dataset",
      source: "org/ds",
      mountPath: "/data",
      revision: "v1",
      readOnly: true,
      path: "train"
    })
    assert.deepStrictEqual(HfJobs.parseVolume("hf://datasets/org/ds@refs/pr/3/sub/dir:/d"), {
      type: "dataset",
      source: "org/ds",
      mountPath: "/d",
      revision: "refs/pr/3",
      path: "sub/dir"
    })
    assert.deepStrictEqual(HfJobs.parseVolume("hf://buckets/org/b/ckpt:/mnt:rw"), {
      type: "bucket",
      source: "org/b",
      mountPath: "/mnt",
      readOnly: false,
      path: "ckpt"
    })
    assert.deepStrictEqual(HfJobs.parseVolume("hf://spaces/org/app:/app").type, "space")
  })

  it("refuses what the Hub's parser refuses, saying what it expected", () => {
    const problems: ReadonlyArray<[string, string]> = [
      ["./data:/data", "a local directory is not mounted"],
      ["hf://org/model", "no mount path"],
      ["hf://dataset/org/ds:/d", "the type prefix is plural (datasets/…)"],
      ["hf://datasets/org/ds:/d:rw", "a dataset is always mounted read-only"],
      ["hf://org:/d", `must be "namespace/name"`]
    ]
    for (const [spec, expected] of problems) {
      assert.throws(() => HfJobs.parseVolume(spec), expected)
    }
  })
})
