/**
 * Volumes on HF Jobs, against the Hub emulator: sent in the Jobs API's own shape, checked before any job
 * exists, refused by the emulated Hub as the Hub refuses them, and mounted in the emulated container. The
 * emulator has no store of repos or buckets: what it emulates is the mount point (an empty directory under
 * `$HF_EMULATOR_VOLUMES`, mode 0555 when read-only, 0755 when read-write), not the content.
 */
import * as fs from "node:fs"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import { emulator, jobOf, resetFaults } from "../support/hfJobs.js"
import { emulatedHub } from "../support/hub.js"

const volumes: ReadonlyArray<HfJobs.Volume> = [
  { type: "model", source: "openai/gpt-oss-20b", mountPath: "/model", revision: "refs/pr/3" },
  { type: "dataset", source: "stanfordnlp/imdb", mountPath: "/data", path: "plain_text" },
  { type: "bucket", source: "acme/checkpoints", mountPath: "/out" },
  { type: "bucket", source: "acme/inputs", mountPath: "/in", readOnly: true }
]

layer(emulatedHub(), { excludeTestServices: true, timeout: "60 seconds" })("HF Jobs: volumes (emulated Hub)", (it) => {
  it.effect("volumes reach the job spec as the Jobs API takes them, and the container gets their mount points", () =>
    Effect.gen(function* () {
      yield* resetFaults
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
        assert.strictEqual(
          fs.readdirSync(job.mounts["/model"]!).length,
          0,
          "no content: the emulator has no repo store"
        )
      }).pipe(Effect.scoped)
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
        assert.include(error.message, `volumes[0]: `)
        assert.include(error.message, expected)
      }
      const nested = yield* Sandbox.make({
        volumes: [
          { type: "model", source: "org/m", mountPath: "/data" },
          { type: "bucket", source: "org/b", mountPath: "/data/out" }
        ]
      }).pipe(Effect.scoped, Effect.flip)
      assert.include(nested.message, `volumes[1]: mountPath "/data/out" is inside (or the same as) volumes[0]'s`)
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
