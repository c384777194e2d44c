"""Routes: the sandbox's ports. `GET /v1/ports/{port}` is the readiness probe a client polls until a
server it started listens (a TCP connect to 127.0.0.1, what the proxy would reach), and
`POST /v1/ports/{port}/tunnel` gives the port a quick tunnel of its own (./tunnel_ports.py, loaded only
then: a server nobody asks for one never imports the tunnel's modules)."""

import os
import socket
import threading
import time

from .common import SCOPE, HttpError, log
from .proxy import PROXIED, parse_port

PROBE_TIMEOUT = 1.0  # a loopback connect: a listener answers at once
TUNNEL_WAIT_DEFAULT = 60.0  # POST /v1/ports/{port}/tunnel waits this long for the URL unless ?wait= says
TUNNEL_WAIT_MAX = 300.0
DEFAULT_MAX_PORT_TUNNELS = 16  # each is a cloudflared process; SBX_MAX_PORT_TUNNELS overrides


def max_port_tunnels():
    raw = os.environ.get("SBX_MAX_PORT_TUNNELS", "")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 1000 else DEFAULT_MAX_PORT_TUNNELS


def listening(port):
    """Whether something accepts TCP connections on 127.0.0.1:port now (host mode: on the sandbox's
    $SBX_PROXY_DIR/<port>.sock)."""
    if SCOPE.sandbox is not None:
        from .host import connect_socket

        try:
            connect_socket(SCOPE.sandbox, port).close()
            return True
        except HttpError:
            return False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT).close()
        return True
    except OSError:
        return False


class PortTunnels(object):
    """The per-port quick tunnels, one per port, started on demand and stopped with the server. `config`
    is the server's tunnel settings when it runs with --tunnel (cli.main), else read from the environment
    at the first request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tunnels = {}
        self.config = None
        self.stopped = False

    def get(self, port):
        with self.lock:
            return self.tunnels.get(port)

    def ports(self):
        """The ports whose tunnel runs (their traffic is activity for the idle timeout)."""
        with self.lock:
            return {port for port, tunnel in self.tunnels.items() if tunnel.failed is None}

    def start(self, port):
        """The port's tunnel, started now unless one runs (a failed one is replaced)."""
        with self.lock:
            if self.stopped:
                raise HttpError(503, "the server is shutting down", "shutting_down")
            tunnel = self.tunnels.get(port)
            if tunnel is not None and tunnel.failed is None:
                return tunnel
            running = sum(1 for t in self.tunnels.values() if t.failed is None)
            limit = max_port_tunnels()
            if running >= limit:
                message = (
                    "too many port tunnels: the server runs at most %d at once (SBX_MAX_PORT_TUNNELS), one per "
                    "port, and they stop only with the server; reach more ports through /v1/proxy/{port}"
                )
                raise HttpError(503, message % limit, "too_many_tunnels")
            from .tunnel_ports import PortTunnel

            tunnel = PortTunnel(self.settings(), port)
            self.tunnels[port] = tunnel
        tunnel.start()
        return tunnel

    def settings(self):
        if self.config is None:
            from .tunnel_config import tunnel_config

            try:
                self.config = tunnel_config(os.environ)
            except SystemExit:  # _fail() said why on stderr (the job's log)
                raise HttpError(500, "invalid tunnel settings in the environment (SBX_CLOUDFLARED*, SBX_TUNNEL_*): "
                                "the server's log says which", "tunnel_config")
        return self.config

    def stop_all(self):
        """At shutdown, before kill_everything(): no supervisor may restart its cloudflared."""
        with self.lock:
            self.stopped = True
            tunnels = list(self.tunnels.values())
        for tunnel in tunnels:
            tunnel.stop.set()
        return tunnels


PORT_TUNNELS = PortTunnels()


def tunnel_state(port):
    tunnel = PORT_TUNNELS.get(port)
    if tunnel is None:
        return {"port": port, "state": "none", "url": None}
    return tunnel.describe()


class PortRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_port(self, port_text):
        port = parse_port(port_text, "/v1/ports/{port}")
        tunnel = PORT_TUNNELS.get(port)
        self.respond_json(
            {
                "port": port,
                "listening": listening(port),
                "connections": PROXIED.count(port),
                "tunnel": None if tunnel is None else tunnel.url,
            }
        )

    def route_port_tunnel_get(self, port_text):
        self.respond_json(tunnel_state(parse_port(port_text, "/v1/ports/{port}/tunnel")))

    def route_port_tunnel(self, port_text):
        """Idempotent per port: the running tunnel's URL, or a new tunnel's once it is ready. Waits up to
        ?wait= seconds (default 60); a tunnel still starting then is a 503 `tunnel_starting` with
        Retry-After (ask again: the same tunnel is still coming up)."""
        port = parse_port(port_text, "/v1/ports/{port}/tunnel")
        if SCOPE.sandbox is not None:
            message = "quick tunnels are not offered in host mode: reach the port through /v1/sandboxes/{id}/proxy/%d/" % port
            raise HttpError(404, message, "not_found")
        wait = self.seconds_param("wait")
        wait = TUNNEL_WAIT_DEFAULT if wait is None else min(TUNNEL_WAIT_MAX, wait)
        tunnel = PORT_TUNNELS.start(port)
        state = tunnel.wait_url(time.monotonic() + wait)
        if state["state"] == "ready":
            return self.respond_json(state)
        if state["state"] == "failed":
            raise HttpError(502, state["error"], "tunnel_failed")
        log("tunnel for port %d: not ready after %gs; the client may ask again" % (port, wait))
        message = "the quick tunnel for port %d is still starting; POST again (it is the same tunnel)" % port
        raise HttpError(503, message, "tunnel_starting", [("Retry-After", "2")])
