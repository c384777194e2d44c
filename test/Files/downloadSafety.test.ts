/**
 * A sandbox runs untrusted code, so what it offers for download is hostile: links that lead out of the
 * destination, links that become directories between two downloads, setuid and world-writable modes.
 * These tests build such trees in a real local sandbox and check that nothing a download writes ever
 * resolves outside the destination, and that modes are tamed unless asked for.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sandbox from "hf-sandbox/Sandbox"
import { localLayer } from "../support/local.js"

const SharedSandbox = Sandbox.layer().pipe(Layer.provideMerge(localLayer()))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-sandbox-dlsafety-"))),
  (dir) =>
    Effect.sync(() => {
      // Modes set by the tests (0o500 directories) must not stop the clean-up.
      const open = (p: string) => {
        const info = fs.lstatSync(p, { throwIfNoEntry: false })
        if (info?.isDirectory()) {
          fs.chmodSync(p, 0o700)
          for (const name of fs.readdirSync(p)) open(path.join(p, name))
        }
      }
      open(dir)
      fs.rmSync(dir, { recursive: true, force: true })
    })
)

/** Runs a shell script in the sandbox, failing the test on a non-zero exit. */
const sh = (script: string) =>
  Effect.flatMap(Sandbox.Sandbox, (sb) => sb.exec(["sh", "-c", `set -e\n${script}`])).pipe(
    Effect.tap((r) => (r.exitCode === 0 ? Effect.void : Effect.die(new Error(`script failed: ${r.stderr}`))))
  )

const modeOf = (p: string) => fs.lstatSync(p).mode & 0o7777
const umask = process.umask()

/** A fresh tree in the sandbox's home, under a name no other test uses. */
let trees = 0
const treeName = () => `dl-safety-${process.pid}-${trees++}`

layer(SharedSandbox, { excludeTestServices: true })("download safety (shared local sandbox)", (it) => {
  describe("downloadDir never writes through a link", () => {
    it.scoped("a link that becomes a directory between two downloads is replaced, not written through", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const dest = path.join(dir, "a", "b", "dest")
        const tree = treeName()
        // `../../..` from dest/out leads to `dir`: the sandbox needs to know nothing of the client's paths.
        yield* sh(`mkdir -p ${tree}/out && ln -s ../../.. ${tree}/out/evil`)
        yield* sb.files.downloadDir(tree, dest, { links: "keep" })
        assert.strictEqual(fs.readlinkSync(path.join(dest, "out", "evil")), "../../..")
        // The sync loop runs again: now `out/evil` is a real directory with a file in it.
        yield* sh(`rm ${tree}/out/evil && mkdir ${tree}/out/evil && echo key > ${tree}/out/evil/authorized_keys`)
        yield* sb.files.downloadDir(tree, dest, { links: "keep" })
        assert.isFalse(fs.existsSync(path.join(dir, "a", "authorized_keys")), "written through the link")
        assert.isTrue(fs.lstatSync(path.join(dest, "out", "evil")).isDirectory())
        assert.strictEqual(fs.readFileSync(path.join(dest, "out", "evil", "authorized_keys"), "utf8"), "key\n")
      })
    )

    it.scoped("a local link in the way of a directory or a file is replaced; a local directory is refused", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const outside = path.join(dir, "outside")
        const dest = path.join(dir, "dest")
        fs.mkdirSync(outside)
        fs.writeFileSync(path.join(outside, "victim"), "untouched")
        fs.mkdirSync(dest)
        fs.symlinkSync(outside, path.join(dest, "sub"))
        fs.symlinkSync(path.join(outside, "victim"), path.join(dest, "victim"))
        fs.writeFileSync(path.join(dest, "was-a-file"), "old")
        const tree = treeName()
        yield* sh(
          `mkdir -p ${tree}/sub/deeper ${tree}/was-a-file && echo new > ${tree}/sub/deeper/f && echo new > ${tree}/victim`
        )
        yield* sb.files.downloadDir(tree, dest)
        assert.deepStrictEqual(fs.readdirSync(outside), ["victim"])
        assert.strictEqual(fs.readFileSync(path.join(outside, "victim"), "utf8"), "untouched")
        assert.isTrue(fs.lstatSync(path.join(dest, "sub")).isDirectory())
        assert.strictEqual(fs.readFileSync(path.join(dest, "sub", "deeper", "f"), "utf8"), "new\n")
        assert.isTrue(fs.lstatSync(path.join(dest, "victim")).isFile())
        assert.isTrue(fs.lstatSync(path.join(dest, "was-a-file")).isDirectory())

        // A local directory where the tree has a file is refused, naming the path, and kept as it was.
        fs.mkdirSync(path.join(dest, "kept"))
        fs.writeFileSync(path.join(dest, "kept", "mine"), "mine")
        yield* sh(`echo theirs > ${tree}/kept`)
        const refused = yield* Effect.flip(sb.files.downloadDir(tree, dest))
        assert.strictEqual(refused._tag, "LocalFileError")
        assert.include(refused.message, path.join(dest, "kept"))
        assert.include(refused.message, "directory")
        assert.strictEqual(fs.readFileSync(path.join(dest, "kept", "mine"), "utf8"), "mine")
      })
    )
  })

  describe("link targets", () => {
    const hostile = (tree: string) =>
      sh(
        [
          `mkdir -p ${tree}/d/e`,
          `echo hi > ${tree}/d/file`,
          `ln -s /etc/passwd ${tree}/absolute`,
          `ln -s ../../.. ${tree}/d/escape`,
          `ln -s file ${tree}/d/inside`,
          `ln -s ../d/file ${tree}/d/e/inside-up`,
          // Each step stays inside, but `d/up` is a link to the tree's root: `d/up/..` is its parent.
          `ln -s .. ${tree}/d/up`,
          `ln -s d/up/.. ${tree}/chained`
        ].join(" && ")
      )

    it.scoped("by default, links that are absolute or lead out of the tree are skipped and reported", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const tree = treeName()
        yield* hostile(tree)
        const dest = path.join(dir, "dest")
        const result = yield* sb.files.downloadDir(tree, dest)
        assert.deepStrictEqual(
          result.skippedLinks.map((l) => [l.name, l.target]),
          [
            ["absolute", "/etc/passwd"],
            ["chained", "d/up/.."],
            ["d/escape", "../../.."]
          ]
        )
        assert.strictEqual(fs.readlinkSync(path.join(dest, "d", "inside")), "file")
        assert.strictEqual(fs.readlinkSync(path.join(dest, "d", "e", "inside-up")), "../d/file")
        assert.strictEqual(fs.readlinkSync(path.join(dest, "d", "up")), "..")
        for (const name of ["absolute", "chained", "d/escape"]) {
          assert.isUndefined(fs.lstatSync(path.join(dest, name), { throwIfNoEntry: false }), name)
        }
      })
    )

    it.scoped("links: refuse fails before anything is written; links: keep recreates them as they are", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const tree = treeName()
        yield* hostile(tree)
        const refusedDest = path.join(dir, "refused")
        const refused = yield* Effect.flip(sb.files.downloadDir(tree, refusedDest, { links: "refuse" }))
        assert.strictEqual(refused._tag, "LocalFileError")
        assert.include(refused.message, "/etc/passwd")
        assert.include(refused.message, 'links: "skip"')
        assert.isFalse(fs.existsSync(refusedDest))

        const kept = path.join(dir, "kept")
        const result = yield* sb.files.downloadDir(tree, kept, { links: "keep" })
        assert.deepStrictEqual(result.skippedLinks, [])
        assert.strictEqual(fs.readlinkSync(path.join(kept, "absolute")), "/etc/passwd")
        assert.strictEqual(fs.readlinkSync(path.join(kept, "chained")), "d/up/..")

        const invalid = yield* Effect.flip(sb.files.downloadDir(tree, kept, { links: "follow" as never }))
        assert.strictEqual(invalid._tag, "InvalidArgumentError")
        assert.include(invalid.message, "links")
      })
    )

    it.scoped("uploadDir keeps links as they are by default, and skips or refuses them when asked", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const local = path.join(dir, "local")
        fs.mkdirSync(path.join(local, "d"), { recursive: true })
        fs.writeFileSync(path.join(local, "d", "file"), "hi")
        fs.symlinkSync(path.join(dir, "secret"), path.join(local, "absolute"))
        fs.symlinkSync("file", path.join(local, "d", "inside"))
        const tree = treeName()
        const kept = yield* sb.files.uploadDir(local, `${tree}/kept`)
        assert.deepStrictEqual(kept.skippedLinks, [])
        assert.deepInclude(yield* sb.files.stat(`${tree}/kept/absolute`), { type: "symlink" })

        const skipped = yield* sb.files.uploadDir(local, `${tree}/skipped`, { links: "skip" })
        assert.deepStrictEqual(skipped.skippedLinks, [{ name: "absolute", target: path.join(dir, "secret") }])
        assert.isFalse(yield* sb.files.exists(`${tree}/skipped/absolute`))
        assert.deepInclude(yield* sb.files.stat(`${tree}/skipped/d/inside`), { type: "symlink" })

        const refused = yield* Effect.flip(sb.files.uploadDir(local, `${tree}/refused`, { links: "refuse" }))
        assert.strictEqual(refused._tag, "LocalFileError")
        assert.include(refused.message, path.join(local, "absolute"))
        assert.isFalse(yield* sb.files.exists(`${tree}/refused`))
      })
    )
  })

  describe("modes", () => {
    it.scoped("downloads drop setuid, setgid, sticky and what the umask masks, unless preserveModes", () =>
      Effect.gen(function* () {
        const sb = yield* Sandbox.Sandbox
        const dir = yield* tempDir
        const tree = treeName()
        yield* sh(
          [
            `mkdir -p ${tree}/sticky ${tree}/open`,
            `echo x > ${tree}/suid && chmod 4755 ${tree}/suid`,
            `echo x > ${tree}/sgid && chmod 2750 ${tree}/sgid`,
            `echo x > ${tree}/world && chmod 0666 ${tree}/world`,
            `echo x > ${tree}/private && chmod 0600 ${tree}/private`,
            `chmod 1777 ${tree}/sticky && chmod 0777 ${tree}/open`
          ].join(" && ")
        )
        const tamed = path.join(dir, "tamed")
        yield* sb.files.downloadDir(tree, tamed)
        assert.strictEqual(modeOf(path.join(tamed, "suid")), 0o755 & ~umask)
        assert.strictEqual(modeOf(path.join(tamed, "sgid")), 0o750 & ~umask)
        assert.strictEqual(modeOf(path.join(tamed, "world")), 0o666 & ~umask)
        assert.strictEqual(modeOf(path.join(tamed, "private")), 0o600)
        assert.strictEqual(modeOf(path.join(tamed, "sticky")), 0o777 & ~umask)
        assert.strictEqual(modeOf(path.join(tamed, "open")), 0o777 & ~umask)

        const single = path.join(dir, "single-suid")
        yield* sb.files.download(`${tree}/suid`, single)
        assert.strictEqual(modeOf(single), 0o755 & ~umask)

        const exact = path.join(dir, "exact")
        yield* sb.files.downloadDir(tree, exact, { preserveModes: true })
        assert.strictEqual(modeOf(path.join(exact, "suid")), 0o4755)
        assert.strictEqual(modeOf(path.join(exact, "world")), 0o666)
        assert.strictEqual(modeOf(path.join(exact, "sticky")), 0o1777)
        const exactSingle = path.join(dir, "exact-single")
        yield* sb.files.download(`${tree}/suid`, exactSingle, { preserveModes: true })
        assert.strictEqual(modeOf(exactSingle), 0o4755)

        const invalid = yield* Effect.flip(
          sb.files.download(`${tree}/suid`, exactSingle, { preserveModes: 1 as never })
        )
        assert.strictEqual(invalid._tag, "InvalidArgumentError")
        assert.include(invalid.message, "preserveModes")
      })
    )
  })
})
