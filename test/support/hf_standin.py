"""A stand-in for huggingface_hub's `hf` CLI, for the bucket transfer tests: a real process that behaves as
`hf` does in what `rpc-server/bucket_transfer.py` relies on, over a bucket store that is a local folder.

Installed as `<root>/bin/hf`; `<root>/config.json` says its `version` and the `exit` status of every
`buckets` command (non-zero: it refuses as the Hub does, 403). Before 1.5.0 there is no `hf buckets`: it
refuses every `buckets` command as a usage error, as `hf` does a command it does not know (exit 2).
`versionExit` (non-zero): `hf version` fails with that status, printing no version. It appends each call's argv (one per line,
then `--`) to `<root>/calls` and its environment to `<root>/env`. Buckets live in `<root>/store/<ns>/<name>/`.
  - `hf version`
  - `hf buckets sync SRC DST --dry-run`: the plan as JSONL (a header, then an operation per file), as
    `_write_plan` prints it; a file is uploaded or downloaded when the other side lacks it or has another
    size, else skipped. A bucket prefix that is a file itself plans that one file under its own name.
  - `hf buckets sync --apply PLAN`: runs the plan's uploads and downloads.
  - `hf buckets cp SRC DST`: one file, either way (`DST` a folder or ending with `/`: under its own name).
A download writes its file in two pieces, as a real one grows: the first half, then, once `<root>/go`
exists (the test makes it when it has seen the half; at most 30 s), the rest.
"""

import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CONFIG = json.load(open(os.path.join(ROOT, "config.json")))
STORE = os.path.join(ROOT, "store")
PREFIX = "hf://buckets/"


def version_of(text):
    return tuple(int(part) for part in text.split(".")[:3])


def record(argv):
    with open(os.path.join(ROOT, "calls"), "a") as f:
        f.write("".join(a + "\n" for a in argv) + "--\n")
    with open(os.path.join(ROOT, "env"), "a") as f:
        f.write("".join("%s=%s\n" % kv for kv in os.environ.items()))


def parse(uri):
    """(bucket folder in the store, path in the bucket) of `hf://buckets/ns/name/path`."""
    parts = uri[len(PREFIX) :].split("/", 2)
    return os.path.join(STORE, parts[0], parts[1]), parts[2] if len(parts) > 2 else ""


def walk(folder):
    found = {}
    if os.path.isdir(folder):
        for root, _, names in os.walk(folder):
            for name in names:
                full = os.path.join(root, name)
                found[os.path.relpath(full, folder).replace(os.sep, "/")] = os.path.getsize(full)
    return found


def remote_files(uri):
    bucket, path = parse(uri)
    path = path.rstrip("/")
    if path and os.path.isfile(os.path.join(bucket, path)):
        return {path.rsplit("/", 1)[-1]: os.path.getsize(os.path.join(bucket, path))}
    return walk(os.path.join(bucket, path) if path else bucket)


def download(src_file, dest):
    """Writes the file at `dest` in two pieces, waiting for the test's `go` in between."""
    data = open(src_file, "rb").read()
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(ROOT, "go")) and time.time() < deadline:
            time.sleep(0.02)
        f.write(data[len(data) // 2 :])


def dry_run(src, dst):
    upload = not src.startswith(PREFIX)
    if upload and not os.path.isdir(src):
        sys.exit("Error: Source must be an existing directory: " + src)
    source, dest = (walk(src), remote_files(dst)) if upload else (remote_files(src), walk(dst))
    action = "upload" if upload else "download"
    ops = []
    for path in sorted(source):
        same = dest.get(path) == source[path]
        ops.append({"type": "operation", "action": "skip" if same else action, "path": path, "reason": "same size" if same else "new file", "size": source[path]})
    moved = [op for op in ops if op["action"] != "skip"]
    summary = {"uploads": len(moved) if upload else 0, "downloads": 0 if upload else len(moved), "deletes": 0, "skips": len(ops) - len(moved), "total_size": sum(op["size"] for op in moved)}
    print(json.dumps({"type": "header", "source": src, "dest": dst, "timestamp": "2026-12-06T00:00:00+00:00", "summary": summary}))
    for op in ops:
        print(json.dumps(op))


def apply(plan_file):
    lines = [json.loads(line) for line in open(plan_file)]
    header, ops = lines[0], [op for op in lines[1:] if op.get("type") == "operation"]
    print("Sync plan: %s -> %s" % (header["source"], header["dest"]))
    print("Executing plan...")
    for op in ops:
        if op["action"] == "upload":
            bucket, prefix = parse(header["dest"])
            target = os.path.join(bucket, prefix.strip("/"), op["path"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(header["source"], op["path"]), target)
        elif op["action"] == "download":
            bucket, prefix = parse(header["source"])
            prefix = prefix.rstrip("/")
            full = os.path.join(bucket, prefix)
            src_file = full if os.path.isfile(full) else os.path.join(full, op["path"])
            download(src_file, os.path.join(header["dest"], op["path"]))
    print("Sync completed.")


def cp(src, dst):
    if src.startswith(PREFIX):
        bucket, path = parse(src)
        if not os.path.isfile(os.path.join(bucket, path)):
            sys.exit("Error: 404 Client Error: Not Found: 1 file(s) not found in bucket: " + path)
        name = path.rsplit("/", 1)[-1]
        local = os.path.join(dst, name) if dst.endswith("/") or os.path.isdir(dst) else dst
        download(os.path.join(bucket, path), local)
        print("✓ Downloaded\n  src: %s\n  dst: %s" % (src, local))
        return
    bucket, prefix = parse(dst)
    name = os.path.basename(src)
    remote = name if prefix == "" else (prefix.rstrip("/") + "/" + name if dst.endswith("/") else prefix)
    os.makedirs(os.path.dirname(os.path.join(bucket, remote)), exist_ok=True)
    shutil.copyfile(src, os.path.join(bucket, remote))
    print("✓ Uploaded\n  src: %s\n  dst: %s%s" % (src, dst[: len(dst) - len(prefix)], remote))


def main():
    argv = sys.argv[1:]
    record(argv)
    if argv[:1] == ["version"]:
        if CONFIG.get("versionExit", 0) != 0:  # an install whose version cannot be told
            sys.stderr.write("Traceback (most recent call last):\nImportError: cannot import name 'version'\n")
            sys.exit(CONFIG["versionExit"])
        print("huggingface_hub version: " + CONFIG["version"])
        return
    if argv[:1] != ["buckets"] or version_of(CONFIG["version"]) < (1, 5, 0):
        sys.stderr.write("Usage: hf [OPTIONS] COMMAND [ARGS]...\nTry 'hf -h' for help.\n\nError: No such command '%s'.\n" % " ".join(argv[:1]))
        sys.exit(2)
    if CONFIG.get("exit", 0) != 0:
        sys.stderr.write("403 Forbidden: you don't have write access to this bucket\n")
        sys.exit(CONFIG["exit"])
    args = argv[2:]
    if argv[1] == "sync" and args[:1] == ["--apply"]:
        apply(args[1])
    elif argv[1] == "sync" and "--dry-run" in args:
        dry_run(*[a for a in args if a != "--dry-run"])
    elif argv[1] == "cp":
        cp(*args)
    else:
        sys.exit("stand-in hf: unsupported: " + " ".join(argv))


main()
