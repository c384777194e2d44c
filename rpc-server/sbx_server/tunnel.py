"""Tunnel mode (--tunnel): the supervisor thread that keeps a cloudflared quick tunnel up. Imported
only when the server runs with --tunnel."""

import os
import shutil
import threading

from .common import _exit_text, format_exc, log, request_shutdown
from .tunnel_config import TUNNEL_BACKOFF_CAP, TUNNEL_EXIT, TunnelFailed, TunnelStopped, _plural, _stderr_line


from .tunnel_binary import BinaryDownload, BinaryLookup
from .tunnel_process import CloudflaredProcess


class Tunnel(BinaryLookup, BinaryDownload, CloudflaredProcess):
    """The supervisor thread of --tunnel mode. Every wait is on `stop`, so a
    server shutdown ends it within one poll interval; the cloudflared it runs
    is in PROCS like any command, so kill_everything() ends that too."""

    def __init__(self, config, origin):
        self.config = config
        self.origin = origin  # http://127.0.0.1:PORT
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.scratch = set()  # temp HOME dirs and partial downloads to remove at shutdown

    def start(self):
        threading.Thread(target=self.run, name="tunnel", daemon=True).start()

    def run(self):
        try:
            self.supervise(self.find_binary())
        except TunnelStopped:
            pass
        except TunnelFailed as e:
            if not self.stop.is_set():
                self.give_up(str(e))
        except Exception:
            if not self.stop.is_set():
                log("tunnel supervisor crashed:\n%s" % format_exc())
                self.give_up("internal error in the tunnel supervisor (traceback above)")

    def give_up(self, reason):
        """The server's own tunnel cannot be kept up: without it nobody reaches the server, so it stops."""
        _stderr_line("hf-sandbox: tunnel failed: " + reason)
        request_shutdown("tunnel failed", TUNNEL_EXIT)

    def sleep(self, seconds):
        if self.stop.wait(max(0.0, seconds)):
            raise TunnelStopped()

    def cleanup(self):
        """At shutdown, after kill_everything(): remove our temp files."""
        with self.lock:
            paths, self.scratch = self.scratch, set()
        for p in paths:
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass

    def _scratch(self, path, add):
        with self.lock:
            (self.scratch.add if add else self.scratch.discard)(path)

    # ---- 2.-5. run, wait for readiness, announce, restart ----

    def backoff(self, failures):
        import random

        delay = min(TUNNEL_BACKOFF_CAP, self.config.backoff * (2.0 ** min(max(0, failures - 1), 16)))
        return delay * (0.5 + random.random() / 2)  # jitter: never two restarts in lock-step

    def supervise(self, binary):
        restarts = self.config.restarts
        failures = 0
        all_exits = True  # every failure in the current streak was cloudflared exiting
        attempt = 0
        while True:
            attempt += 1
            worked, detail, rc = self.run_once(binary, attempt)
            if worked:
                failures, all_exits = 0, True
                what = "cloudflared %s after the tunnel was ready" % detail
            else:
                failures += 1
                all_exits = all_exits and rc is not None
                if failures > restarts:
                    if all_exits:
                        raise TunnelFailed(
                            "cloudflared exited %s without a working tunnel (last %s); "
                            "its output is above" % (_plural(failures, "time"), _exit_text(rc))
                        )
                    raise TunnelFailed(
                        "cloudflared failed %s without a working tunnel (last: %s); "
                        "its output is above" % (_plural(failures, "time"), detail)
                    )
                what = "cloudflared %s (failure %d of at most %d)" % (detail, failures, restarts + 1)
            delay = self.backoff(failures)
            log("tunnel: %s; restarting it in %.2fs" % (what, delay))
            self.sleep(delay)
