"""Tunnel mode: finding a usable cloudflared, or downloading the pinned release and checking its
checksum."""

import hashlib
import os
import shutil
import signal
import stat
import subprocess

from .common import FILE_CHUNK, HttpError, VERSION, log
from .proctree import PROCS, kill_group
from .tunnel_config import (
    CLOUDFLARED_ARCH,
    CLOUDFLARED_MIN_VERSION,
    CLOUDFLARED_SHA256,
    CLOUDFLARED_VERSION,
    CLOUDFLARED_VERSION_LINE,
    DOWNLOAD_LIMIT,
    DOWNLOAD_TIMEOUT,
    DownloadRetry,
    TUNNEL_TERM_GRACE,
    TunnelFailed,
    TunnelStopped,
    VERSION_PROBE_TIMEOUT,
    _dotted,
)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(FILE_CHUNK)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def usable_dir(path, shared):
    """Create (or accept) a directory we can write, or return False. In a
    shared location (the temp dir) it must also be ours and writable by no one
    else."""
    try:
        os.makedirs(path, 0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not os.access(path, os.W_OK | os.X_OK):
        return False
    if shared and hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        return False  # a shared temp dir someone else prepared: do not trust it
    return True


def _loopback_http(url):
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    except ValueError:
        return False


def download_opener():
    """A urllib opener whose redirects stay on https, as GitHub's do (github.com
    answers 302 to its objects host). Only a download that starts on loopback
    http (an emulated release host) may be redirected to loopback http."""
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = 5

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if not (newurl.startswith("https://") or (_loopback_http(req.full_url) and _loopback_http(newurl))):
                fp.close()
                raise TunnelFailed(
                    "cannot download cloudflared from %s: redirected (HTTP %d) to %s, "
                    "which is not https; refusing to follow it" % (req.full_url, code, newurl[:300])
                )
            return urllib.request.HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(Redirects)


class BinaryLookup(object):
    """A mixin of Tunnel (see tunnel.py): which cloudflared to run."""

    # ---- 1. the binary ----

    def find_binary(self):
        explicit = self.config.binary
        if explicit:
            if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
                raise TunnelFailed("SBX_CLOUDFLARED=%s is not an executable file" % explicit)
            version, why = self.binary_version(explicit)
            if why is not None:
                raise TunnelFailed(
                    "SBX_CLOUDFLARED=%s %s; hf-sandbox needs cloudflared %s or newer: "
                    "point SBX_CLOUDFLARED at a newer one, or unset it to download %s"
                    % (explicit, why, _dotted(CLOUDFLARED_MIN_VERSION), self.config.version)
                )
            log("tunnel: using cloudflared %s %s (SBX_CLOUDFLARED)" % (explicit, version))
            return explicit
        found = shutil.which("cloudflared")
        if found:
            version, why = self.binary_version(found)
            if why is None:
                log("tunnel: using cloudflared %s %s (PATH)" % (found, version))
                return found
            log(
                "tunnel: not using cloudflared %s on PATH: it %s (need %s or newer); downloading %s instead"
                % (found, why, _dotted(CLOUDFLARED_MIN_VERSION), self.config.version)
            )
        return self.download()

    def binary_version(self, binary):
        """(version, None) when `binary --version` names a release new enough
        for our flags, else (None, why). Bounded: a hung binary is killed."""
        argv = [binary, "--version"]
        try:
            proc = PROCS.spawn(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
                start_new_session=True,
            )
        except HttpError:  # PROCS is closed: the server is shutting down
            raise TunnelStopped()
        except OSError as e:
            return None, "cannot be run (%s)" % (e.strerror or e)
        killed = False
        try:
            try:
                out, _ = proc.communicate(timeout=VERSION_PROBE_TIMEOUT)
            except subprocess.TimeoutExpired:
                killed = True
                kill_group(proc.pid, signal.SIGKILL)
                try:
                    proc.communicate(timeout=TUNNEL_TERM_GRACE)
                except subprocess.TimeoutExpired:  # a grandchild outside the group holds the pipe
                    proc.kill()
                    proc.wait()
                return None, "did not answer --version within %gs" % VERSION_PROBE_TIMEOUT
        finally:
            PROCS.reaped(proc, killed)
        text = out.decode("utf-8", "replace").strip()
        first = text.splitlines()[0] if text else ""
        m = CLOUDFLARED_VERSION_LINE.search(text)  # a wrapper may print a warning first
        if m is None:
            shown = first[:120] if first else "nothing"
            return None, "has an unreadable version (--version printed %r, exit status %d)" % (shown, proc.returncode)
        version = tuple(int(x) for x in m.groups())
        if version < CLOUDFLARED_MIN_VERSION:
            return None, "is version %s, older than %s (the first with --no-prechecks)" % (
                _dotted(version), _dotted(CLOUDFLARED_MIN_VERSION),
            )
        return _dotted(version), None

    def cache_dirs(self):
        import tempfile

        xdg = os.environ.get("XDG_CACHE_HOME")
        if xdg and os.path.isabs(xdg):
            yield os.path.join(xdg, "hf-sandbox"), False
        else:
            home = os.path.expanduser("~")
            if os.path.isabs(home):
                yield os.path.join(home, ".cache", "hf-sandbox"), False
        uid = os.getuid() if hasattr(os, "getuid") else 0
        yield os.path.join(tempfile.gettempdir(), "hf-sandbox-cache-%d" % uid), True


class BinaryDownload(object):
    """A mixin of Tunnel (see tunnel.py): the pinned release, downloaded and verified."""

    def download(self):
        import platform

        cfg = self.config
        machine = platform.machine()
        arch = CLOUDFLARED_ARCH.get(machine.lower())
        if arch is None:
            raise TunnelFailed(
                "cloudflared is not on PATH and there is no cloudflared download for "
                "this machine (%s); install cloudflared or set SBX_CLOUDFLARED" % (machine or "unknown")
            )
        expected = cfg.sha256 or CLOUDFLARED_SHA256.get(cfg.version, {}).get(arch)
        if expected is None:
            raise TunnelFailed(
                "no known sha256 for cloudflared %s (linux-%s); refusing to download "
                "it unverified: set SBX_CLOUDFLARED_SHA256 to the digest from that release's notes, or unset "
                "SBX_CLOUDFLARED_VERSION to use %s" % (cfg.version, arch, CLOUDFLARED_VERSION)
            )
        url = "%s/%s/cloudflared-linux-%s" % (cfg.base_url.rstrip("/"), cfg.version, arch)
        name = "cloudflared-%s-linux-%s" % (cfg.version, arch)
        cache = None
        for d, shared in self.cache_dirs():
            if usable_dir(d, shared):
                cache = d
                break
        if cache is None:
            raise TunnelFailed("no writable cache directory for the cloudflared download")
        target = os.path.join(cache, name)
        if os.path.isfile(target):
            try:
                cached = sha256_file(target)
            except OSError:
                cached = None
            if cached == expected:
                os.chmod(target, 0o755)
                log("tunnel: using cached cloudflared %s (sha256 verified)" % target)
                return target
            log("tunnel: cached %s does not match the expected sha256; downloading it again" % target)
        failures = 0
        while True:
            try:
                self.fetch(url, expected, cache, target)
                log("tunnel: downloaded cloudflared %s from %s (sha256 verified)" % (target, url))
                return target
            except DownloadRetry as e:
                failures += 1
                if failures > cfg.restarts:
                    raise TunnelFailed("cannot download cloudflared from %s: %s" % (url, e))
                delay = self.backoff(failures)
                log("tunnel: download of %s failed (%s); retrying in %.2fs" % (url, e, delay))
                self.sleep(delay)

    def fetch(self, url, expected, cache, target):
        import tempfile
        import urllib.error
        import urllib.request

        log("tunnel: downloading cloudflared from %s" % url)
        fd, part = tempfile.mkstemp(prefix=".%s." % os.path.basename(target), suffix=".part", dir=cache)
        self._scratch(part, True)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                req = urllib.request.Request(url, headers={"User-Agent": "hf-sandbox-rpc-server/%s" % VERSION})
                try:
                    resp = download_opener().open(req, timeout=DOWNLOAD_TIMEOUT)
                except urllib.error.HTTPError as e:
                    e.close()
                    if e.code in (408, 429) or e.code >= 500:
                        raise DownloadRetry("HTTP %d" % e.code)
                    raise TunnelFailed(
                        "cannot download cloudflared from %s: HTTP %d" % (url, e.code)
                    )
                except urllib.error.URLError as e:
                    raise DownloadRetry(str(e.reason))
                except (OSError, ValueError) as e:
                    raise DownloadRetry(str(e) or type(e).__name__)
                with resp:
                    while True:
                        if self.stop.is_set():
                            raise TunnelStopped()
                        try:
                            chunk = resp.read(FILE_CHUNK)
                        except Exception as e:  # socket errors, timeouts, IncompleteRead
                            raise DownloadRetry(str(e) or type(e).__name__)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > DOWNLOAD_LIMIT:
                            raise TunnelFailed(
                                "%s is larger than %d bytes; not a cloudflared binary"
                                % (url, DOWNLOAD_LIMIT)
                            )
                        digest.update(chunk)
                        out.write(chunk)
                    # http.client ends a short body quietly: compare with what the host announced.
                    announced = resp.headers.get("Content-Length")
                    if announced is not None and announced.strip().isdigit() and size < int(announced):
                        raise DownloadRetry("the download was cut short (%d of %s bytes)" % (size, announced.strip()))
            got = digest.hexdigest()
            if got != expected:
                raise TunnelFailed(
                    "cloudflared download failed verification: expected sha256 %s, got %s (%s)"
                    % (expected, got, url)
                )
            os.chmod(part, 0o755)  # only now that it is verified
            os.replace(part, target)
        except OSError as e:  # the local side: disk full, permissions
            raise TunnelFailed("cannot save cloudflared in %s: %s" % (cache, e.strerror or e))
        finally:
            try:
                os.unlink(part)
            except OSError:
                pass
            self._scratch(part, False)
