"""Where a pump sends a command's output: an NDJSON stream to the client (StreamSink), nowhere
(QuietSink), or a bounded capture for the legacy /exec (CaptureSink)."""

import codecs
import json
import time

from .common import CAPTURE_LIMIT, FILE_CHUNK, STATE, dumps


class StreamSink(object):
    """Turns output into NDJSON events on a chunked response.

    Events produced in one selector round are sent with one sendall; each
    round is flushed before the pump waits again, so output is never held
    back. Incremental decoders keep a multibyte character that straddles two
    reads intact."""

    def __init__(self, handler, encoding):
        self.h = handler
        self.b64 = encoding == "base64"
        self.decoders = {}
        if not self.b64:
            make = codecs.getincrementaldecoder("utf-8")
            self.decoders = {"stdout": make(errors="replace"), "stderr": make(errors="replace")}
        self.pending = []
        self.last_sent = time.monotonic()
        # HTTP/1.0 has no chunked encoding: stream raw and close at the end.
        self.chunked = handler.request_version != "HTTP/1.0"
        self.ping = STATE.ping_interval

    def _frame(self, payload):
        if self.chunked:
            return b"%X\r\n%s\r\n" % (len(payload), payload)
        return payload

    def start(self, pid):
        self.begin(dumps({"event": "start", "pid": pid}) + b"\n")

    def begin(self, first=b""):
        """Send the response head, plus `first` (whole NDJSON lines) if any."""
        headers = [
            ("Content-Type", "application/x-ndjson"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ]
        if self.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            self.h.close_connection = True
        head = self.h.head_bytes(200, headers)
        self.h.send_bytes(head + (self._frame(first) if first else b""))
        self.last_sent = time.monotonic()

    def _event(self, name, text):
        self.pending.append(dumps({"event": name, "data": text}) + b"\n")

    def output(self, name, data):
        if self.b64:
            import base64  # at first use: a module the server's start does without

            # Base64 needs no JSON escaping: assembled as bytes, the line costs a third of what dumps() does.
            self.pending.append(b'{"event":"%s","data":"%s"}\n' % (name.encode("ascii"), base64.b64encode(data)))
        else:
            text = self.decoders[name].decode(data)
            if text:
                self._event(name, text)

    def eof(self, name):
        if not self.b64:
            tail = self.decoders.pop(name).decode(b"", True)
            if tail:
                self._event(name, tail)

    def remaining(self, names):
        for name in names:
            self.eof(name)

    def next_tick(self, now):
        return max(0.0, self.last_sent + self.ping - now)

    def flush(self, now):
        if not self.pending and now - self.last_sent >= self.ping:
            self.pending.append(b'{"event":"ping"}\n')
        if self.pending:
            payload = b"".join(self.pending)
            self.pending = []
            self.h.send_bytes(self._frame(payload))
            self.last_sent = now

    def finish(self, result):
        if result is not None:
            self.pending.append(dumps(exit_event(result)) + b"\n")
        payload = self._frame(b"".join(self.pending)) if self.pending else b""
        self.pending = []
        self.h.send_bytes(payload + (b"0\r\n\r\n" if self.chunked else b""))


def exit_event(result):
    rc = result.returncode
    return {
        "event": "exit",
        "exit_code": rc if rc >= 0 else None,
        "signal": -rc if rc < 0 else None,
        "timed_out": result.timed_out,
        "duration_ms": result.duration_ms,
    }


class QuietSink(object):
    """pump() sink hooks for sinks that have no client to keep alive: nothing to
    do at start, at EOF, on idle ticks or at flush time."""

    def start(self, pid):
        pass

    def eof(self, name):
        pass

    def remaining(self, names):
        pass

    def next_tick(self, now):
        return None

    def flush(self, now):
        pass


class CaptureSink(QuietSink):
    """Buffers output for the legacy /exec reply, capped per stream."""

    def __init__(self):
        self.buf = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}

    def output(self, name, data):
        buf = self.buf[name]
        room = CAPTURE_LIMIT - len(buf)
        if len(data) > room:
            self.truncated[name] = True
            data = data[: max(room, 0)]
        buf += data

    def json_string(self, name, suffix=""):
        """The stream as a JSON string (UTF-8 decoded with replacement, then the truncation marker and
        `suffix`), in pieces: the whole text at once would cost several times the bytes captured
        (binary output turns each byte into a three-byte U+FFFD)."""
        buf = self.buf[name]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        yield b'"'
        for i in range(0, len(buf), FILE_CHUNK):
            yield json.dumps(decoder.decode(buf[i : i + FILE_CHUNK]), ensure_ascii=False)[1:-1].encode("utf-8")
        tail = decoder.decode(b"", True)
        if self.truncated[name]:
            tail += "\n[output truncated]\n"
        yield json.dumps(tail + suffix, ensure_ascii=False)[1:-1].encode("utf-8")
        yield b'"'

    def ends_line(self, name):
        """Whether the stream's text is empty or ends with a newline."""
        buf = self.buf[name]
        return self.truncated[name] or not buf or buf.endswith(b"\n")
