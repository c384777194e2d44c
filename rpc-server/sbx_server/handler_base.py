"""The connection handler's base: strict HTTP framing over socketserver's stream handler (responses,
errors, lingering close, request bodies) and the request's parameters (query values, JSON bodies).

http.server is not imported: everything of its request handler but the 100 Continue was replaced
here, and importing it costs the server's start a third of its time (http.client, email.*, ssl)."""

import io
import json
import os
import re
import socket
import socketserver
import time

from .common import (
    ClientGone,
    DRAIN_LIMIT,
    FILE_CHUNK,
    HttpError,
    JSON_LIMIT,
    SCOPE,
    SOCKET_TIMEOUT,
    bad_request,
    dumps,
    reason_phrase,
)
from .connections import ConnReader
from .httpframe import Body, CONTENT_LENGTH, WAIT_SECONDS, check_json_depth, framing_error, parse_decimal, parse_head


class BaseHandler(socketserver.StreamRequestHandler):
    timeout = SOCKET_TIMEOUT

    def setup(self):
        socketserver.StreamRequestHandler.setup(self)
        try:  # small responses and events must not wait for Nagle
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        # Reads go through the deadlines of ConnReader; the buffered reader setup() made is replaced.
        self.rfile.close()
        self.reader = ConnReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.trusted = False  # set by the connection's first authorized request

    # ---- framing ----

    def head_bytes(self, status, headers):
        lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status))]
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_bytes(self, data):
        self._started = True
        try:
            self.connection.sendall(data)
        except OSError:  # BrokenPipe, ConnectionReset, timeout
            raise ClientGone()

    def respond(self, status, body, content_type="application/json", headers=()):
        """A complete response in one sendall (one segment with TCP_NODELAY)."""
        hdrs = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        hdrs.extend(headers)
        self.send_bytes(self.head_bytes(status, hdrs) + body)

    def respond_json(self, obj, status=200):
        self.respond(status, dumps(obj))

    def send_error(self, code, message=None, explain=None):
        # For malformed requests: answer JSON like everything else, and drop
        # the connection (it is out of sync).
        self.close_connection = True
        self._linger = True
        if not getattr(self, "request_version", None):
            self.request_version = "HTTP/1.1"
        msg = message or reason_phrase(code, "error")
        try:
            self.respond(code, dumps({"error": msg, "code": "bad_request"}))
        except ClientGone:
            pass

    def parse_request(self):
        """Strict (RFC 9112, see parse_head): http.server's ended the header block at the first line it
        could not read as a header (the rest of the head then became the body)."""
        self.command, self.path, self.request_version, self.requestline = None, "", "HTTP/1.1", ""
        self.close_connection = True
        if self.raw_requestline == b"\r\n":
            return False  # a stray empty line before a request: closed, as it always was
        try:
            self.command, self.path, self.request_version, self.headers = parse_head(self.raw_requestline, self.rfile)
        except HttpError as e:
            self.send_error(e.status, e.message)
            return False
        self.requestline = "%s %s %s" % (self.command, self.path, self.request_version)
        options = [t.strip().lower() for t in ",".join(self.headers.get_all("Connection") or []).split(",")]
        if "close" not in options and (self.request_version == "HTTP/1.1" or "keep-alive" in options):
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if expect.strip().lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def handle_expect_100(self):
        """The interim 100 Continue, byte for byte what http.server sent, before the body is read."""
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    # ---- connection loop ----

    def handle(self):
        self.close_connection = True
        self._linger = False
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except ClientGone:
            return
        except OSError:
            return
        if self._linger:
            self.lingering_close()

    def lingering_close(self):
        """Closing with unread request bytes makes the kernel send RST, which
        can destroy our response before the client reads it. Half-close and
        discard what is still coming, briefly."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    def handle_one_request(self):
        self._started = False
        self._body = None
        self.reader.expect_request(self.trusted)
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (OSError, ValueError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.command = "", ""
            self.request_version = "HTTP/1.1"
            self.send_error(414, "request line too long")
            return
        if not self.parse_request():
            return
        self.reader.expect_body()
        try:
            self.dispatch()
        except ClientGone:
            self.close_connection = True


class RequestMixin(object):
    """The request's body and parameters, for the routes."""

    def open_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings != ["chunked"]:
                raise HttpError(400, "unsupported Transfer-Encoding %r (only chunked)" % te, "bad_request", close=True)
            if self.headers.get("Content-Length") is not None or self.request_version == "HTTP/1.0":
                self.close_connection = True  # ambiguous framing (RFC 9112 §6.1): never reuse
            return Body(self.rfile, None, True)
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return Body(self.rfile, 0, False)
        values = set(v.strip() for v in lengths)
        value = values.pop()
        if values or not re.match(CONTENT_LENGTH, value):
            raise framing_error("invalid Content-Length: it must be one number of at most 18 ASCII digits")
        return Body(self.rfile, int(value), False)

    def discard_body(self):
        body = self._body
        if body is None or body.done:
            return
        try:
            if body.drain(DRAIN_LIMIT):
                return
        except HttpError:
            pass
        self.close_connection = True
        self._linger = True

    # ---- query helpers ----

    def param(self, name, required=True):
        values = self.query.get(name)
        if not values:
            if required:
                raise bad_request("missing query parameter `%s`" % name)
            return None
        return values[0]

    def path_param(self, name="path"):
        p = self.param(name)
        if not p:
            raise bad_request("query parameter `%s` is empty" % name)
        if "\0" in p:
            raise bad_request("query parameter `%s` contains a NUL character" % name)
        sandbox = SCOPE.sandbox
        return os.path.abspath(p) if sandbox is None else sandbox.resolve(p)

    def int_param(self, name, default=None):
        """A byte offset, length or size: what the OS takes as an off_t, so below 2^63."""
        v = self.param(name, required=False)
        if v is None:
            return default
        value = parse_decimal(v, 2**63)
        if value is None:
            message = "query parameter `%s` must be a non-negative integer below 2^63 in ASCII digits, got %r"
            raise bad_request(message % (name, v if len(v) <= 40 else v[:40] + "..."))
        return value

    def bool_param(self, name, default):
        v = self.param(name, required=False)
        if v is None:
            return default
        low = v.lower()
        if low in ("1", "true"):
            return True
        if low in ("0", "false"):
            return False
        raise bad_request("query parameter `%s` must be 1/true or 0/false, got %r" % (name, v))

    def seconds_param(self, name, lowest=0.0, highest=None):
        """Query parameter `name` as seconds, None when it is absent: a non-negative decimal number in ASCII
        digits such as 30 or 0.5 (what float() would also take, 1e2, inf, nan, is not), from `lowest` to
        `highest` where the route has bounds. The one grammar and message of seconds in query strings."""
        raw = self.param(name, required=False)
        if raw is None:
            return None
        value = float(raw) if re.match(WAIT_SECONDS, raw) else None
        if value is None or value < lowest or (highest is not None and value > highest):
            bounds = "" if highest is None else " from %g to %g" % (lowest, highest)
            message = "query parameter `%s` must be a non-negative decimal number of seconds such as 30 or 0.5%s, got %r"
            raise bad_request(message % (name, bounds, raw if len(raw) <= 40 else raw[:40] + "..."))
        return value

    def read_json(self):
        body = self._body
        if not body.chunked and body.remaining > JSON_LIMIT:
            message = "request body too large: %d bytes (JSON bodies are limited to 16 MiB; use files/write for files)"
            raise HttpError(413, message % body.remaining, "too_large")
        parts, total = [], 0
        while True:
            chunk = body.read(FILE_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > JSON_LIMIT:
                raise HttpError(413, "request body too large (JSON bodies are limited to 16 MiB)", "too_large")
            parts.append(chunk)
        raw = b"".join(parts)
        if not raw.strip():
            raise bad_request("request body must be a JSON object")
        check_json_depth(raw)
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise bad_request("request body is not valid JSON: %s" % e)
        if not isinstance(obj, dict):
            raise bad_request("request body must be a JSON object")
        return obj
