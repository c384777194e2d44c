"""Moves Hub data inside the sandbox, so it never passes through the client (`sb.files.fromHub`,
`sb.files.toHub`).

Stdlib only; run as `python3 -S -c <this source> '<json spec>'`. The spec names the repo, path,
revision and destination; the HF token comes only from this process's environment (`HF_TOKEN`), which
the sandbox server sets for this one command: it is never in argv, in the job's environment or in
anything printed. Every line on stdout is one JSON object:
  {"file": ..., "bytes": ..., "total": ...}            progress (bytes of the whole transfer)
  {"done": true, "commit": ..., "files": [...]}        the summary, last
  {"error": {"reason": ..., "status": ..., "detail": ...}}  a failure (exit status 1)

Routes as huggingface_hub uses them: `POST /api/{type}s/{repo}/paths-info/{revision}` to tell a file from
a folder, `GET /api/{type}s/{repo}/tree/{revision}/{path}?recursive=true&expand=false` paginated by the
`Link` header, `GET /{prefix}{repo}/resolve/{revision}/{path}` with `X-Repo-Commit`, following redirects
(the token is sent only to the Hub's own host, as `requests` drops it on a redirect elsewhere); a download
cut mid-way goes on with `Range: bytes=N-` from the bytes written, and the whole file is checked against
the listed size and the digest of the Hub's ETag (`X-Linked-Etag` on an LFS redirect: sha256; a regular
file's: its git blob sha1) before it gets its name; and for
an upload `POST /api/{type}s/{repo}/preupload/{revision}` (regular or LFS, 256 files a request) then ONE
`POST /api/{type}s/{repo}/commit/{revision}` in NDJSON (`header`, then `file` lines with base64 content),
as `_commit_api.py` sends them. Files the Hub wants in LFS go first through the LFS batch API as `lfs.py`
uses it without Xet: `POST /{prefix}{repo}.git/info/lfs/objects/batch` (sha256 oids), then for each object
the server lacks a basic PUT of the bytes or a multipart upload (numbered part URLs of `chunk_size`
bytes, then the completion with the parts' etags), then `verify` when given; the commit carries
`lfsFile` lines (path, sha256 oid, size) for them. The storage URLs get only the headers the batch
answer gave, never the token.
"""

import http.client
import base64
import hashlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHUNK = 1024 * 1024
RETRIES = 5
MAX_REDIRECTS = 10


# The first retry waits 2 * PAUSE_BASE seconds; the spec's `retryBase` changes it (tests: no waiting).
PAUSE_BASE = 0.2


def pause(retry):
    """The wait before retry number `retry` (1, 2, ...): exponential from 0.4 s, at most 5 s."""
    time.sleep(min(PAUSE_BASE * 2**retry, 5.0))


class Failure(Exception):
    def __init__(self, reason, detail, status=None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Hub:
    def __init__(self, endpoint, token, repo, repo_type):
        self.endpoint = endpoint.rstrip("/")
        self.host = urllib.parse.urlsplit(self.endpoint).netloc
        self.token = token
        self.repo = repo
        self.repo_type = repo_type

    def headers_for(self, url, auth=True):
        headers = {"user-agent": "hf-sandbox-hub-transfer"}
        # The token goes to the Hub only, never to a CDN a download is redirected to, nor to LFS storage.
        if auth and self.token and urllib.parse.urlsplit(url).netloc == self.host:
            headers["authorization"] = "Bearer " + self.token
        return headers

    def open(self, method, url, data=None, content_type=None, headers=None, auth=True, idempotent=True):
        """The response to a request, redirects followed, transient errors (5xx, 429, the network) retried.
        `data` may be a function giving a fresh body (a file streamed from disk, a context manager) for each
        attempt, closed here when its attempt ends, whether cut or answered; `auth=False` (LFS storage) sends
        no token, only `headers`. A request that is not `idempotent` (a commit) is retried only after a 429,
        which the Hub answers before doing anything: after a 5xx or a cut connection it may have been done,
        and a second one would commit twice."""
        attempt = 0
        while True:
            try:
                if not callable(data):
                    return self.open_once(method, url, data, content_type, headers, auth)
                # urllib has sent the whole body once it has an answer: the body is done with either way.
                with data() as body:
                    return self.open_once(method, url, body, content_type, headers, auth)
            except Failure as failure:
                transient = failure.status == 429 or (
                    idempotent and (failure.reason == "Unreachable" or (failure.status or 0) >= 500)
                )
                if not transient:
                    raise
                if attempt >= RETRIES:
                    raise Failure(failure.reason, "%s (%d attempts)" % (failure.detail, attempt + 1), failure.status) from None
                attempt += 1
                pause(attempt)

    def open_once(self, method, url, data, content_type, extra=None, auth=True):
        # The Hub's digest of an LFS file is on its redirect to the CDN, whose own ETag is another.
        linked = None
        for _ in range(MAX_REDIRECTS):
            headers = self.headers_for(url, auth)
            headers.update(extra or {})
            if content_type is not None:
                headers["content-type"] = content_type
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                response = OPENER.open(request, timeout=60)
            except urllib.error.HTTPError as e:
                if e.code in (301, 302, 303, 307, 308) and e.headers.get("location"):
                    linked = linked or e.headers.get("x-linked-etag") or e.headers.get("etag")
                    url = urllib.parse.urljoin(url, e.headers["location"])
                    e.close()
                    continue
                # The Hub's answer is the Hub's to explain; a CDN's or storage's (after a redirect, sent
                # without the token) is never the token's fault.
                hub = auth and urllib.parse.urlsplit(url).netloc == self.host
                raise (self.failure(e) if hub else self.storage_failure(e)) from None
            except (urllib.error.URLError, OSError) as e:
                host = urllib.parse.urlsplit(url).netloc
                raise Failure("Unreachable", "the network failed: cannot reach %s: %s" % (host, getattr(e, "reason", e))) from None
            response.linked_etag = linked
            return response
        raise Failure("Failed", "too many redirects for %s" % url)

    def failure(self, error):
        code = error.code
        body = error.read(4096).decode("utf-8", "replace")
        error.close()
        try:
            message = json.loads(body).get("error", body)
        except ValueError:
            message = body
        message = (error.headers.get("x-error-message") or message or "").strip()
        what = "%s %s" % (self.repo_type, self.repo)
        if code in (401, 403):
            return Failure(
                "Unauthorized",
                "the Hub refused access to %s (HTTP %d: %s): the token lacks access to it, or none was given" % (what, code, message),
                code,
            )
        if code == 404:
            kind = error.headers.get("x-error-code") or "NotFound"
            return Failure("NotFound", "no such %s, revision or path (HTTP 404, %s: %s)" % (what, kind, message), code)
        return Failure("HubError", "the Hub answered HTTP %d: %s" % (code, message), code)

    def storage_failure(self, error):
        """A refusal of the LFS storage (an upload URL of the batch answer: no token, its own error bodies)."""
        code = error.code
        body = error.read(4096).decode("utf-8", "replace").strip()
        error.close()
        return Failure("HubError", "the LFS storage of %s %s answered HTTP %d: %s" % (self.repo_type, self.repo, code, body), code)

    def api(self, kind, revision, path=""):
        quoted = "/" + urllib.parse.quote(path, safe="") if path else ""
        rev = urllib.parse.quote(revision, safe="")
        return "%s/api/%ss/%s/%s/%s%s" % (self.endpoint, self.repo_type, self.repo, kind, rev, quoted)

    def resolve_url(self, revision, path):
        prefix = "" if self.repo_type == "model" else self.repo_type + "s/"
        return "%s/%s%s/resolve/%s/%s" % (
            self.endpoint,
            prefix,
            self.repo,
            urllib.parse.quote(revision, safe=""),
            urllib.parse.quote(path),
        )


def read_json(response):
    with response:
        return json.loads(response.read().decode("utf-8"))


def next_link(response):
    for part in (response.headers.get("link") or "").split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


def list_files(hub, revision, path):
    """The files to fetch, as (path in repo, size): one file, or a folder's whole tree."""
    if path:
        body = urllib.parse.urlencode({"paths": path, "expand": "false"}).encode()
        infos = read_json(hub.open("POST", hub.api("paths-info", revision), body, "application/x-www-form-urlencoded"))
        if not infos:
            raise Failure("NotFound", "no path %r in %s %s at %s" % (path, hub.repo_type, hub.repo, revision), 404)
        if infos[0].get("type") == "file":
            return [(infos[0]["path"], infos[0].get("size"))], True
    files = []
    url = hub.api("tree", revision, path) + "?recursive=true&expand=false"
    while url is not None:
        response = hub.open("GET", url)
        link = next_link(response)
        files.extend((e["path"], e.get("size")) for e in read_json(response) if e.get("type") == "file")
        url = urllib.parse.urljoin(url, link) if link else None
    return files, False


def target_of(dest, base, repo_path, single):
    if single:
        # Into a folder (an existing one, or one named with a trailing slash) under the file's own name.
        if dest.endswith("/") or os.path.isdir(dest):
            return os.path.join(os.path.abspath(dest), repo_path.rsplit("/", 1)[-1])
        return os.path.abspath(dest)
    rel = repo_path[len(base) :].lstrip("/") if base else repo_path
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise Failure("Failed", "the Hub listed an unsafe path %r" % repo_path)
    return os.path.join(os.path.abspath(dest), *parts)


def temp_name(target):
    return os.path.join(os.path.dirname(target), ".%s.hf-sandbox-%d.part" % (os.path.basename(target), os.getpid()))


def open_temp(target):
    """A file for the new content that vanishes if this process dies, however (O_TMPFILE: an interrupted
    transfer is killed with SIGKILL), else a named temp beside the target."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(os.path.dirname(target), os.O_TMPFILE | os.O_WRONLY, 0o644), None
        except OSError:
            pass
    name = temp_name(target)
    return os.open(name, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644), name


def commit_temp(fd, name, target):
    """Gives the complete content its name: linked beside the target, then renamed over it."""
    os.fsync(fd)
    if name is None:
        name = temp_name(target)
        if os.path.lexists(name):
            os.unlink(name)
        # An explicit src_dir_fd makes CPython call linkat(AT_SYMLINK_FOLLOW), which links the open file
        # itself; plain link() would try to link the /proc symlink.
        dir_fd = os.open(os.path.dirname(target), os.O_RDONLY)
        try:
            os.link("/proc/self/fd/%d" % fd, name, src_dir_fd=dir_fd, follow_symlinks=True)
        finally:
            os.close(dir_fd)
    os.replace(name, target)


# A connection cut mid-body: the download resumes where it stopped. socket.timeout is not a TimeoutError
# before Python 3.10.
CUT = (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)


def digest_for(etag, size):
    """A hash to check the content against the Hub's ETag, and the digest it must give; (None, None) when the
    ETag is not one of the Hub's (an LFS file's sha256, a regular file's git blob sha1) but, say, a CDN's."""
    etag = (etag or "").strip().strip('"').lower()
    if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        return hashlib.sha256(), etag
    if len(etag) == 40 and all(c in "0123456789abcdef" for c in etag) and size is not None:
        git = hashlib.sha1()
        git.update(b"blob %d\0" % size)
        return git, etag
    return None, None


def fetch(hub, revision, repo_path, target, progress, size):
    """One file into `target`, atomically; returns the commit the Hub served it from. A download cut mid-way
    resumes from the bytes already written (a Range request; a server that answers 200 instead sends it
    all again); it fails after RETRIES cuts in a row that brought no byte beyond the most it ever had, so
    a long download with sporadic cuts goes on as long as each attempt gets further. The whole is then
    checked against the size listed and the digest the Hub's ETag gives."""
    started = progress["bytes"]
    url = hub.resolve_url(revision, repo_path)
    fd, name = open_temp(target)
    written, cuts, commit, check = 0, 0, None, (None, None)
    # The most bytes kept so far: a cut after getting beyond it starts the count of cuts again.
    furthest = 0
    try:
        while True:
            response = hub.open("GET", url, headers={"range": "bytes=%d-" % written} if written else None)
            host = urllib.parse.urlsplit(response.geturl() or url).netloc
            try:
                with response:
                    if written == 0 or response.status != 206:
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        written = 0
                        check = digest_for(getattr(response, "linked_etag", None) or response.headers.get("etag"), size)
                    commit = response.headers.get("x-repo-commit") or commit
                    while True:
                        chunk = response.read1(CHUNK)
                        if not chunk:
                            break
                        write_all(fd, chunk, target)
                        if check[0] is not None:
                            check[0].update(chunk)
                        written += len(chunk)
                        progress["bytes"] = started + written
                        emit({"file": repo_path, "bytes": progress["bytes"], "total": progress["total"]})
                if size is None or written >= size:
                    break
                raise http.client.IncompleteRead(b"", size - written)
            except CUT as e:
                cuts = 1 if written > furthest else cuts + 1
                furthest = max(furthest, written)
                if cuts > RETRIES:
                    raise Failure(
                        "Unreachable",
                        "the network failed: the download of %s from %s was cut %d times in a row without getting further (%d of %s bytes received; the last: %s)"
                        % (repo_path, host, cuts, written, "?" if size is None else size, str(e) or type(e).__name__),
                    ) from None
                pause(cuts)
        if size is not None and written != size:
            raise Failure("HubError", "%s: the Hub listed %d bytes but sent %d" % (repo_path, size, written))
        if check[0] is not None and check[0].hexdigest() != check[1]:
            raise Failure("HubError", "%s: the content received does not match the Hub's digest %s" % (repo_path, check[1]))
        commit_temp(fd, name, target)
        return commit
    except BaseException:
        if name is not None and os.path.lexists(name):
            os.unlink(name)
        raise
    finally:
        os.close(fd)


def write_all(fd, data, target):
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise Failure("Failed", "cannot write %s: %s" % (target, e)) from None


def from_hub(spec, token):
    hub = Hub(spec["endpoint"], token, spec["repo"], spec["repoType"])
    revision = spec.get("revision") or "main"
    path = (spec.get("path") or "").strip("/")
    files, single = list_files(hub, revision, path)
    if not files and not single:
        raise Failure("NotFound", "nothing under %r in %s %s at %s" % (path, hub.repo_type, hub.repo, revision), 404)
    total = sum(size or 0 for _, size in files) if all(size is not None for _, size in files) else None
    progress = {"bytes": 0, "total": total}
    written, commit = [], None
    for repo_path, size in files:
        target = target_of(spec["dest"], path, repo_path, single)
        commit = fetch(hub, revision, repo_path, target, progress, size) or commit
        written.append(target)
    emit({"done": True, "commit": commit, "files": written, "bytes": progress["bytes"]})


def local_files(src, path):
    """The files to upload, as (absolute path, path in repo): one file, or a directory's tree (links skipped)."""
    src = os.path.abspath(src)
    if os.path.isfile(src):
        in_repo = path + os.path.basename(src) if path == "" or path.endswith("/") else path
        return [(src, in_repo.strip("/"))]
    if not os.path.isdir(src):
        raise Failure("Failed", "%s is neither a file nor a directory in the sandbox" % src)
    base = path.strip("/")
    found = []
    for root, _dirs, names in os.walk(src):
        for name in names:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            found.append((full, base + "/" + rel if base else rel))
    if not found:
        raise Failure("Failed", "%s has no files to upload" % src)
    return sorted(found, key=lambda f: f[1])


def upload_modes(hub, revision, files):
    """The Hub's choice for each file: `regular` (base64 in the commit) or `lfs`."""
    modes = {}
    for start in range(0, len(files), 256):
        chunk = []
        for full, in_repo in files[start : start + 256]:
            with open(full, "rb") as f:
                sample = f.read(512)
            chunk.append({"path": in_repo, "sample": base64.b64encode(sample).decode("ascii"), "size": os.path.getsize(full)})
        body = json.dumps({"files": chunk}).encode()
        answer = read_json(hub.open("POST", hub.api("preupload", revision), body, "application/json"))
        modes.update({f["path"]: f["uploadMode"] for f in answer.get("files", [])})
    return modes


LFS_HEADERS = {"accept": "application/vnd.git-lfs+json", "content-type": "application/vnd.git-lfs+json"}


def sha256_of(full):
    digest = hashlib.sha256()
    with open(full, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class Slice:
    """`size` bytes of a file from `offset`, read in blocks as http.client sends them, with progress. The one
    who makes it closes it (`with`, in `Hub.open`): an attempt cut mid-body never reads it to the end."""

    def __init__(self, full, offset, size, on_read):
        self.file = open(full, "rb")
        self.file.seek(offset)
        self.left = size
        self.on_read = on_read

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        block = self.file.read(n)
        self.left -= len(block)
        if block:
            self.on_read(len(block))
        return block

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def lfs_batch(hub, revision, objects, names):
    """The batch API's answer for the objects (`{oid, size}`) as a map oid -> object; a refused object fails,
    named by its path in the repo (`names`: oid -> path)."""
    prefix = "" if hub.repo_type == "model" else hub.repo_type + "s/"
    url = "%s/%s%s.git/info/lfs/objects/batch" % (hub.endpoint, prefix, hub.repo)
    body = {"operation": "upload", "transfers": ["basic", "multipart"], "objects": objects, "hash_algo": "sha256"}
    body["ref"] = {"name": revision}
    answer = read_json(hub.open("POST", url, json.dumps(body).encode(), headers=LFS_HEADERS))
    found = {}
    for obj in answer.get("objects") or []:
        error = obj.get("error")
        if error:
            # 413/422 is the Hub refusing the object itself (above its size limit).
            code = error.get("code")
            what = "%s (%s bytes, LFS object %s)" % (names.get(obj.get("oid"), "?"), obj.get("size"), obj.get("oid"))
            if code in (413, 422):
                raise Failure("TooLarge", "the Hub refused %s as too large: %s (%s)" % (what, error.get("message"), code), code)
            raise Failure("HubError", "the Hub refused %s: %s (%s)" % (what, error.get("message"), code), code)
        found[obj.get("oid")] = obj
    return found


def lfs_upload(hub, obj, full, size, count):
    """One LFS object to the storage the batch answer names (nothing when it has no `actions`: the Hub has it)."""
    actions = obj.get("actions")
    if not actions:
        count(size)
        return
    upload = actions["upload"]
    header = dict(upload.get("header") or {})
    chunk_size = header.pop("chunk_size", None)
    if chunk_size is None:
        put_part(hub, upload["href"], full, 0, size, header, count)
    else:
        chunk_size = int(chunk_size)
        parts = [url for _, url in sorted((int(k), v) for k, v in header.items() if k.isdigit())]
        if len(parts) != -(-size // chunk_size):
            raise Failure("HubError", "the LFS batch answer has %d part URLs for %d bytes in chunks of %d" % (len(parts), size, chunk_size))
        etags = []
        for i, url in enumerate(parts):
            etag = put_part(hub, url, full, i * chunk_size, min(chunk_size, size - i * chunk_size), {}, count)
            if not etag:
                raise Failure("HubError", "the LFS storage gave no etag for part %d" % (i + 1))
            etags.append({"partNumber": i + 1, "etag": etag})
        done = json.dumps({"oid": obj["oid"], "parts": etags}).encode()
        hub.open("POST", upload["href"], done, headers=LFS_HEADERS, auth=False).close()
    verify = actions.get("verify")
    if verify:
        body = json.dumps({"oid": obj["oid"], "size": size}).encode()
        extra = dict(verify.get("header") or {}, **{"content-type": "application/json"})
        hub.open("POST", verify["href"], body, headers=extra).close()


def put_part(hub, url, full, offset, size, header, count):
    """PUTs bytes of the file, streamed, with only the storage's own headers; the part's etag. Each attempt
    reads a fresh `Slice`, which `Hub.open` closes when the attempt ends."""
    counted = [0]

    def body():
        # A retried attempt counts its bytes again from where the failed one started.
        count(-counted[0])
        counted[0] = 0

        def on_read(n):
            counted[0] += n
            count(n)

        return Slice(full, offset, size, on_read)

    headers = dict(header, **{"content-length": str(size)})
    with hub.open("PUT", url, body, headers=headers, auth=False) as response:
        response.read()
        return response.headers.get("etag")


def to_hub(spec, token):
    hub = Hub(spec["endpoint"], token, spec["repo"], spec["repoType"])
    revision = spec.get("revision") or "main"
    files = local_files(spec["src"], spec.get("path") or "")
    modes = upload_modes(hub, revision, files)
    total = sum(os.path.getsize(full) for full, _ in files)
    progress = {"bytes": 0, "file": None}

    def count(n):
        if n == 0:
            return
        progress["bytes"] += n
        emit({"file": progress["file"], "bytes": progress["bytes"], "total": total})

    header = {"summary": spec.get("message") or "Upload with hf-sandbox", "description": ""}
    lines = [json.dumps({"key": "header", "value": header})]
    large = [(full, in_repo, os.path.getsize(full)) for full, in_repo in files if modes.get(in_repo) == "lfs"]
    if large:
        oids = {full: sha256_of(full) for full, _, _ in large}
        names = {oids[full]: in_repo for full, in_repo, _ in large}
        objects = lfs_batch(hub, revision, [{"oid": oids[full], "size": size} for full, _, size in large], names)
        for full, in_repo, size in large:
            progress["file"] = in_repo
            if oids[full] not in objects:
                raise Failure("HubError", "the LFS batch answer has no entry for %s (%s)" % (in_repo, oids[full]))
            lfs_upload(hub, objects[oids[full]], full, size, count)
            lines.append(json.dumps({"key": "lfsFile", "value": {"path": in_repo, "algo": "sha256", "oid": oids[full], "size": size}}))
    for full, in_repo in files:
        if modes.get(in_repo) == "lfs":
            continue
        with open(full, "rb") as f:
            content = f.read()
        lines.append(json.dumps({"key": "file", "value": {"content": base64.b64encode(content).decode(), "path": in_repo, "encoding": "base64"}}))
        progress["file"] = in_repo
        count(len(content))
    body = ("\n".join(lines) + "\n").encode()
    answer = read_json(hub.open("POST", hub.api("commit", revision), body, "application/x-ndjson", idempotent=False))
    emit({"done": True, "commit": answer.get("commitOid"), "commitUrl": answer.get("commitUrl"), "files": [p for _, p in files], "bytes": progress["bytes"]})


def main():
    global PAUSE_BASE
    spec = json.loads(sys.argv[1])
    PAUSE_BASE = float(spec.get("retryBase", PAUSE_BASE))
    token = os.environ.pop("HF_TOKEN", "") or None
    try:
        if spec["op"] == "fromHub":
            from_hub(spec, token)
        elif spec["op"] == "toHub":
            to_hub(spec, token)
        else:
            raise Failure("Failed", "unknown operation %r" % spec["op"])
    except Failure as failure:
        emit({"error": {"reason": failure.reason, "status": failure.status, "detail": failure.detail}})
        sys.exit(1)
    except OSError as e:
        # The sandbox's own side (a folder it cannot create, a file it cannot read): said as the other
        # failures are, rather than as a traceback on stderr.
        emit({"error": {"reason": "Failed", "status": None, "detail": str(e)}})
        sys.exit(1)


if __name__ == "__main__":
    main()
