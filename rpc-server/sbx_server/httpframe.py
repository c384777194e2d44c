"""Strict HTTP/1.1 framing: the request head, bounded header fields, request bodies (Content-Length
and chunked, with their trailers), JSON depth, and the small parsers of query values."""

import json
import os
import re

from .common import ClientGone, FILE_CHUNK, HttpError, bad_request


# --------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------


class Body(object):
    """A request body read incrementally: Content-Length or chunked."""

    def __init__(self, rfile, length, chunked):
        self.rfile = rfile
        self.chunked = chunked
        self.remaining = length  # None when chunked
        self.done = not chunked and length == 0
        self._chunk_left = 0

    def _read(self, n):
        try:
            data = self.rfile.read(n)
        except (OSError, ValueError):
            raise ClientGone()
        if not data:
            raise ClientGone()
        return data

    def read(self, n):
        """Up to n bytes; b"" at the end of the body."""
        if self.done:
            return b""
        if not self.chunked:
            data = self._read(min(n, self.remaining))
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        if self._chunk_left == 0:
            m = re.match(CHUNK_LINE, read_line(self.rfile, CHUNK_LINE_MAX, 400))
            if m is None:
                raise framing_error("malformed chunked request body (a chunk size is 1 to 16 hex digits)")
            size = int(m.group(1), 16)
            if size == 0:
                read_fields(self.rfile, "trailer")  # bounded, and checked like header fields; then ignored
                self.done = True
                return b""
            self._chunk_left = size
        data = self._read(min(n, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._read(2) != b"\r\n":
            raise framing_error("malformed chunked request body (chunk data not followed by CRLF)")
        return data

    def read_into(self, view):
        """Fills a prefix of `view` with the next bytes of a Content-Length body,
        straight from the socket's buffer; returns how many."""
        if self.done:
            return 0
        try:
            n = self.rfile.readinto(view[: min(len(view), self.remaining)])
        except (OSError, ValueError):
            raise ClientGone()
        if not n:
            raise ClientGone()
        self.remaining -= n
        self.done = self.remaining == 0
        return n

    def drain(self, limit):
        """Discard up to `limit` bytes; True if the body is now fully read."""
        total = 0
        while not self.done and total <= limit:
            total += len(self.read(FILE_CHUNK))
        return self.done


# --------------------------------------------------------------------------
# Strict HTTP/1.1 framing (RFC 9112)
# --------------------------------------------------------------------------
#
# Anything a peer sends is parsed by the grammar, not by what happens to work:
# two parsers that disagree on where a request ends (a proxy and this server)
# are how requests get smuggled. What the grammar does not allow is a 400 (431
# for a head over its bounds) and the connection is closed, never "the header
# block ends here" or "int() took it".

HEAD_FIELDS_MAX = 100  # header fields per request, and trailer fields per chunked body
FIELD_LINE_MAX = 65536  # bytes of one header field line
CHUNK_LINE_MAX = 4096  # bytes of a chunk-size line with its extensions
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Compiled at import: every request needs these three. The others below are patterns, which re.match
# and re.sub compile at their first use (and keep in re's cache): sre takes a fraction of a millisecond
# for each, which the start would pay for what only some requests need.
REQUEST_LINE = re.compile(rb"\A(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r\n\Z")
FIELD_LINE = re.compile(rb"\A(" + _TCHAR + rb"+):([^\r\n]*)\r\n\Z")
FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs other than HTAB
# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = (
    rb"\A([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))?)*\r\n\Z"
)
# Seconds in a query string (handler_base.seconds_param). 20 fraction digits: what a JavaScript client's
# String() of any double from 1e-6 up writes, e.g. String(1 / 3) (0.3333333333333333).
WAIT_SECONDS = r"\A[0-9]{1,12}(?:\.[0-9]{1,20})?\Z"
CONTENT_LENGTH = r"\A[0-9]{1,18}\Z"  # 18 digits: always below 2^63


def framing_error(message, status=400):
    """The request cannot be framed: answered, then the connection is closed."""
    return HttpError(status, message, "bad_request", close=True)


def read_line(rfile, limit, too_long=431):
    """One CRLF-terminated line of at most `limit` bytes; ClientGone at EOF."""
    try:
        line = rfile.readline(limit + 1)
    except (OSError, ValueError):
        raise ClientGone()
    if not line:
        raise ClientGone()
    if len(line) > limit:
        raise framing_error("a line of the request's framing is longer than %d bytes" % limit, too_long)
    if not line.endswith(b"\r\n"):
        raise framing_error("a line of the request's framing is not ended by CRLF")
    return line


def read_fields(rfile, what):
    """Field lines up to the empty line: [(name, value)], names ASCII, values latin-1 decoded and
    stripped of optional whitespace. A line that is not `name: value` (no colon, whitespace before
    it, an obs-fold, a control character) is an error, never the end of the block."""
    too_large = 431 if what == "header" else 400  # 431 is for a head; trailers are part of the body
    fields = []
    while True:
        line = read_line(rfile, FIELD_LINE_MAX, too_large)
        if line == b"\r\n":
            return fields
        if len(fields) >= HEAD_FIELDS_MAX:
            raise framing_error("more than %d %s fields" % (HEAD_FIELDS_MAX, what), too_large)
        m = FIELD_LINE.match(line)
        if m is None:
            raise framing_error("malformed %s field line (expected `name: value`)" % what)
        value = m.group(2).strip(b" \t")
        if FIELD_VALUE_BAD.search(value):
            raise framing_error("control character in the value of %s field %s" % (what, m.group(1).decode("ascii")))
        fields.append((m.group(1).decode("ascii"), value.decode("latin-1")))


class Headers(object):
    """A request's header fields, read as http.client.HTTPMessage reads them (names case-insensitive,
    in the order they came), without importing http.client: it brings email.* and ssl, a third of the
    server's start-up, for a list and two look-ups."""

    def __init__(self, fields):
        self._raw = list(fields)
        self._fields = [(name.lower(), value) for name, value in self._raw]

    def items(self):
        """Every field as it came (its name's case kept), in order: the port proxy replays them."""
        return list(self._raw)

    def get(self, name, default=None):
        """The first value of the field `name`, else `default`."""
        name = name.lower()
        for key, value in self._fields:
            if key == name:
                return value
        return default

    def get_all(self, name, failobj=None):
        """Every value of the field `name`, in order, else `failobj`."""
        name = name.lower()
        return [value for key, value in self._fields if key == name] or failobj


def parse_head(raw_requestline, rfile):
    """(method, target, version, headers) of a request head, or HttpError. `version` is "HTTP/1.0"
    or "HTTP/1.1" (a later 1.x is answered as 1.1); headers is a Headers."""
    m = REQUEST_LINE.match(raw_requestline)
    if m is None:
        raise framing_error("malformed request line (expected `METHOD target HTTP/1.1`)")
    major, minor = int(m.group(3)), int(m.group(4))
    if major != 1:
        raise framing_error("HTTP version %d.%d is not supported (use HTTP/1.1)" % (major, minor), 505)
    headers = Headers(read_fields(rfile, "header"))
    version = "HTTP/1.0" if minor == 0 else "HTTP/1.1"
    return m.group(1).decode("ascii"), m.group(2).decode("ascii"), version, headers


JSON_DEPTH_MAX = 64
_JSON_ESCAPE = rb"(?s)\\."
_JSON_STRING = rb'"[^"]*"'  # once escapes are gone: linear, no backtracking
_JSON_NOT_BRACKET = rb"[^\[\]{}]+"


def check_json_depth(raw):
    """400 for a body nested deeper than JSON_DEPTH_MAX, before json.loads recurses into it (a
    RecursionError, or on a small thread stack a crash). Brackets inside strings do not count. Only a
    body with that many brackets at all is scanned, by C-speed passes: each removes the innermost
    empty pairs, so what is left after JSON_DEPTH_MAX passes nests deeper (or does not pair up)."""
    if raw.count(b"[") + raw.count(b"{") <= JSON_DEPTH_MAX:
        return
    rest = re.sub(_JSON_NOT_BRACKET, b"", re.sub(_JSON_STRING, b"", re.sub(_JSON_ESCAPE, b"", raw)))
    for _ in range(JSON_DEPTH_MAX):
        if not rest:
            return
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(rest):
            break
        rest = shorter
    if rest:
        raise bad_request("request body is not valid JSON, or nests arrays and objects deeper than %d levels" % JSON_DEPTH_MAX)


def legacy_path(req):
    """The `path` of a legacy JSON body, as the OS can take it: a JSON string may hold a NUL or a lone
    surrogate (`\\ud800`), which no file name can (the query routes' paths cannot hold the latter)."""
    given = req.get("path")
    if not isinstance(given, str) or not given:
        raise bad_request("`path` must be a non-empty string")
    if "\0" in given:
        raise bad_request("`path` contains a NUL character")
    try:
        os.fsencode(given)
    except UnicodeError:
        raise bad_request("`path` %s is not a file name: it holds a lone surrogate" % json.dumps(given))
    return given


_HEX_DIGITS = "0123456789ABCDEFabcdef"


def parse_query(query):
    """{name: [value, ...]} of a request target's query, which is ASCII (REQUEST_LINE): what
    urllib.parse.parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")
    gives, without importing urllib.parse (with ipaddress, some milliseconds of the start). Fields are
    split at "&" only, a field without "=" has the value "", "+" is a space, a %XX escape is a byte and
    a malformed one stays as it is; the bytes are read as UTF-8, what is not UTF-8 as surrogate escapes."""
    fields = {}
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            fields.setdefault(_unquote(name.replace("+", " ")), []).append(_unquote(value.replace("+", " ")))
    return fields


def _unquote(text):
    if "%" not in text:
        return text
    parts = text.split("%")
    raw = bytearray(parts[0].encode("utf-8"))
    for part in parts[1:]:
        code = part[:2]
        if len(code) == 2 and code[0] in _HEX_DIGITS and code[1] in _HEX_DIGITS:
            raw.append(int(code, 16))
            raw += part[2:].encode("utf-8")
        else:
            raw += b"%" + part.encode("utf-8")
    return raw.decode("utf-8", "surrogateescape")


def parse_decimal(raw, below):
    """A value of ASCII digits only (no sign, no spaces, no other scripts' digits) below `below`, else None."""
    if raw is None or not 0 < len(raw) <= len(str(below)) or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value < below else None
