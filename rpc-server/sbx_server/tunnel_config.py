"""Tunnel mode's settings (--tunnel): the pinned cloudflared release, the environment it reads and
its help text. Light on purpose: argument parsing needs it; the tunnel itself lives in `tunnel`."""

import re
import sys

from .common import _fail, _flag, _number


# --------------------------------------------------------------------------
# Tunnel mode: supervise a Cloudflare quick tunnel (cloudflared)
# --------------------------------------------------------------------------
#
# With --tunnel the server exposes itself through `cloudflared tunnel --url`.
# The URL is never scraped from cloudflared's logs (its creation-failure lines
# contain https://api.trycloudflare.com): it is read from cloudflared's local
# metrics server (/quicktunnel), announced only once /ready says an edge
# connection is registered, as one marker line on stdout. Imports that only
# this mode needs (urllib.request, tempfile, random, platform) are done lazily
# so the normal start-up costs nothing more.

CLOUDFLARED_VERSION = "2026.9.1"
CLOUDFLARED_BASE_URL = "https://github.com/cloudflare/cloudflared/releases/download"
CLOUDFLARED_SHA256 = {  # from the release notes ("SHA256 Checksums"); there is no .sha256 asset
    "2026.9.1": {
        "amd64": "03f1f25d1cc93b9ad6c60569d44060bc4f17ed97075760ed8cfca4b12dcd68cc",
        "arm64": "3d97437c71848bd8df68041e12436b484a661d95073ea1937f01a845ce88faa3",
    },
}
CLOUDFLARED_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# The first release that accepts every flag run_once() passes: --no-prechecks arrived in 2026.5.0
# (cloudflared RELEASE_NOTES, TUN-10387). An older cloudflared does not fail on an unknown flag: it
# prints its usage and exits 0 (urfave/cli), which would look like a tunnel that keeps dying.
CLOUDFLARED_MIN_VERSION = (2026, 5, 0)
CLOUDFLARED_VERSION_LINE = re.compile(r"^cloudflared version (\d+)\.(\d+)\.(\d+)(?:[ -]|$)", re.M)
CLOUDFLARED_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
VERSION_PROBE_TIMEOUT = 10.0  # `cloudflared --version`; a binary that hangs is not one we can use
TUNNEL_MARKER = "HF_SANDBOX_TUNNEL"
# A port's own tunnel (POST /v1/ports/{port}/tunnel): another marker, so that a client following the
# server's URL never takes a port's for it. `HF_SANDBOX_PORT_TUNNEL {"port":8000,"url":"https://..."}`
PORT_TUNNEL_MARKER = "HF_SANDBOX_PORT_TUNNEL"
TUNNEL_EXIT = 3  # exit status when the tunnel cannot be brought up (or kept up)
TUNNEL_HOSTNAME = re.compile(r"^[a-z0-9-]+\.trycloudflare\.com$")
ANY_HOSTNAME = re.compile(r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")  # SBX_TUNNEL_ALLOW_ANY_HOST: still one sane host
TUNNEL_POLL = 0.2  # readiness polling interval
TUNNEL_PROBE_TIMEOUT = 1.0  # each metrics request
TUNNEL_WATCH = 0.25  # how often a ready cloudflared is checked for an exit
TUNNEL_BACKOFF_CAP = 30.0
TUNNEL_TERM_GRACE = 2.0  # stopping a cloudflared we gave up on: SIGTERM -> SIGKILL
DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_LIMIT = 512 * 1024 * 1024  # a cloudflared is ~40 MB; refuse to fill the disk


class TunnelConfig(object):
    __slots__ = (
        "binary", "base_url", "version", "sha256", "ready_timeout", "backoff", "restarts", "allow_any_host",
    )


class TunnelFailed(Exception):
    """Fatal for tunnel mode; the message is the reason, which the tunnel that gave up puts in its own line."""


class TunnelStopped(Exception):
    """The server is shutting down: the supervisor just stops."""


class DownloadRetry(Exception):
    """A download error worth another try (network, 5xx, 429)."""


def _stderr_line(line):
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _plural(n, word):
    return "%d %s" % (n, word if n == 1 else word + "s")


def _dotted(version):
    return ".".join(str(x) for x in version)


TUNNEL_HELP = """\
tunnel mode (--tunnel or SBX_TUNNEL=1):
  Runs `cloudflared tunnel --url http://127.0.0.1:PORT` (a Cloudflare quick
  tunnel), waits until it is connected, then prints one line on stdout:
    HF_SANDBOX_TUNNEL {"url":"https://<name>.trycloudflare.com"}
  cloudflared is restarted with backoff if it exits (a new marker line follows
  each restart that works); the server exits 3 when it gives up.
  SBX_CLOUDFLARED            path of the cloudflared binary (else PATH, else download);
                             it must report version %s or newer (--version)
  SBX_CLOUDFLARED_VERSION    release to download (default %s; %s or newer)
  SBX_CLOUDFLARED_SHA256     expected sha256 of the download (needed for other versions)
  SBX_CLOUDFLARED_BASE_URL   download base (default %s)
  SBX_TUNNEL_READY_TIMEOUT   seconds to wait for each cloudflared to connect (default 90)
  SBX_TUNNEL_BACKOFF         first restart delay in seconds, doubling up to 30 (default 2)
  SBX_TUNNEL_RESTARTS        consecutive failed attempts retried before giving up (default 5)
  SBX_TUNNEL_ALLOW_ANY_HOST  1: announce any hostname, not only *.trycloudflare.com (tests)

exit status: 0 shutdown, 1 cannot bind, 2 bad configuration, 3 tunnel failure
""" % (
    _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_VERSION, _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_BASE_URL,
)


def tunnel_config(env):
    """Tunnel settings from the environment, validated before anything is bound."""
    c = TunnelConfig()
    c.binary = env.get("SBX_CLOUDFLARED") or None
    c.base_url = env.get("SBX_CLOUDFLARED_BASE_URL") or CLOUDFLARED_BASE_URL
    if not re.match(r"^https?://[^\s]+$", c.base_url):
        _fail("invalid SBX_CLOUDFLARED_BASE_URL %r: expected an http(s) URL" % c.base_url)
    c.version = env.get("SBX_CLOUDFLARED_VERSION") or CLOUDFLARED_VERSION
    release = CLOUDFLARED_RELEASE.match(c.version)
    if release is None:
        _fail("invalid SBX_CLOUDFLARED_VERSION %r: expected a release tag such as %s" % (c.version, CLOUDFLARED_VERSION))
    if tuple(int(x) for x in release.groups()) < CLOUDFLARED_MIN_VERSION:
        _fail(
            "invalid SBX_CLOUDFLARED_VERSION %r: older than %s, the first cloudflared release with every flag "
            "hf-sandbox passes (--no-prechecks); pick %s or newer, or unset it to use %s"
            % (c.version, _dotted(CLOUDFLARED_MIN_VERSION), _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_VERSION)
        )
    c.sha256 = (env.get("SBX_CLOUDFLARED_SHA256") or "").strip().lower() or None
    if c.sha256 is not None and not re.match(r"^[0-9a-f]{64}$", c.sha256):
        _fail("invalid SBX_CLOUDFLARED_SHA256 %r: expected 64 hex digits" % env.get("SBX_CLOUDFLARED_SHA256"))
    c.ready_timeout = 90.0
    if env.get("SBX_TUNNEL_READY_TIMEOUT"):
        c.ready_timeout = _number(env["SBX_TUNNEL_READY_TIMEOUT"], "SBX_TUNNEL_READY_TIMEOUT", float, 0.01)
    c.backoff = 2.0
    if env.get("SBX_TUNNEL_BACKOFF"):
        c.backoff = _number(env["SBX_TUNNEL_BACKOFF"], "SBX_TUNNEL_BACKOFF", float, 0, TUNNEL_BACKOFF_CAP)
    c.restarts = 5
    if env.get("SBX_TUNNEL_RESTARTS"):
        c.restarts = _number(env["SBX_TUNNEL_RESTARTS"], "SBX_TUNNEL_RESTARTS", int, 0, 1000)
    c.allow_any_host = _flag(env.get("SBX_TUNNEL_ALLOW_ANY_HOST"), "SBX_TUNNEL_ALLOW_ANY_HOST")
    return c


def tunnel_origin(host, port):
    """The URL cloudflared forwards to: the address we listen on, with the
    wildcard addresses mapped to loopback (never `localhost`: it may be ::1)."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    if ":" in host:
        return "http://[%s]:%d" % (host, port)
    return "http://%s:%d" % (host, port)
