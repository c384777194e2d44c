"""Moves files between the sandbox and a Storage Bucket, so they never pass through the client
(`sb.files.toHub(src, { bucket })`, `sb.files.fromHub({ bucket }, dest)`), with progress in real bytes.

Bucket storage speaks Xet, which a stdlib program cannot, so this drives the image's own `hf` CLI
(huggingface_hub 1.5.0 or later, the first with `hf buckets`; the spec's `minimum`): a missing `hf` fails
before anything runs; an older one has no `hf buckets`, so its first run refuses and moves nothing, and only
then is `hf version` asked, to say so (a transfer that works starts `hf` only for what it moves). It uses
only what `hf buckets` documents:
  - a folder: `hf buckets sync SRC DST --dry-run` prints the sync plan as JSONL (a header, then one
    operation per file with its action and size): the files that will move and their total, known before
    any byte moves. The plan is then run with `hf buckets sync --apply PLAN`, so exactly what was measured
    moves. An upload's plan is applied in parts of at least `partBytes` (at most about 16 parts): `hf`
    reports nothing while it uploads, and a part is in the bucket once its `--apply` exits 0, so the
    bytes of each part count when it ends.
  - one file: `hf buckets cp`. Its size is known up front: the sandbox's file for an upload, the dry-run
    plan of the file's own path for a download.
  - a download's bytes are those found in the destination while `hf` runs (polled): a file counts once it
    differs from what was there before, for no more than the blocks it has on disk, its size, and the
    size planned, so that a sparse or preallocated file claims nothing it has not received.

Stdlib only; run as `python3 -S -c <this source> '<json spec>'`. The HF token comes only from this
process's environment (`HF_TOKEN`), which the sandbox server sets for this one command; it reaches `hf` in
its environment, never in argv, and `hf version` runs without it. Every line on stdout is one JSON object:
  {"file": ..., "bytes": ..., "total": ...}            progress (bytes of the whole transfer)
  {"done": true, "folder": ..., "bytes": ..., "output": ...}   the summary, last (`output`: what the
                                                        transfer's `hf` runs printed)
  {"error": {"reason": ..., "status": null, "detail": ...}}    a failure (exit status 1)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

INSTALL = "pip install -U huggingface_hub"
# Parts of an upload: at least this many bytes each (the spec's `partBytes` changes it), at most about
# PARTS of them, since each is one more start of `hf`.
PART_BYTES = 256 * 1024 * 1024
PARTS = 16
# How often a download's destination is looked at.
INTERVAL = 0.2
# The end of `hf`'s output kept for the result and for an error.
OUTPUT_TAIL = 64 * 1024


class Failure(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def version_of(text):
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return None if match is None else tuple(int(g) for g in match.groups())


def find_hf():
    """Fails `Unsupported` unless there is an `hf` on PATH (no start of it)."""
    if shutil.which("hf") is None:
        raise Failure("Unsupported", "a bucket transfer runs the `hf` CLI, and the sandbox has none on its PATH: " + INSTALL)


def check_hf(minimum):
    """Fails `Unsupported` when `hf` says a version older than `minimum`; the token is not given to it. A
    version that cannot be had (`hf version` fails, times out or prints none) proves nothing: the failure
    that made us ask (a 401, a missing file) is then the one reported."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    try:
        ran = subprocess.run(["hf", "version"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        version = version_of(ran.stdout.decode("utf-8", "replace")) if ran.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    if version is not None and version < minimum:
        raise Failure(
            "Unsupported",
            "a bucket transfer needs `hf` from huggingface_hub %s or later (`hf buckets`), and the sandbox has hf %s: %s"
            % (".".join(map(str, minimum)), ".".join(map(str, version)), INSTALL),
        )


def minimum_of(spec):
    """The oldest `hf` the transfer accepts: the spec's `minimum` (`[major, minor, patch]`), which the
    library defines; the program has none of its own, so the two cannot disagree."""
    minimum = spec.get("minimum")
    if not isinstance(minimum, list) or len(minimum) != 3 or not all(isinstance(n, int) for n in minimum):
        raise Failure("Failed", "the transfer's spec gives no `minimum` version of `hf` ([major, minor, patch]): %r" % (minimum,))
    return tuple(minimum)


def reason_of(stderr):
    """What the failure of `hf` says, as a reason: its own words decide (it prints the Hub's status)."""
    if re.search(r"\b(401|403)\b|Unauthorized|Forbidden", stderr, re.I):
        return "Unauthorized"
    if re.search(r"\b404\b|not found", stderr, re.I):
        return "NotFound"
    return "Failed"


def tail(f, most):
    """The last `most` bytes (all when None) written to the file `f`, decoded."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0 if most is None else max(0, size - most))
    return f.read().decode("utf-8", "replace")


class Hf:
    """Runs `hf` with the transfer's environment, its output kept in files (read whole only at its end). A
    failed run is first checked against `minimum`: an `hf` that says it is too old for `hf buckets` fails
    `Unsupported`; otherwise the run's own failure stands."""

    def __init__(self, work, minimum):
        self.work = work
        self.minimum = minimum
        # Whether `hf version` has been found good enough: it is asked once, at the first failure.
        self.checked = False
        self.runs = 0
        self.output = ""

    def start(self, args):
        self.runs += 1
        out = open(os.path.join(self.work, "out-%d" % self.runs), "w+b")
        err = open(os.path.join(self.work, "err-%d" % self.runs), "w+b")
        try:
            return subprocess.Popen(["hf"] + args, stdin=subprocess.DEVNULL, stdout=out, stderr=err), out, err
        except OSError as e:
            out.close()
            err.close()
            raise Failure("Unsupported", "cannot run `hf`: %s: %s" % (e, INSTALL)) from None

    def finish(self, started, keep=True):
        """Waits for the run; its stdout (whole for a plan, else its end), or the typed failure of `hf`."""
        process, out, err = started
        code = process.wait()
        with out, err:
            stdout = tail(out, None if not keep else OUTPUT_TAIL)
            stderr = tail(err, OUTPUT_TAIL)
        if code != 0:
            if not self.checked:
                check_hf(self.minimum)
                self.checked = True
            said = stderr.strip()[-2000:] or stdout.strip()[-2000:]
            raise Failure(reason_of(stderr), "`hf` exited with %d: %s" % (code, said))
        if keep:
            self.output = (self.output + stdout)[-OUTPUT_TAIL:]
        return stdout

    def run(self, args, keep=True):
        return self.finish(self.start(args), keep)


def plan_of(hf, source, dest):
    """`hf buckets sync`'s dry-run plan: its header line and its operations (action, path, size)."""
    header, operations = None, []
    for line in hf.run(["buckets", "sync", source, dest, "--dry-run"], keep=False).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "header":
            header = entry
        elif entry.get("type") == "operation":
            operations.append(entry)
    if header is None:
        raise Failure("Failed", "`hf buckets sync --dry-run` printed no plan for %s -> %s" % (source, dest))
    return header, operations


def write_plan(work, name, header, operations):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        for entry in [header] + operations:
            f.write(json.dumps(entry) + "\n")
    return path


def parts_of(uploads, part_bytes):
    """The uploads in order, grouped so that each part but the last has at least the part size."""
    total = sum(op.get("size") or 0 for op in uploads)
    least = max(part_bytes, -(-total // PARTS))
    parts, current, size = [], [], 0
    for op in uploads:
        current.append(op)
        size += op.get("size") or 0
        if size >= least:
            parts.append(current)
            current, size = [], 0
    if current:
        parts.append(current)
    return parts


def prefix_of(uri):
    """The path in the bucket of `hf://buckets/<namespace>/<name>/<path>`."""
    parts = uri[len("hf://buckets/") :].split("/", 2)
    return parts[2] if len(parts) > 2 else ""


def in_bucket(uri, rel):
    """The path in the bucket of a sync plan's `rel` (relative to the URI's prefix)."""
    prefix = prefix_of(uri).strip("/")
    return prefix + "/" + rel if prefix else rel


def remote_path(local, uri):
    """Where `hf buckets cp` puts a file in the bucket (as its own `_upload_file_to_remote` decides)."""
    prefix = prefix_of(uri)
    name = os.path.basename(local)
    if prefix == "":
        return name
    return prefix.rstrip("/") + "/" + name if uri.endswith("/") else prefix


def to_bucket(spec, hf):
    src, uri = spec["local"], spec["uri"]
    if os.path.isdir(src):
        header, operations = plan_of(hf, src, uri)
        uploads = [op for op in operations if op.get("action") == "upload"]
        total = sum(op.get("size") or 0 for op in uploads)
        done = 0
        if uploads:
            emit({"file": in_bucket(uri, uploads[0]["path"]), "bytes": 0, "total": total})
        for i, part in enumerate(parts_of(uploads, int(spec.get("partBytes") or PART_BYTES))):
            hf.run(["buckets", "sync", "--apply", write_plan(hf.work, "part-%d.jsonl" % i, header, part)])
            done += sum(op.get("size") or 0 for op in part)
            emit({"file": in_bucket(uri, part[-1]["path"]), "bytes": done, "total": total})
        return {"folder": True, "bytes": done}
    if not os.path.exists(src):
        raise Failure("Failed", "no such file or folder in the sandbox: %s" % src)
    total = os.path.getsize(src)
    name = remote_path(src, uri)
    emit({"file": name, "bytes": 0, "total": total})
    hf.run(["buckets", "cp", src, uri])
    emit({"file": name, "bytes": total, "total": total})
    return {"folder": False, "bytes": total}


def landed(path, before, planned):
    """The bytes of a downloaded file found at `path`: none while it is what was there before the transfer,
    else no more than its blocks on disk, its size and the size planned."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    if before is not None and (st.st_ino, st.st_mtime_ns, st.st_size) == before:
        return 0
    blocks = getattr(st, "st_blocks", None)
    found = st.st_size if blocks is None else min(st.st_size, blocks * 512)
    return min(found, planned) if planned is not None else found


def identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def watch(hf, args, files, total, interval):
    """Runs `hf` with `args`, reporting the bytes found in `files` ((name, path, planned size)) as it runs;
    the total once it has succeeded."""
    before = {path: identity(path) for _, path, _ in files}
    seen = {path: 0 for _, path, _ in files}
    # A file found whole is not looked at again.
    pending = list(files)
    reported, last = 0, files[0][0]
    started = hf.start(args)
    while True:
        running = started[0].poll() is None
        began = time.monotonic()
        for name, path, planned in pending:
            now = landed(path, before[path], planned)
            if now > seen[path]:
                seen[path] = now
                last = name
        pending = [f for f in pending if f[2] is None or seen[f[1]] < f[2]]
        moved = sum(seen.values())
        if moved > reported:
            reported = moved
            emit({"file": last, "bytes": moved, "total": total})
        if not running:
            break
        # A look at many files costs: it takes at most a tenth of the time.
        time.sleep(max(interval, 9 * (time.monotonic() - began)))
    hf.finish(started)
    if total is None:
        # Not known before (a file the dry run did not size): what `hf` wrote, now that it is complete.
        total = sum(os.path.getsize(path) for _, path, _ in files)
    if reported < total:
        emit({"file": files[-1][0], "bytes": total, "total": total})
    return total


def from_bucket(spec, hf):
    uri, dest = spec["uri"], spec["local"]
    interval = float(spec.get("interval") or INTERVAL)
    parent = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise Failure("Failed", "cannot create %s in the sandbox: %s" % (parent, e)) from None
    if spec.get("folder"):
        header, operations = plan_of(hf, uri, dest)
        downloads = [op for op in operations if op.get("action") == "download"]
        if not downloads:
            return {"folder": True, "bytes": 0}
        total = sum(op.get("size") or 0 for op in downloads)
        root = os.path.abspath(dest)
        files = [(in_bucket(uri, op["path"]), os.path.join(root, *op["path"].split("/")), op.get("size")) for op in downloads]
        emit({"file": files[0][0], "bytes": 0, "total": total})
        plan = write_plan(hf.work, "plan.jsonl", header, operations)
        return {"folder": True, "bytes": watch(hf, ["buckets", "sync", "--apply", plan], files, total, interval)}
    name = uri.rsplit("/", 1)[-1]
    # The file's size: the dry-run plan of its own path (a prefix that is the file itself), into a folder
    # that does not exist, so that nothing there is compared. Without it the total is known at the end;
    # a real failure (no access, no such file) is then `cp`'s to report.
    try:
        _, operations = plan_of(hf, uri, os.path.join(hf.work, "size-of"))
    except Failure as failure:
        if failure.reason == "Unsupported":
            raise
        operations = []
    sizes = [op.get("size") for op in operations if op.get("action") == "download" and op.get("path") == name]
    total = sizes[0] if len(sizes) == 1 else None
    target = os.path.join(dest, name) if dest.endswith("/") or os.path.isdir(dest) else dest
    path = prefix_of(uri)
    emit({"file": path, "bytes": 0, "total": total})
    moved = watch(hf, ["buckets", "cp", uri, dest], [(path, os.path.abspath(target), total)], total, interval)
    return {"folder": False, "bytes": moved}


WORK_PREFIX = "hf-sandbox-bucket-"


def sweep_work():
    """Removes the working folders (plans, `hf`'s output) of transfers killed outright (an interrupted
    command gets SIGKILL), named by their pid: those of processes that are gone."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(WORK_PREFIX) :].split("-", 1)[0]
        if not name.startswith(WORK_PREFIX) or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except OSError:
            pass


def main():
    spec = json.loads(sys.argv[1])
    work = None
    try:
        find_hf()
        os.environ["HF_ENDPOINT"] = spec["endpoint"]
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        sweep_work()
        work = tempfile.mkdtemp(prefix="%s%d-" % (WORK_PREFIX, os.getpid()))
        hf = Hf(work, minimum_of(spec))
        if spec["op"] == "toBucket":
            result = to_bucket(spec, hf)
        elif spec["op"] == "fromBucket":
            result = from_bucket(spec, hf)
        else:
            raise Failure("Failed", "unknown operation %r" % spec["op"])
        emit(dict(result, done=True, output=hf.output))
    except Failure as failure:
        emit({"error": {"reason": failure.reason, "status": None, "detail": failure.detail}})
        sys.exit(1)
    except OSError as e:
        emit({"error": {"reason": "Failed", "status": None, "detail": str(e)}})
        sys.exit(1)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
