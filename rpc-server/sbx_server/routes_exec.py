"""Routes: POST /v1/exec (streamed) and the legacy POST /exec (captured)."""

import time

from .background import DEFAULT_EXEC_BUFFER
from .common import FILE_CHUNK, HttpError
from .execution import parse_exec, pump, spawn
from .launch import ack_window, buffer_bytes, start_keyed
from .sinks import CaptureSink


class ExecRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_exec(self):
        req = self.read_json()
        spec = parse_exec(req, legacy=False)
        limit = buffer_bytes(req, DEFAULT_EXEC_BUFFER)
        window = ack_window(req, limit)
        bg, existing = start_keyed(req, spec, "exec", None, limit, attach=True)
        if not existing:
            bg.window = window
        # A retry with the key reattaches from the first byte: the same events as the first answer.
        self.follow_output(bg, True, spec.encoding, {"stdout": 0, "stderr": 0}, attached=True, start_event=True)

    def route_legacy_exec(self):
        spec = parse_exec(self.read_json(), legacy=True)
        t0 = time.monotonic()
        try:
            proc = spawn(spec)
        except HttpError as e:
            # The prototype answered a missing program as a result, not an error.
            if e.code == "command_not_found":
                return self.respond_json({"rc": 127, "stdout": "", "stderr": "command not found: %s" % spec.argv[0]})
            if e.code == "permission_denied":
                return self.respond_json({"rc": 126, "stdout": "", "stderr": "permission denied: %s" % spec.argv[0]})
            raise
        sink = CaptureSink()
        result = pump(self, proc, spec, sink, t0)
        if result.timed_out:
            # {"rc":-1,"stdout":...,"stderr":<partial>"timeout","timed_out":true}
            suffix = "timeout" if sink.ends_line("stderr") else "\ntimeout"
            parts = (b'{"rc":-1,"stdout":', ("stdout", ""), b',"stderr":', ("stderr", suffix), b',"timed_out":true}')
        else:
            parts = (b'{"rc":%d,"stdout":' % result.returncode, ("stdout", ""), b',"stderr":', ("stderr", ""), b"}")

        def pieces():
            for part in parts:
                if isinstance(part, bytes):
                    yield part
                else:
                    for piece in sink.json_string(*part):
                        yield piece

        # Sent as it is encoded (chunked; HTTP/1.0: until the close), so the server never holds more
        # of the answer than a piece.
        chunked = self.request_version != "HTTP/1.0"
        head = [("Content-Type", "application/json")]
        if chunked:
            head.append(("Transfer-Encoding", "chunked"))
        else:
            self.close_connection = True
        self.send_bytes(self.head_bytes(200, head))
        batch, size = [], 0
        for piece in pieces():
            batch.append(piece)
            size += len(piece)
            if size >= FILE_CHUNK:
                payload = b"".join(batch)
                self.send_bytes(b"%X\r\n%s\r\n" % (size, payload) if chunked else payload)
                batch, size = [], 0
        payload = b"".join(batch)
        if chunked:
            self.send_bytes((b"%X\r\n%s\r\n" % (size, payload) if size else b"") + b"0\r\n\r\n")
        else:
            self.send_bytes(payload)
