"""The port proxy: `ANY /v1/proxy/{port}/{path...}` reaches a server listening on 127.0.0.1:{port} in the
sandbox, wire-compatible with huggingface/sandbox-server's route of the same name (src/proxy.rs): the
request head is replayed with the `/v1/proxy/{port}` prefix stripped and the query verbatim, then bytes
move both ways as they come, so streamed bodies, chunked and SSE responses and WebSocket upgrades all
pass; the server in the sandbox does the handshakes, the proxy only moves bytes.

Where it differs from HF's, on purpose: a chunked request body is taken (HF's answers 411), the sandbox
token is dropped from `Authorization` as well as from `X-Sandbox-Token` (this server accepts it in
either), a port that is not a number is a 400, and a plain request's connection is closed after its
response (`Connection: close` both ways: the connection then belongs to one request, so the next request
on it can never reach the backend with its `/v1/proxy/...` prefix still on)."""

import socket
import threading
import time

from .common import FILE_CHUNK, SCOPE, SOCKET_TIMEOUT, ClientGone, HttpError, bad_request, bearer, is_sandbox_token
from .httpframe import parse_decimal

CONNECT_TIMEOUT = 5.0  # connecting to loopback: a listener answers at once, a full backlog does not
RESPONSE_HEAD_MAX = 65536  # bytes of the backend's response head we parse (status line + headers)
PUMP_JOIN = 5.0  # waiting for the client-to-backend thread once both sockets are shut down
# Hop-by-hop fields (RFC 9110 §7.6.1): for one connection only, never passed on a plain request.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"))


class Proxied(object):
    """Live proxied connections per port, for GET /v1/ports/{port} (and tests: back to 0 when done)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, port, n):
        with self.lock:
            left = self.counts.get(port, 0) + n
            if left:
                self.counts[port] = left
            else:
                self.counts.pop(port, None)

    def count(self, port):
        with self.lock:
            return self.counts.get(port, 0)


PROXIED = Proxied()


def parse_port(text, route):
    """The port of a /v1/proxy/{port} or /v1/ports/{port} route: 1 to 65535 in ASCII digits, else 400."""
    port = parse_decimal(text, 65536)
    if not port:
        shown_text = text if len(text) <= 20 else text[:20] + "..."
        raise bad_request("the port in %s must be an integer from 1 to 65535, got %r" % (route, shown_text))
    return port


def proxy_target(route):
    """/v1/proxy/{port}[/{path...}] -> (port text, path to forward). A bare /v1/proxy/{port} is `/`."""
    port, slash, rest = route[len("/v1/proxy/") :].partition("/")
    return port, "/" + rest if slash else "/"


def connection_tokens(headers):
    return set(t.strip().lower() for t in ",".join(headers.get_all("Connection") or []).split(",") if t.strip())


def is_upgrade(headers):
    return headers.get("Upgrade") is not None and "upgrade" in connection_tokens(headers)


def carries_token(value):
    """Whether an Authorization value is `Bearer <the sandbox token>` (then it is ours, never forwarded)."""
    credential = bearer(value)
    if credential is None:
        return False
    sandbox = SCOPE.sandbox  # host mode: the sandbox's token, or the host's (SBX_HOST_TOKEN_ACTS)
    return is_sandbox_token(credential) or (sandbox is not None and sandbox.accepts(credential))


def request_head(method, target, headers, upgrade, chunked):
    """The head replayed to the backend. A plain request loses its hop-by-hop fields and asks for
    `Connection: close`; an upgrade keeps `Connection`/`Upgrade` (the backend does the handshake).
    `Expect` was answered here already (100 Continue). The body's framing is the one this server read:
    a chunked body loses any `Content-Length` beside it (two framings are how requests get smuggled)."""
    dropped = {"expect"} if upgrade else HOP_BY_HOP | connection_tokens(headers) | {"expect"}
    if chunked:
        dropped = dropped | {"content-length"}
    lines = ["%s %s HTTP/1.1" % (method, target)]
    for name, value in headers.items():
        low = name.lower()
        if low == "x-sandbox-token" or low in dropped or (low == "authorization" and carries_token(value)):
            continue
        lines.append("%s: %s" % (name, value))
    if not upgrade:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response_head(backend, port, data=b""):
    """(head bytes, bytes read past it) of the backend's response, `data` being what was already read;
    HttpError 502 when there is none."""
    while b"\r\n\r\n" not in data:
        if len(data) > RESPONSE_HEAD_MAX:
            raise HttpError(502, "the server on port %d sent a response head over 64 KiB" % port, "bad_gateway")
        try:
            chunk = backend.recv(65536)
        except OSError as e:
            raise HttpError(502, "the server on port %d failed before answering: %s" % (port, e), "bad_gateway")
        if not chunk:
            message = "the server on port %d closed the connection without answering (is it an HTTP server?)"
            raise HttpError(502, message % port, "bad_gateway")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def response_status(head):
    parts = head.split(b" ", 2)
    status = parse_decimal(parts[1].decode("latin-1"), 1000) if len(parts) > 1 else None
    return status if status is not None and parts[0].startswith(b"HTTP/1.") else None


def closing_head(head):
    """A plain response's head with its hop-by-hop fields replaced by `Connection: close`."""
    lines = head[:-4].split(b"\r\n")
    named = set()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection":
            named |= set(t.strip().lower() for t in value.split(b","))
    drop = set(h.encode("ascii") for h in HOP_BY_HOP) | named
    kept = [lines[0]] + [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in drop]
    return b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n"


def shut(sock, how=socket.SHUT_RDWR):
    try:
        sock.shutdown(how)
    except OSError:
        pass


def content_length(head):
    """The Content-Length of a response head, or None (absent, repeated differently or not a number)."""
    values = set()
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            values.add(value.strip())
    if len(values) != 1:
        return None
    return parse_decimal(values.pop().decode("latin-1"), 2**63)


class Splice(object):
    """One proxied request: the handler, the backend socket, and whether the response switched protocols
    (then the client's bytes keep flowing to the backend after the request body)."""

    def __init__(self, handler, backend, port, upgrade):
        self.handler = handler
        self.backend = backend
        self.port = port
        self.upgrade = upgrade
        self.switched = False
        self.decided = threading.Event()  # the response's head is in (or the relay ended): switched is known
        self.last = time.monotonic()  # the last byte either way

    def moved(self):
        self.last = time.monotonic()

    def quiet(self):
        """Whether neither side has sent a byte for SOCKET_TIMEOUT: then the splice is dropped. One
        side alone may stay silent longer (a WebSocket that only pushes, a download)."""
        return time.monotonic() - self.last >= SOCKET_TIMEOUT

    def client_read(self):
        """The client's next bytes (b"" at its end), waiting as long as the other side moves."""
        while True:
            try:
                data = self.handler.rfile.read1(65536)
            except socket.timeout:
                if self.quiet():
                    raise
                # socket.SocketIO refuses any read after a timeout unless told otherwise; ours may go on.
                self.handler.reader._timeout_occurred = False
                continue
            self.moved()
            return data

    # ---- client -> backend (the pump thread) ----

    def pump(self):
        try:
            self.forward_body()
            if self.upgrade:
                self.decided.wait()
                if self.switched:
                    self.copy_client()
            else:
                self.watch_client()
        except (ClientGone, HttpError, OSError, ValueError):
            # The client went (or sent a body that does not frame): the backend must stop waiting too.
            shut(self.backend)

    def forward_body(self):
        body = self.handler._body
        while not body.done:
            data = body.read(FILE_CHUNK)
            if body.chunked:
                self.backend.sendall(b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n")
            elif data:
                self.backend.sendall(data)

    def watch_client(self):
        """A plain request's body is sent: the client has nothing more to say (it was told the connection
        closes), but it may leave, and a backend in a quiet stream (SSE) would not notice: its close ends
        the backend's connection. Bytes it sends anyway are dropped."""
        while self.client_read():
            pass
        shut(self.backend)

    def copy_client(self):
        """After a 101: every byte the client sends (first what is already buffered) goes to the backend
        until the client closes; then the backend is shut down both ways (a WebSocket ends with frames,
        not with a half-closed TCP connection)."""
        while True:
            data = self.client_read()
            if not data:
                break
            self.backend.sendall(data)
        shut(self.backend)

    # ---- backend -> client (the handler's thread) ----

    def relay(self):
        head, rest = read_response_head(self.backend, self.port)
        status = response_status(head)
        while status is not None and 100 <= status < 200 and status != 101:
            self.handler.send_bytes(head)  # 100 Continue, 103 Early Hints: passed on as they are
            head, rest = read_response_head(self.backend, self.port, rest)
            status = response_status(head)
        if status is None:
            raise HttpError(502, "the server on port %d sent no HTTP/1.x response" % self.port, "bad_gateway")
        if not self.upgrade:
            self.handler.send_bytes(closing_head(head) + rest)
            return self.copy_backend(None)
        self.switched = status == 101
        self.decided.set()
        self.handler.send_bytes(head + rest)
        # A refused upgrade keeps its connection alive (the request did not ask to close it): its end is
        # its Content-Length, when it has one, not the backend's close.
        left = None if self.switched else content_length(head)
        self.copy_backend(None if left is None else left - len(rest))

    def copy_backend(self, left):
        """The backend's bytes to the client until it closes (or `left` more bytes, when known)."""
        connection = self.handler.connection
        while left is None or left > 0:
            try:
                data = self.backend.recv(65536 if left is None else min(65536, left))
            except socket.timeout:
                if self.quiet():
                    break
                continue
            except OSError:
                break
            if not data:
                break
            self.moved()
            self.handler.send_bytes(data)
            if left is not None:
                left -= len(data)
        shut(connection, socket.SHUT_WR)  # the response is complete: the client reads the end


def connect_backend(port):
    if SCOPE.sandbox is not None:
        from .host import connect_socket  # host mode: $SBX_PROXY_DIR/<port>.sock

        return connect_socket(SCOPE.sandbox, port)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except ConnectionRefusedError:
        message = (
            "nothing is listening on port %d in the sandbox (127.0.0.1:%d refused the connection): start the "
            "server first, or wait until GET /v1/ports/%d says it is listening"
        )
        raise HttpError(502, message % (port, port, port), "port_closed")
    except OSError as e:
        raise HttpError(502, "cannot reach port %d in the sandbox: %s" % (port, e), "bad_gateway")
    sock.settimeout(SOCKET_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return sock


class ProxyRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_proxy(self, port_text, forward_path, query):
        port = parse_port(port_text, "/v1/proxy/{port}/...")
        upgrade = is_upgrade(self.headers)
        backend = connect_backend(port)
        splice = Splice(self, backend, port, upgrade)
        target = forward_path + ("?" + query if query else "")
        self.close_connection = True  # the connection is this request's (see the module docs)
        # A spliced connection may idle as long as any (a quiet WebSocket), not only --body-timeout.
        self.reader.idle, self.reader.span, self.reader.deadline = SOCKET_TIMEOUT, None, None
        PROXIED.add(port, 1)
        pump = None
        try:
            backend.sendall(request_head(self.command, target, self.headers, upgrade, self._body.chunked))
            pump = threading.Thread(target=splice.pump, name="proxy-pump", daemon=True)
            pump.start()
            splice.relay()
        except OSError as e:
            if not self._started:
                raise HttpError(502, "the connection to port %d failed: %s" % (port, e), "bad_gateway")
        finally:
            splice.decided.set()
            shut(backend)
            if pump is not None:
                shut(self.connection, socket.SHUT_RD)  # unblocks a pump still reading the client
                pump.join(PUMP_JOIN)
            backend.close()
            PROXIED.add(port, -1)
            self._body = None  # forwarded (or abandoned with the connection): nothing to discard
