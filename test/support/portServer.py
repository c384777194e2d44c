"""A small real server for the port tests: HTTP, SSE and a minimal RFC 6455 WebSocket echo, standard
library only, run inside a sandbox (`python3 portServer.py [PORT]`, else $PORT, else a free port).

  GET  /hello            -> `hello from PORT\n` (Content-Length)
  GET|POST /headers      -> the request's head and body as JSON: {"method", "target", "headers": [[name,
                            value]...], "body"} (the body as latin-1 text)
  POST /echo             -> the request body back (Content-Length or chunked request), chunked response
  GET|POST /sse          -> text/event-stream, chunked: event `one`, then waits (at most 60 s) until
                            /release is requested, then event `two` and the end (no race with any clock:
                            the test asks for /release only after it has read `one`)
  GET  /release          -> 204, lets a waiting /sse go on
  GET  /ws               -> WebSocket: text and binary messages echoed, ping answered, close echoed

It prints one line `{"event":"listening","port":N}` on stdout once it accepts connections."""

import base64
import hashlib
import json
import os
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RELEASE = threading.Condition()
RELEASED = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms Nagle + delayed-ACK stall

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        path = self.path.partition("?")[0]
        if path == "/hello":
            return self.send_body(200, ("hello from %d\n" % self.server.server_address[1]).encode(), "text/plain")
        if path == "/headers":
            return self.send_head_json(b"")
        if path == "/sse":
            return self.sse()
        if path == "/release":
            with RELEASE:
                RELEASED[0] += 1
                RELEASE.notify_all()
            self.send_response(204)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if path == "/ws" and (self.headers.get("Upgrade") or "").lower() == "websocket":
            return self.websocket()
        self.send_body(404, b"not found\n", "text/plain")

    def do_POST(self):
        path = self.path.partition("?")[0]
        if path == "/echo":
            return self.echo()
        if path == "/headers":
            return self.send_head_json(self.read_body())
        if path == "/sse":
            self.read_body()
            return self.sse()
        self.send_body(404, b"not found\n", "text/plain")

    def send_head_json(self, body):
        head = {
            "method": self.command,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        self.send_body(200, json.dumps(head).encode(), "application/json")

    def send_body(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def echo(self):
        body = self.read_body()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if body:
            self.chunk(body)
        self.wfile.write(b"0\r\n\r\n")

    def sse(self):
        with RELEASE:
            seen = RELEASED[0]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.chunk(b"event: one\ndata: first\n\n")
        with RELEASE:
            RELEASE.wait_for(lambda: RELEASED[0] > seen, timeout=60)
        self.chunk(b"event: two\ndata: second\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- WebSocket (RFC 6455): the server side, enough for an echo ----

    def websocket(self):
        key = (self.headers.get("Sec-WebSocket-Key") or "").strip().encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = self.read_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode in (1, 2):
                self.send_frame(opcode, payload)
            elif opcode == 9:
                self.send_frame(10, payload)
            elif opcode == 8:
                self.send_frame(8, payload[:2])
                return

    def read_exact(self, n):
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def read_frame(self):
        head = self.read_exact(2)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exact(2) or b"\0\0")[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exact(8) or b"\0" * 8)[0]
        mask = self.read_exact(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = self.read_exact(length) if length else b""
        if mask is None or payload is None:
            return None
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + payload)
        self.wfile.flush()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT") or 0)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    sys.stdout.write(json.dumps({"event": "listening", "port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
