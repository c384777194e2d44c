"""Tunnel mode: one cloudflared run, its readiness (metrics server) and the announced URL."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from .common import HttpError, _exit_text, log
from .proctree import PROCS, kill_group
from .tunnel_config import (
    ANY_HOSTNAME,
    TUNNEL_HOSTNAME,
    TUNNEL_MARKER,
    TUNNEL_POLL,
    TUNNEL_PROBE_TIMEOUT,
    TUNNEL_TERM_GRACE,
    TUNNEL_WATCH,
    TunnelFailed,
    TunnelStopped,
)


def free_loopback_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def metrics_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path, or (None, b"") when
    cloudflared's metrics server is not answering (yet). No proxies."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TUNNEL_PROBE_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536)
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


class CloudflaredProcess(object):
    """A mixin of Tunnel (see tunnel.py): one cloudflared run until it is ready, and its URL."""

    def run_once(self, binary, attempt):
        """One cloudflared run. Returns (worked, detail, exit status or None)."""
        import tempfile

        if self.stop.is_set():
            raise TunnelStopped()
        metrics = free_loopback_port()
        home = tempfile.mkdtemp(prefix="hf-sandbox-cloudflared-home-")
        self._scratch(home, True)
        env = dict(os.environ)
        for name in ("SBX_TOKEN", "HF_SANDBOX_TOKEN"):  # already gone; never let them come back
            env.pop(name, None)
        env["HOME"] = home  # no ~/.cloudflared/config.yaml can interfere
        argv = [
            binary, "tunnel", "--no-autoupdate", "--protocol", "http2", "--no-prechecks",
            "--metrics", "127.0.0.1:%d" % metrics, "--url", self.origin,
        ]
        log("tunnel: starting cloudflared (attempt %d, metrics on 127.0.0.1:%d)" % (attempt, metrics))
        err = sys.stderr.fileno()
        try:
            proc = PROCS.spawn(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, close_fds=True,
                start_new_session=True,
            )
        except HttpError:  # PROCS is closed: the server is shutting down
            shutil.rmtree(home, ignore_errors=True)
            self._scratch(home, False)
            raise TunnelStopped()
        except OSError as e:
            shutil.rmtree(home, ignore_errors=True)
            self._scratch(home, False)
            raise TunnelFailed("cannot run cloudflared %s: %s" % (binary, e.strerror or e))
        killed = False
        try:
            hostname, detail = self.wait_ready(proc, metrics)
            if hostname is None:
                if proc.poll() is None:
                    killed = True
                    self.terminate(proc)
                return False, detail, (None if killed else proc.returncode)
            self.announce(hostname)
            log("tunnel: ready (attempt %d)" % attempt)
            while proc.poll() is None:
                self.sleep(TUNNEL_WATCH)
            return True, "exited (%s)" % _exit_text(proc.returncode), proc.returncode
        finally:
            if not self.stop.is_set():  # at shutdown, kill_everything() owns the process
                if proc.poll() is None:
                    killed = True
                    self.terminate(proc)
                PROCS.reaped(proc, killed)
                shutil.rmtree(home, ignore_errors=True)
                self._scratch(home, False)

    def terminate(self, proc):
        kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + TUNNEL_TERM_GRACE
        while proc.poll() is None and time.monotonic() < deadline:
            self.sleep(0.02)
        if proc.poll() is None:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait_ready(self, proc, metrics):
        """(hostname, None) once /quicktunnel names a valid host and /ready is
        200; (None, why) if cloudflared exits, names a bad host or times out."""
        timeout = self.config.ready_timeout
        deadline = time.monotonic() + timeout
        hostname = None
        while True:
            if proc.poll() is not None:
                return None, "exited (%s) before the tunnel was ready" % _exit_text(proc.returncode)
            if hostname is None:
                status, body = metrics_get(metrics, "/quicktunnel")
                if status == 200:
                    try:
                        value = json.loads(body.decode("utf-8")).get("hostname")
                    except (ValueError, AttributeError):
                        value = None
                    if isinstance(value, str) and value:
                        if not self.valid_hostname(value):
                            return None, "reported an unexpected tunnel hostname %r (not announced)" % value[:200]
                        hostname = value
            if hostname is not None and metrics_get(metrics, "/ready")[0] == 200:
                return hostname, None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "was not ready within %gs (SBX_TUNNEL_READY_TIMEOUT)" % timeout
            self.sleep(min(TUNNEL_POLL, remaining))

    def valid_hostname(self, hostname):
        if self.config.allow_any_host:
            return ANY_HOSTNAME.match(hostname) is not None
        return TUNNEL_HOSTNAME.match(hostname) is not None and hostname != "api.trycloudflare.com"

    def announce(self, hostname):
        line = "%s %s\n" % (TUNNEL_MARKER, json.dumps({"url": "https://" + hostname}, separators=(",", ":")))
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except Exception as e:
            log("tunnel: cannot write the tunnel marker to stdout: %s" % e)
