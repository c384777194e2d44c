"""Per-port quick tunnels (POST /v1/ports/{port}/tunnel): one cloudflared per port, supervised like the
server's own tunnel (./tunnel.py: found or downloaded, restarted with backoff, a new URL after each
restart), but announced with the port and never fatal: a port's tunnel that gives up is reported to the
next request for it, and the server carries on."""

import json
import sys
import threading
import time

from .common import log
from .tunnel import Tunnel
from .tunnel_config import PORT_TUNNEL_MARKER


class PortTunnel(Tunnel):
    """The tunnel of one port. `url` is the announced URL while its cloudflared runs (None between a
    death and the next announcement); `failed` is why the supervisor gave up, if it did."""

    def __init__(self, config, port):
        Tunnel.__init__(self, config, "http://127.0.0.1:%d" % port)
        self.port = port
        self.url = None
        self.failed = None
        self.changed = threading.Condition(self.lock)

    def start(self):
        threading.Thread(target=self.run, name="tunnel-%d" % self.port, daemon=True).start()

    def give_up(self, reason):
        """Not fatal: the next request for the port hears why (and may start a new tunnel)."""
        message = "hf-sandbox: tunnel for port %d failed: %s" % (self.port, reason)
        log(message)
        with self.changed:
            self.failed, self.url = message, None
            self.changed.notify_all()
        self.cleanup()

    def run_once(self, binary, attempt):
        try:
            return Tunnel.run_once(self, binary, attempt)
        finally:
            with self.changed:  # this cloudflared is gone: its URL no longer works
                self.url = None

    def announce(self, hostname):
        url = "https://" + hostname
        with self.changed:
            self.url = url
            self.changed.notify_all()
        line = "%s %s\n" % (PORT_TUNNEL_MARKER, json.dumps({"port": self.port, "url": url}, separators=(",", ":")))
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except Exception as e:
            log("tunnel for port %d: cannot write its marker to stdout: %s" % (self.port, e))

    def describe(self):
        with self.changed:
            return self._describe()

    def _describe(self):
        if self.failed is not None:
            return {"port": self.port, "state": "failed", "url": None, "error": self.failed}
        return {"port": self.port, "state": "starting" if self.url is None else "ready", "url": self.url}

    def wait_url(self, deadline):
        """The tunnel's state once it has a URL or has failed, or at `deadline` (time.monotonic())."""
        with self.changed:
            while self.url is None and self.failed is None and not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 1.0))
            return self._describe()
