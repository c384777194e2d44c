#!/usr/bin/env node
/**
 * The `hf-sandbox` executable as installed: it runs the CLI's one-file bundle (`hf-sandbox.cjs`, built by
 * scripts/build-cli.ts beside this file) through a V8 code cache. Compiling the ~3 MB bundle is a third of
 * the CLI's start-up, paid by every command (`--version` included); with the cache, V8 deserializes the
 * compiled functions instead (Node 20 has no compile cache of its own; `module.enableCompileCache` came in
 * Node 22.1, and does the same for modules). Only Node built-ins are used here, so that this file costs
 * nothing.
 *
 * The cache lives under `$XDG_CACHE_HOME/hf-sandbox/compile-cache` (else `~/.cache/...`), one file per
 * bundle content, Node version and set of Node options (V8 itself only checks the source's length, so
 * the key must be the content: the bundle's digest, which scripts/build-cli.ts computes once and defines
 * into this file when it builds it beside the bundle, so that no start hashes ~3 MB; plus the bundle
 * file's size, mtime and inode, for a bundle changed without the starter). A run that found none writes
 * it once the bundle is set up, atomically (a temp file renamed), so that two CLIs starting at once never
 * read half a file. Whatever goes wrong
 * with it only costs the start-up it would have saved. `HF_SANDBOX_COMPILE_CACHE=0` turns it off.
 * tsconfig.build.json leaves this file out of dist/: only scripts/build-cli.ts defines its digest.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"

/** The code cache's directory, per the XDG base directory rules. */
const cacheDirectory = (env: NodeJS.ProcessEnv): string => {
  const xdg = env.XDG_CACHE_HOME
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache")
  return path.join(base, "hf-sandbox", "compile-cache")
}

const readOrUndefined = (file: string): Buffer | undefined => {
  try {
    return fs.readFileSync(file)
  } catch {
    return undefined
  }
}

/** Writes `data` to `file` through a temp file, and removes the caches of older bundles on this Node. */
const store = (directory: string, file: string, prefix: string, data: Buffer) => {
  fs.mkdirSync(directory, { recursive: true, mode: 0o700 })
  const temp = `${file}.${process.pid}.tmp`
  try {
    fs.writeFileSync(temp, data)
    fs.renameSync(temp, file)
  } finally {
    fs.rmSync(temp, { force: true })
  }
  for (const name of fs.readdirSync(directory)) {
    const other = path.join(directory, name)
    if (name.startsWith(prefix) && other !== file && name.endsWith(".bin")) fs.rmSync(other, { force: true })
  }
}

const digest = (data: string | Buffer, length: number) =>
  createHash("sha256").update(data).digest("hex").slice(0, length)

/** The bundle's digest (32 hex digits of its sha256), defined by scripts/build-cli.ts (`buildStarter`). */
declare const HF_SANDBOX_BUNDLE_DIGEST: string

const bundle = fileURLToPath(new URL("./hf-sandbox.cjs", import.meta.url))
const enabled = process.env.HF_SANDBOX_COMPILE_CACHE !== "0"
const directory = cacheDirectory(process.env)
// V8 refuses a cache made under other flags: each set of Node options (the command line's and
// NODE_OPTIONS', which execArgv does not show) gets its own file, not a rewrite per run.
const options = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join("\n")
const prefix = `${process.version}-${process.arch}-${digest(options, 8)}-`

/**
 * The bundle's bytes, and what identifies the file they were read from: its size, mtime (in microseconds)
 * and inode, from the descriptor read. The build-time digest names the bundle the starter was built
 * beside; these catch a bundle replaced or patched since without the starter being rebuilt (a failed
 * starter build, an edit of the same length), which V8, checking only the length, would run from the
 * stale cache. A stat, not a hash: no start reads the ~3 MB twice.
 */
const readBundle = () => {
  const fd = fs.openSync(bundle, "r")
  try {
    const stat = fs.fstatSync(fd, { bigint: true })
    const bytes = fs.readFileSync(fd)
    const identity = [stat.size, stat.mtimeNs / 1000n, stat.ino].map((n) => n.toString(36)).join("-")
    return { bytes, identity }
  } finally {
    fs.closeSync(fd)
  }
}

/** The bundle compiled as a CommonJS module's function, with the cache when there is one. */
const compile = () => {
  const { bytes, identity } = readBundle()
  const cacheFile = path.join(directory, `${prefix}${HF_SANDBOX_BUNDLE_DIGEST}-${identity}.bin`)
  const cachedData = enabled ? readOrUndefined(cacheFile) : undefined
  // latin1 is the cheapest decoding, and exact for the bundle's code, which esbuild writes in ASCII
  // (`charset: "ascii"`); the few comments it keeps may hold UTF-8, read as other characters there. A `#!`
  // line is kept by the bundler but is no statement inside the function wrapper: it becomes a comment.
  const text = bytes.toString("latin1")
  const source = text.startsWith("#!") ? `//${text.slice(2)}` : text
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundle,
    ...(cachedData !== undefined ? { cachedData } : {})
  })
  return { script, cacheFile, cached: cachedData !== undefined && script.cachedDataRejected !== true }
}

const { script, cacheFile, cached } = compile()

const module = { exports: {} }
script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, path.dirname(bundle))

// The bundle is set up (its modules evaluated, the command started; nothing asynchronous has run yet):
// the cache holds what that compiled, which is nearly all of the start-up's compiling.
if (enabled && !cached) {
  try {
    store(directory, cacheFile, prefix, script.createCachedData())
  } catch {
    // A read-only or full home: the next start compiles again, nothing else.
  }
}

// The CLI's only WebAssembly is undici's HTTP parser, compiled at the first connection; it reads a
// response's head and framing, not its bytes. Node 20 then recompiles it with TurboFan in the
// background: ~0.2 s of CPU per command (a fifth of a whole `exec`), for nothing measurable in
// throughput. Liftoff, V8's baseline wasm compiler, is kept. Only now: a flag changed earlier would
// make V8 refuse the code caches made under the flags Node starts with (its own built-ins', and ours).
v8.setFlagsFromString("--liftoff-only")
