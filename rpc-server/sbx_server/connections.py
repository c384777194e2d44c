"""Connections: how many at once, how long a peer may take to send a request, refusals over the cap,
and the listening server (IPv4 and IPv6)."""

import errno
import os
import socket
import socketserver
import threading
import time

from .common import SOCKET_TIMEOUT, _O_CLOEXEC, dumps, format_exc, log


# --------------------------------------------------------------------------
# Connections: how many, and how long a peer may take to send a request
# --------------------------------------------------------------------------
#
# Anything that reaches the port may connect, token or not, so every connection is bounded: at most
# --max-connections at once (each is a thread), a request head complete within --header-timeout, a
# body that keeps moving (--body-timeout between bytes, not a total: a large upload on a slow link
# is fine). A connection that has made an authorized request may idle between requests for
# SOCKET_TIMEOUT, as keep-alive clients and proxies do; one that has not gets --header-timeout in
# all, idle time included.

DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_HEADER_TIMEOUT = 30.0
DEFAULT_BODY_TIMEOUT = 120.0
REFUSERS = 16  # threads answering connections over the cap at once; beyond that they are just closed
REFUSE_GRACE = 1.0  # how long a refused connection may take to send its request head
ACCEPT_BACKOFF_MAX = 1.0  # out of descriptors: the longest pause between accept attempts


class Limits(object):
    """Connection bounds, from the options (main)."""

    max_connections = DEFAULT_MAX_CONNECTIONS
    header_timeout = DEFAULT_HEADER_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT


LIMITS = Limits()


class ConnReader(socket.SocketIO):
    """The reading side of a connection, under the deadline of the part being read.

    A socket timeout bounds one recv; a peer sending a byte just before each would hold the
    connection forever. Here the head of a request has a deadline for the whole of it, and the
    socket's own timeout (SOCKET_TIMEOUT, which bounds our sends) is restored after each read."""

    def __init__(self, sock):
        socket.SocketIO.__init__(self, sock, "rb")
        self.idle = SOCKET_TIMEOUT  # longest silence
        self.span = None  # the head's deadline, counted from its first byte (trusted connections)
        self.deadline = None

    def expect_request(self, trusted):
        if trusted:
            self.idle, self.span, self.deadline = SOCKET_TIMEOUT, LIMITS.header_timeout, None
        else:
            self.idle, self.span = LIMITS.header_timeout, None
            self.deadline = time.monotonic() + LIMITS.header_timeout

    def expect_body(self):
        self.idle, self.span, self.deadline = LIMITS.body_timeout, None, None

    def untrusted_body(self):
        self.deadline = time.monotonic() + LIMITS.header_timeout

    def readinto(self, b):
        wait = self.idle
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic())
            if wait <= 0:
                raise socket.timeout("request not complete within %gs (--header-timeout)" % LIMITS.header_timeout)
        sock = self._sock
        if wait != SOCKET_TIMEOUT:
            sock.settimeout(wait)
        try:
            n = socket.SocketIO.readinto(self, b)
        finally:
            if wait != SOCKET_TIMEOUT:
                sock.settimeout(SOCKET_TIMEOUT)
        if n and self.span is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.span
        return n


def refusal():
    body = dumps(
        {
            "error": "too many connections: the server serves %d at once (SBX_MAX_CONNECTIONS / --max-connections); "
            "close idle connections or retry later" % LIMITS.max_connections,
            "code": "too_many_connections",
        }
    )
    head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    return (head % len(body)).encode("ascii") + b"Retry-After: 1\r\nConnection: close\r\n\r\n" + body


def refuse(sock):
    """Answer a connection over the cap with 503 and close it. Its request head is read first (briefly):
    closing with unread bytes resets the connection, which can destroy the answer before it is read."""
    try:
        sock.settimeout(REFUSE_GRACE)
        deadline = time.monotonic() + REFUSE_GRACE
        seen = b""
        while b"\r\n\r\n" not in seen and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return
            seen = (seen + data)[-65536:]
        sock.sendall(refusal())
        sock.shutdown(socket.SHUT_WR)
        while time.monotonic() < deadline + REFUSE_GRACE and sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """http.server's ThreadingHTTPServer without importing http.server (a third of the start-up: see
    handler_base): its reuse of the address and daemon threads; its server_bind is replaced below."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def server_activate(self):
        socketserver.TCPServer.server_activate(self)
        self.lock = threading.Lock()
        self.connections = 0
        self.refusers = threading.BoundedSemaphore(REFUSERS)
        self.backoff = 0.0
        # One descriptor kept in reserve: out of them, it is given up to accept and close a waiting
        # connection, so that its client hears no rather than waiting for a timeout.
        self.reserve = self.open_reserve()

    @staticmethod
    def open_reserve():
        try:
            return os.open(os.devnull, os.O_RDONLY | _O_CLOEXEC)
        except OSError:
            return None

    def get_request(self):
        try:
            request = socketserver.TCPServer.get_request(self)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            self.out_of_descriptors(e)
            raise
        self.backoff = 0.0
        return request

    def out_of_descriptors(self, e):
        """accept() failed for want of descriptors. The listening socket stays readable, so going
        straight back to select() would spin: shed one waiting connection, then pause (doubling)."""
        if self.backoff == 0.0:
            log("out of file descriptors (%s) with %d connections open: pausing accept" % (e.strerror, self.connections))
        if self.reserve is not None:
            os.close(self.reserve)
            try:
                self.socket.accept()[0].close()
            except OSError:
                pass
            self.reserve = self.open_reserve()
        self.backoff = min(ACCEPT_BACKOFF_MAX, max(0.01, self.backoff * 2))
        time.sleep(self.backoff)

    def process_request(self, request, client_address):
        with self.lock:
            full = self.connections >= LIMITS.max_connections
            if not full:
                self.connections += 1
        if full:
            self.refuse(request)
            return
        try:
            socketserver.ThreadingMixIn.process_request(self, request, client_address)
        except BaseException:
            self.closed_one()
            raise

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self.closed_one()

    def closed_one(self):
        with self.lock:
            self.connections -= 1

    def refuse(self, request):
        if not self.refusers.acquire(blocking=False):
            self.shutdown_request(request)  # a flood: no answer, and no thread either
            return

        def run():
            try:
                refuse(request)
            finally:
                self.refusers.release()

        try:
            threading.Thread(target=run, name="refuse", daemon=True).start()
        except RuntimeError:
            self.refusers.release()
            self.shutdown_request(request)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            try:  # "::" should also accept IPv4 where the OS allows it
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                pass
        # HTTPServer.server_bind resolves the FQDN of the host: a reverse DNS
        # lookup that can take seconds in a container. We never need it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        log("connection error from %s:\n%s" % (client_address, format_exc()))


class Server6(Server):
    address_family = socket.AF_INET6
