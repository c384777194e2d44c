"""What every module shares: version and protocol, size and time limits, the log and its escaping,
JSON helpers, the HTTP error types, the server's state (token, activity), configuration errors
(`server.py: error: ...`, exit 2) and the shutdown request that wakes the main thread."""

import json
import math
import os
import re
import selectors
import socket
import sys
import threading
import time

from .digest import compare_digest, sha256

VERSION = "0.1.0"
PROTOCOL = 2
DEFAULT_PORT = 49983

FILE_CHUNK = 256 * 1024  # file/body streaming unit
OUTPUT_CHUNK = 32 * 1024  # max raw bytes per stdout/stderr event
JSON_LIMIT = 16 * 1024 * 1024  # largest buffered JSON request body
DRAIN_LIMIT = 16 * 1024 * 1024  # unread body we discard to keep a connection alive
CAPTURE_LIMIT = 16 * 1024 * 1024  # legacy /exec: captured bytes per stream
DEFAULT_PING_INTERVAL = 15.0
MAX_SELECT_WAIT = 3600.0  # longest single wait of a pump: a far deadline is reached by several
EXIT_QUIET = 0.05  # after the child exits, stop reading once pipes are this quiet
EXIT_DRAIN_MAX = 1.0  # ...and never read longer than this after the exit
KILL_GRACE = 0.5  # shutdown: SIGTERM -> SIGKILL delay
SOCKET_TIMEOUT = 300.0  # a peer silent this long (idle keep-alive, stalled send) is dropped
LEGACY_TIMEOUT = 600.0
DEFAULT_MAX_PROCESSES = 1024  # background processes and execs running at once
DEFAULT_MAX_EXITED = 1024  # exited background processes kept listed (with their output) at once
# Seconds a dropped exec waits for a reader to reattach (background.Janitor). A client that gives a
# command up kills it itself (DELETE /v1/processes/{id}): a dropped connection is no longer a kill.
EXEC_REATTACH_DEFAULT = 60.0
EXEC_RETAIN_DEFAULT = 300.0  # seconds a finished exec's record and output are kept
LEGACY_ROUTES = ("/exec", "/write", "/read")
AUTH_ERROR = "invalid or missing sandbox token"

IS_LINUX = sys.platform.startswith("linux")
_MSG_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # so a FIFO can never block open()


def bearer(authorization):
    """The credential of an `Authorization: Bearer <credential>` value, else None."""
    parts = (authorization or "").split(None, 1)
    return parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else None


def is_sandbox_token(text):
    """Whether `text` is the sandbox token (never, when the server has none). Equal-length digests:
    compare_digest is constant time whatever the candidate's length. Headers arrive latin-1 decoded,
    so this recovers the raw bytes."""
    want = STATE.token_digest
    return want is not None and compare_digest(sha256(text.encode("latin-1", "replace")).digest(), want)


_FOREIGN_AUTHORIZATION_NOTED = []


# The reason phrases of the statuses the server answers most (RFC 9110's, as http.HTTPStatus has them;
# test/server/start.test.ts compares): building HTTPStatus, an enum of some 60 members, would cost the
# start a few percent. Any other status takes its phrase from HTTPStatus, imported then.
_REASONS = {
    200: "OK",
    202: "Accepted",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def reason_phrase(status, default="Unknown"):
    """The reason phrase of an HTTP status, `default` for a status HTTP does not define."""
    phrase = _REASONS.get(status)
    if phrase is None:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = default
    return phrase


def note_foreign_authorization():
    """An authorised request also carried an Authorization header that is not
    the sandbox token: a proxy in front (the HF Jobs proxy, which checks the
    caller's HF token) forwarded it. Said once, never with the value, so that
    a user can see from the job's log whether their HF token reaches the
    sandbox; it is never used or passed to commands."""
    if not _FOREIGN_AUTHORIZATION_NOTED:
        _FOREIGN_AUTHORIZATION_NOTED.append(True)
        log("note: requests arrive with a foreign Authorization header (forwarded by a proxy); it is ignored")


# What must never reach a terminal from text a peer chose (request paths, commands, file names):
# C0 and C1 controls (ESC and CSI start escape sequences), DEL, and the Unicode line separators and
# bidirectional overrides that make a log line read as something else.
# Bytes that were not UTF-8 (surrogate escapes) are escaped too: written raw, 0x9b is a CSI.
_LOG_UNSAFE = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\udc80-\udcff]"
# The part of it an ASCII text can hold. The whole set takes sre a millisecond or two to compile (what
# lies beyond Latin-1), which the start would pay for its first log line: each is compiled at the first
# text that needs it (and kept in re's cache); printable ASCII, as the start's log lines are, needs none.
_LOG_UNSAFE_ASCII = "[\x00-\x1f\x7f]"
_LOG_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(m):
    c = m.group()
    return _LOG_NAMED.get(c) or ("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c))


def _log_unsafe(text):
    """The regex of the characters to escape in `text`, or None where it holds none."""
    if text.isascii():
        return None if text.isprintable() else re.compile(_LOG_UNSAFE_ASCII)
    return re.compile(_LOG_UNSAFE)


def shown(text):
    """Attacker-controlled text as a log line may carry it: one line, every control character escaped."""
    unsafe = _log_unsafe(text)
    return text if unsafe is None else unsafe.sub(_escaped, text)


def log(msg):
    """Diagnostics go to stderr only: stdout carries the single listening line. Newlines of a message
    stay (tracebacks); every other control character is escaped here, whatever the caller forgot."""
    unsafe = _log_unsafe(msg)
    if unsafe is not None:
        msg = unsafe.sub(lambda m: "\n" if m.group() == "\n" else _escaped(m), msg)
    try:
        sys.stderr.write("hf-sandbox rpc-server: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


# The log says what ran and how it ended: two lines per command, never its
# output, stdin or environment values (they may hold secrets), and a command
# line cut to this many characters, so the log grows per command, not per byte.
COMMAND_LOG_CHARS = 300


def command_text(argv):
    """A command as its log lines show it: the script of `sh -c SCRIPT`, else
    the argv joined, on one line and cut to COMMAND_LOG_CHARS."""
    if len(argv) == 3 and argv[0] == "/bin/sh" and argv[1] == "-c":
        text = argv[2]
    else:
        text = " ".join(a if a and not re.search(r"[\s'\"\\]", a) else json.dumps(a) for a in argv)
    text = shown(text)
    if len(text) > COMMAND_LOG_CHARS:
        text = "%s... (%d characters)" % (text[:COMMAND_LOG_CHARS], len(text))
    return text


def _whose(spec):
    """A host's command lines name its sandbox: a pooled sandbox's log is its host's lines about it."""
    sandbox = getattr(spec, "sandbox", None)
    return "" if sandbox is None else "sandbox %s: " % sandbox.id


def log_command_start(proc, spec):
    where = " in %s" % shown(spec.cwd) if spec.cwd else ""
    log("%scommand started, pid %d%s: %s" % (_whose(spec), proc.pid, where, command_text(spec.argv)))


def log_command_end(proc, spec, result, finished):
    """How a command ended: its exit status or signal, a timeout, or its client gone."""
    rc = proc.returncode
    if result.timed_out:
        how = "timed out after %gs: %s" % (spec.timeout, _exit_text(rc))
    elif not finished:
        how = "lost its client: %s" % _exit_text(rc)
    else:
        how = "ended: %s" % _exit_text(rc)
    log("%scommand pid %d %s (%.2fs)" % (_whose(spec), proc.pid, how, result.duration_ms / 1000.0))


def format_exc():
    """The current exception's traceback, for the log. `traceback` (with linecache and tokenize) is
    imported only once something has failed: it is not needed to start listening."""
    import traceback

    return traceback.format_exc()


def dumps(obj):
    """Compact JSON bytes. Paths may carry surrogate escapes (non-UTF-8 file
    names); those cannot be UTF-8 encoded, so fall back to \\u escapes."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def new_selector():
    # poll() needs no kernel object per exec, unlike epoll; fall back where missing.
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.DefaultSelector()


class HttpError(Exception):
    """An error answered as JSON `{"error", "code"}` with an HTTP status."""

    def __init__(self, status, message, code, headers=(), close=False):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = list(headers)
        self.close = close  # the connection is out of sync: do not reuse it


class ClientGone(Exception):
    """The client disconnected (or stalled past SOCKET_TIMEOUT)."""


def bad_request(message, code="bad_request"):
    return HttpError(400, message, code)


# --------------------------------------------------------------------------
# Server-wide state: activity (idle watchdog) and auth
# --------------------------------------------------------------------------


class State(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.inflight = 0
        self.last_activity = self.started
        self.token_digest = None  # None = --allow-no-auth without a token
        self.ping_interval = DEFAULT_PING_INTERVAL
        # Whether a client has reached us (an authorized request): until then the
        # idle timeout waits at least --start-grace (see idle_loop).
        self.contacted = False
        self.host = None  # host mode: host.Host (see routes_host.py)

    # The watchdog needs both: a request in flight (a long exec stream, a big
    # upload) is activity, and the idle clock restarts when it ends.
    def begin(self):
        with self.lock:
            self.inflight += 1
            self.last_activity = time.monotonic()
            self.contacted = True

    def end(self):
        with self.lock:
            self.inflight -= 1
            self.last_activity = time.monotonic()

    def touch(self):
        with self.lock:
            self.last_activity = time.monotonic()
            self.contacted = True

    def idle_for(self):
        with self.lock:
            if self.inflight:
                return 0.0
            return time.monotonic() - self.last_activity


STATE = State()


class ProcessLimits(object):
    """The command line's limits on commands (cli.main sets them), read where they apply (background.py,
    routes_process.py), never copied: a module imported before cli.main set them still sees them."""

    def __init__(self):
        self.max_running = DEFAULT_MAX_PROCESSES  # --max-processes / SBX_MAX_PROCESSES
        self.max_exited = DEFAULT_MAX_EXITED  # --max-exited / SBX_MAX_EXITED
        self.exec_reattach = EXEC_REATTACH_DEFAULT  # SBX_EXEC_REATTACH
        self.exec_retain = EXEC_RETAIN_DEFAULT  # SBX_EXEC_RETAIN


PROCESS_LIMITS = ProcessLimits()


class Scope(threading.local):
    """The sandbox a host-mode request acts for, in its handler's thread (routes_host.run); None in
    dedicated mode. Read where a route's work depends on it: paths, commands, the port proxy."""

    sandbox = None


SCOPE = Scope()


class AsServer(object):
    """`with AsServer():` the server's own file system credentials in a host-mode request's thread, which
    otherwise acts with its sandbox's (isolation.Isolation.enter): for what is the server's, not the
    sandbox's (its journal, the confining wrapper it starts). A no-op in dedicated mode."""

    __slots__ = ("sandbox",)

    def __enter__(self):
        self.sandbox = SCOPE.sandbox
        if self.sandbox is not None:
            STATE.host.isolation.leave()

    def __exit__(self, *exc):
        if self.sandbox is not None:
            STATE.host.isolation.enter(self.sandbox)


def env_seconds(name, default):
    """A positive number of seconds from the environment; the default when unset or not one."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return value if math.isfinite(value) and value > 0 else default


def _exit_text(rc):
    return "exit status %d" % rc if rc >= 0 else "killed by signal %d" % -rc


# --------------------------------------------------------------------------
# Startup and shutdown
# --------------------------------------------------------------------------


_wake_r, _wake_w = os.pipe()
os.set_blocking(_wake_w, False)
_shutdown_reason = []
_exit_status = [0]


def request_shutdown(reason, status=0):
    """Safe from signal handlers and any thread: wakes the main thread. The
    first reason wins, and with it the exit status."""
    if not _shutdown_reason:
        _shutdown_reason.append(reason)
        _exit_status[0] = status
    try:
        os.write(_wake_w, b"x")
    except OSError:
        pass


def _fail(msg):
    sys.stderr.write("server.py: error: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(2)


# Starts the line that follows a start refusal with a code: the same refusal as data, for a client to
# recognise by its code rather than by the wording above it (docs/protocol.md "Isolation").
REFUSAL_MARKER = "SBX_REFUSAL "


def _refuse(msg, code, **data):
    """Exits 2 as `_fail` does, then says the refusal again as one JSON line after REFUSAL_MARKER:
    `{"code": code, ...data}`. Both lines go in one write, so that nothing comes between them."""
    line = json.dumps(dict(data, code=code), separators=(",", ":"))
    sys.stderr.write("server.py: error: %s\n%s%s\n" % (msg, REFUSAL_MARKER, line))
    sys.stderr.flush()
    sys.exit(2)


def _number(raw, source, kind, lo, hi=None):
    try:
        v = int(raw) if kind is int else float(raw)
    except (TypeError, ValueError):
        _fail("invalid %s %r: expected a number" % (source, raw))
    if (kind is float and not math.isfinite(v)) or v < lo or (hi is not None and v > hi):
        _fail("invalid %s %r: out of range" % (source, raw))
    return v


def _flag(raw, source):
    if raw is None or raw.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    _fail("invalid %s %r: expected 1 or 0" % (source, raw))
