/**
 * The job's command: a `/bin/sh` script that needs nothing from the image but a shell. It finds (or
 * installs) Python 3.8+, writes the server package it carries inline, and `exec`s it. No pip, no download
 * of the server itself; the tunnel transport's server may download a pinned, checksum-verified cloudflared.
 *
 * The package travels as one deflated JSON map of its files, unpacked into a directory whose `__main__.py`
 * is then run as `python3 -S <dir>/__main__.py`, exactly as the local provider runs it. A zip run by
 * zipimport would save the unpacking, but it is read through zipimport and zlib on every import and
 * cannot keep bytecode; the unpack is one call of the interpreter the script already makes, and the map
 * compresses as one stream.
 */
import { deflateSync } from "node:zlib"
import type { ServerFiles } from "./serverScript.js"

export interface Options {
  readonly transport: "tunnel" | "proxy"
  /** The server package's files (`serverScript.readServerPackage`). */
  readonly serverFiles: ServerFiles
  readonly idleTimeoutSeconds: number | undefined
  /**
   * How long the idle timeout waits at least for the client's first request (the client's start timeout):
   * a tunnel slower than a short idle timeout must not end the sandbox before its client reaches it.
   */
  readonly startGraceSeconds?: number | undefined
}

/** The marker the server prints once the tunnel is registered; the client matches only this. */
export const TUNNEL_MARKER = "HF_SANDBOX_TUNNEL"

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

// Every interpreter run here is -S: site-packages (and any .pth files an image ships) cost tens of
// milliseconds per run, and neither the check, the unpacking nor the server needs them.
const FIND_PYTHON = `find_python() {
  for c in python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -S -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' >/dev/null 2>&1; then
      PY=$(command -v "$c"); return 0
    fi
  done
  return 1
}`

const INSTALL_PYTHON = `install_python() {
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 ca-certificates
  elif command -v apk >/dev/null 2>&1; then
    apk add --no-cache python3 ca-certificates
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q python3 ca-certificates
  elif command -v yum >/dev/null 2>&1; then
    yum install -y -q python3 ca-certificates
  else
    return 1
  fi
}`

/** Writes the files of the map in argv[2:] (deflated JSON, base64, in pieces) into the new directory argv[1]. */
const UNPACK = [
  "import base64, json, os, sys, zlib",
  "os.makedirs(sys.argv[1])",
  'files = json.loads(zlib.decompress(base64.b64decode("".join(sys.argv[2:]))))',
  "for name, source in files.items():",
  '    with open(os.path.join(sys.argv[1], name), "wb") as f:',
  '        f.write(source.encode("utf-8"))'
].join("\n")

// The package, deflated at level 9 (some 200 KB of source: tens of milliseconds), once per file map: a
// provider reads its map once and hands the same one to every job it creates.
const payloads = new WeakMap<ServerFiles, string>()
const payloadOf = (serverFiles: ServerFiles): string => {
  let payload = payloads.get(serverFiles)
  if (payload === undefined) {
    const files = JSON.stringify(Object.fromEntries(serverFiles))
    payload = deflateSync(Buffer.from(files, "utf8"), { level: 9 }).toString("base64")
    payloads.set(serverFiles, payload)
  }
  return payload
}

/**
 * The longest piece of the package one argument carries. Linux refuses to exec a command with any one
 * argument over 128 KiB (MAX_ARG_STRLEN: `E2BIG`), whatever the total, and the package alone is about
 * that size: it travels as arguments of its own after the script, each well under the limit.
 */
const PAYLOAD_PIECE = 64 * 1024

/** The job's command: `/bin/sh -c <script> hf-sandbox <the package, in pieces>`. */
export const command = (options: Options): Array<string> => {
  const payload = payloadOf(options.serverFiles)
  const pieces: Array<string> = []
  for (let at = 0; at < payload.length; at += PAYLOAD_PIECE) pieces.push(payload.slice(at, at + PAYLOAD_PIECE))
  return ["/bin/sh", "-c", script(options), "hf-sandbox", ...pieces]
}

/** The script, run by {@link command} with the package's pieces as its arguments (`"$@"`). */
const script = (options: Options): string => {
  const args = [
    ...(options.transport === "proxy"
      ? ["--host", "0.0.0.0", "--port", '"$SBX_PORT"']
      : ["--host", "127.0.0.1", "--port", "0", "--tunnel"]),
    ...(options.idleTimeoutSeconds === undefined ? [] : ["--idle-timeout", String(options.idleTimeoutSeconds)]),
    ...(options.idleTimeoutSeconds === undefined || options.startGraceSeconds === undefined
      ? []
      : ["--start-grace", String(options.startGraceSeconds)])
  ]
  return [
    "set -u",
    `log() { echo "hf-sandbox: $*" >&2; }`,
    FIND_PYTHON,
    INSTALL_PYTHON,
    `PY=""`,
    `if ! find_python; then`,
    `  log "the image has no Python 3.8+; installing it"`,
    `  install_python >&2 || true`,
    `  find_python || { log "cannot start: the image has no Python 3.8+ and it could not be installed (no working apt-get, apk, dnf or yum). Use an image that has python3, e.g. python:3.12."; exit 127; }`,
    `fi`,
    `DIR="\${TMPDIR:-/tmp}/hf-sandbox"`,
    `mkdir -p "$DIR" || { log "cannot create $DIR"; exit 1; }`,
    // The directory is named for the package: `__main__.py` imports the package by its directory's name.
    `"$PY" -S -c ${quote(UNPACK)} "$DIR/server.$$/sbx_server" "$@" || { log "cannot write the sandbox server to $DIR"; exit 1; }`,
    // Its __main__.py rather than the directory: Python then runs it without runpy (see serverMainPath).
    `exec "$PY" -u -S "$DIR/server.$$/sbx_server/__main__.py" ${args.join(" ")}`
  ].join("\n")
}
