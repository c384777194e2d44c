#!/usr/bin/env python3
"""hf-sandbox in-sandbox RPC server.

Runs inside a sandbox (an HF Job, or a local temp dir) and lets a client run
commands and move files over HTTP. One file, Python >= 3.8, standard library
only, so it can be dropped into any image that has a python3.

Wire protocol: docs/protocol.md (v1 streaming routes compatible with HF's
sbx-server, plus the hf-sandbox prototype's legacy /exec, /write, /read).
Operator notes: rpc-server/README.md.

Design notes (the "why"):
- One thread per connection (ThreadingHTTPServer) and no extra thread per
  exec: the handler thread multiplexes the child's pipes, its exit (pidfd)
  and the client socket with one selector. That keeps an exec of `true` close
  to the cost of the fork/exec itself.
- Every command gets its own session/process group so that a timeout, a
  dropped client or shutdown can kill everything it started, not just the
  direct child.
- Memory is bounded whatever the size of a file or of an output: bodies and
  files are streamed in fixed-size chunks; only JSON bodies (<= 16 MiB) are
  buffered.
- Keep-alive must never desynchronise: unread request bodies are drained
  (or the connection is closed), and a response that cannot deliver the
  announced Content-Length closes the connection.
"""

import sys

if sys.version_info < (3, 8):  # before any import that would fail with a worse message
    sys.stderr.write("server.py: error: Python 3.8 or newer is required (this is %s)\n" % sys.version.split()[0])
    sys.exit(2)

import argparse
import array
import base64
import bisect
import codecs
import contextlib
import errno
import hashlib
import hmac
import http.client
import io
import json
import math
import os
import re
import selectors
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

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
LEGACY_ROUTES = ("/exec", "/write", "/read")
AUTH_ERROR = "invalid or missing sandbox token"

IS_LINUX = sys.platform.startswith("linux")
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_MSG_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # so a FIFO can never block open()


_FOREIGN_AUTHORIZATION_NOTED = []


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
_LOG_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
_LOG_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(m):
    c = m.group()
    return _LOG_NAMED.get(c) or ("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c))


def shown(text):
    """Attacker-controlled text as a log line may carry it: one line, every control character escaped."""
    return _LOG_UNSAFE.sub(_escaped, text)


def log(msg):
    """Diagnostics go to stderr only: stdout carries the single listening line. Newlines of a message
    stay (tracebacks); every other control character is escaped here, whatever the caller forgot."""
    msg = _LOG_UNSAFE.sub(lambda m: "\n" if m.group() == "\n" else _escaped(m), msg)
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


def log_command_start(proc, spec):
    log("command started, pid %d%s: %s" % (proc.pid, " in %s" % shown(spec.cwd) if spec.cwd else "", command_text(spec.argv)))


def log_command_end(proc, spec, result, finished):
    """How a command ended: its exit status or signal, a timeout, or its client gone."""
    rc = proc.returncode
    if result.timed_out:
        how = "timed out after %gs: %s" % (spec.timeout, _exit_text(rc))
    elif not finished:
        how = "lost its client: %s" % _exit_text(rc)
    else:
        how = "ended: %s" % _exit_text(rc)
    log("command pid %d %s (%.2fs)" % (proc.pid, how, result.duration_ms / 1000.0))


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
# Server-wide state: activity (idle watchdog), auth, and the process table
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


class Processes(object):
    """Every process group we started, and every child not yet reaped.

    `active` matters for the zombie reaper: a pid that a Popen will still wait
    for must never be reaped by anyone else, or Popen would see ECHILD and
    report a bogus exit status. `spawning` closes the window between fork and
    registration, during which the reaper stays away entirely.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.active = {}  # pid -> Popen
        self.groups = set()  # pgids (== leader pid, thanks to start_new_session)
        self.spawning = 0
        self.closed = False
        self.reap_kick = threading.Event()

    def spawn(self, argv, **kwargs):
        with self.lock:
            if self.closed:
                raise HttpError(503, "server is shutting down; cannot start %s" % argv[0], "shutting_down")
            self.spawning += 1
        proc = None
        try:
            proc = subprocess.Popen(argv, **kwargs)
        finally:
            with self.lock:
                self.spawning -= 1
                if proc is not None:
                    self.active[proc.pid] = proc
                    self.groups.add(proc.pid)
        return proc

    def reaped(self, proc, killed):
        with self.lock:
            self.active.pop(proc.pid, None)
        if killed:
            # A killed group leaves its orphans' zombies to us (subreaper):
            # collect them now rather than at the next periodic scan. Not done
            # after every exec: a /proc scan costs more than spawning `true`.
            self.reap_kick.set()


PROCS = Processes()


def kill_group(pgid, sig):
    try:
        if hasattr(os, "killpg"):
            os.killpg(pgid, sig)
        else:  # no process groups on this platform: best effort on the leader
            os.kill(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError:
        pass


# ---- Linux process-tree helpers (subreaper, zombie reaping, shutdown) ----


def scan_proc():
    """pid -> (ppid, pgrp, state) for every process in /proc; {} elsewhere."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open("/proc/%s/stat" % name, os.O_RDONLY)
            try:
                data = os.read(fd, 1024)
            finally:
                os.close(fd)
            # "pid (comm) S ppid pgrp ..." -- comm may hold spaces and parens.
            fields = data[data.rindex(b")") + 2 :].split()
            table[int(name)] = (int(fields[1]), int(fields[2]), fields[0][:1])
        except (OSError, ValueError, IndexError):
            continue
    return table


def descendants(table, root):
    children = {}
    for pid, (ppid, _pgrp, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


PROC_MARKER = "HF_SANDBOX_PROC"
_markers = [0]
_markers_lock = threading.Lock()


def new_marker():
    with _markers_lock:
        _markers[0] += 1
        return "%d-%d" % (os.getpid(), _markers[0])


def has_marker(pid, entry):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def family(leader, marker):
    """Live pids of everything a command started (Linux): the leader's
    descendants, and every descendant of this server that carries the
    command's marker -- an orphan that left the group (setsid, a double-fork
    daemon) is re-parented to us, the subreaper, and keeps its environment --
    with their descendants. A process that cleared its environment AND
    left the tree is not found; shutdown still kills it."""
    table = scan_proc()
    found = set()
    if leader is not None and leader in table:  # None: reaped, its pid may belong to another now
        found.add(leader)
        found.update(descendants(table, leader))
    if marker is not None:
        entry = ("%s=%s" % (PROC_MARKER, marker)).encode()
        for pid in descendants(table, os.getpid()):
            if pid not in found and has_marker(pid, entry):
                found.add(pid)
                found.update(descendants(table, pid))
    return set(p for p in found if table.get(p, (0, 0, b"Z"))[2] != b"Z")


FAMILY_KILL_BOUND = 3.0  # KILL: how long kill_family waits for the last member to die


def kill_family(leader, marker, sig):
    """Signal a command's process group and everything it started, wherever it
    moved. With SIGKILL, repeat until none is left (a dying shell may have just
    forked), within FAMILY_KILL_BOUND. Returns whether anything was signalled.
    `leader` is None once the leader was reaped (its group may be gone too)."""
    if leader is not None:
        kill_group(leader, sig)
    if not IS_LINUX:
        return False
    signalled = False
    deadline = time.monotonic() + FAMILY_KILL_BOUND
    while True:
        members = family(leader, marker)
        for pid in members:
            signalled = True
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig != signal.SIGKILL or not members or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if signalled:
        PROCS.reap_kick.set()  # adopted orphans die as zombies of ours
    return signalled


def become_subreaper():
    """Processes that daemonize (double fork, setsid) get re-parented to us
    instead of init, so shutdown can still find and kill them."""
    if not IS_LINUX:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


PR_SET_PDEATHSIG = 1


def die_with_parent(sig):
    """Ask the kernel to send us `sig` when our parent thread exits (Linux)."""
    if not IS_LINUX:
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except Exception:
        return False


def kill_descendants(bound):
    """SIGKILL every descendant of this process and reap them, again and again
    (a dying shell may have just forked) until none is left or `bound`
    seconds passed. Returns how many were killed. Only for a process that
    reads no exit codes any more: it uses waitpid(-1)."""
    me, killed = os.getpid(), set()
    deadline = time.monotonic() + bound
    while True:
        table = scan_proc()
        victims = [p for p in descendants(table, me) if table[p][2] != b"Z"]
        for pid in victims:
            killed.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except OSError:
                break
            if pid == 0:
                break
        if not victims or time.monotonic() > deadline:
            return len(killed)
        time.sleep(0.01)


def supervise(remove_dir, journal=None):
    """--supervise (Linux): fork. The child returns and becomes the server; this
    process stays as its supervisor, a subreaper above it. However the server
    ends -- shutdown, a crash, SIGKILL, the OOM killer -- every process it
    started is re-parented here (the server itself is a subreaper, and
    orphans climb to the nearest one), so the supervisor kills them all,
    removes the temporary files its `journal` lists and `remove_dir`, and
    exits the way the server did (re-raising its signal), so that whoever
    started us sees the real cause. Signals that ask for a shutdown are
    passed on to the server."""
    if not IS_LINUX or not become_subreaper():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = os.getpid()
    server = os.fork()
    if server == 0:
        # A supervisor killed outright must not leave a server nobody watches: the
        # server then shuts down as on SIGTERM and kills what it started.
        die_with_parent(signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def forward(signum, _frame):
        try:
            os.kill(server, signum)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, forward)
    status = 0
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == server:
            break
    # Said at once, before the cleanup: the client reports the cause to calls failing meanwhile.
    signaled = os.WIFSIGNALED(status)
    exited = {"event": "exited", "exit_code": None if signaled else os.WEXITSTATUS(status)}
    exited["signal"] = os.WTERMSIG(status) if signaled else None
    try:
        sys.stdout.write(json.dumps(exited, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # nobody reads our stdout any more (a detached sandbox)
    how = (
        "was killed by signal %d" % exited["signal"]
        if signaled
        else "exited with status %d" % exited["exit_code"]
    )
    # At once too: the clients of a detached sandbox (no one reads our stdout) find the cause in its log.
    log("supervisor: the server %s" % how)
    left = kill_descendants(5.0)
    if left:
        log("supervisor: killed %d process(es) the server left" % left)
    if journal:
        parts = replay_journal(journal)
        if parts:
            log("supervisor: removed %d temporary file(s) of writes the server left unfinished" % parts)
    if remove_dir:
        shutil.rmtree(remove_dir, ignore_errors=True)
        # The local provider's owner marker beside it (DIR.owner) means nothing once DIR is gone.
        try:
            os.unlink(remove_dir.rstrip("/") + ".owner")
        except OSError:
            pass
    sys.stderr.flush()
    if signaled:
        sig = exited["signal"]
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset (and setting one fails)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def reaper_loop():
    """Reap adopted orphans. Never waitpid(-1): that would steal exit codes
    from the Popen objects the exec handlers are waiting on."""
    me = os.getpid()
    while True:
        PROCS.reap_kick.wait(1.0)
        PROCS.reap_kick.clear()
        with PROCS.lock:
            if PROCS.spawning:
                continue
            table = scan_proc()
            for pid, (ppid, _pgrp, state) in table.items():
                if ppid == me and state == b"Z" and pid not in PROCS.active:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except OSError:
                        pass
            # Forget groups that have no live member, so a recycled pgid can
            # never make shutdown signal a stranger.
            live = set(pg for (_pp, pg, st) in table.values() if st != b"Z")
            PROCS.groups &= live | set(PROCS.active)


def groups_alive(groups):
    if not groups:
        return False
    if IS_LINUX:
        return any(pg in groups and st != b"Z" for (_pp, pg, st) in scan_proc().values())
    for pg in groups:
        try:
            os.killpg(pg, 0)
            return True
        except OSError:
            continue
    return False


def kill_everything():
    """SIGTERM every group we started, give them KILL_GRACE, SIGKILL the rest
    and then every remaining descendant. Bounded: never waits longer."""
    with PROCS.lock:
        PROCS.closed = True
        groups = set(PROCS.groups)
    for pg in groups:
        kill_group(pg, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline and groups_alive(groups):
        time.sleep(0.02)
    with PROCS.lock:
        groups |= PROCS.groups  # a spawn that raced with `closed`
    for pg in groups:
        kill_group(pg, signal.SIGKILL)
    # Then every remaining descendant, reaped before exiting instead of left as zombies to an init
    # that may not reap (some container PID 1s never do). waitpid(-1) is safe only now: nobody will
    # read these exit codes any more.
    if IS_LINUX:
        kill_descendants(0.5)
        return
    deadline = time.monotonic() + 0.3
    while hasattr(os, "WNOHANG") and time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except OSError:
            break  # no children left
        if pid == 0:
            time.sleep(0.005)


# --------------------------------------------------------------------------
# Output left behind by background processes
# --------------------------------------------------------------------------


class Drainer(object):
    """Reads and discards pipes that an exec left open.

    When a command exits but something it backgrounded still holds its
    stdout/stderr, the exec ends without that output. Closing our read end
    would make the background process die of SIGPIPE on its next write (a
    dev server logging a request, say), so one shared thread keeps draining
    those pipes until their writers go away.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = []
        self._wake_w = None

    def adopt(self, fileobj):
        with self._lock:
            if self._wake_w is None:
                r, w = os.pipe()
                os.set_blocking(r, False)
                os.set_blocking(w, False)
                self._wake_w = w
                threading.Thread(target=self._run, args=(r,), name="drain", daemon=True).start()
            self._queue.append(fileobj)
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # pipe full: a wake-up is already pending

    def _run(self, wake_r):
        sel = new_selector()
        sel.register(wake_r, selectors.EVENT_READ, None)
        while True:
            for key, _mask in sel.select():
                if key.data is None:
                    try:
                        os.read(wake_r, 4096)
                    except OSError:
                        pass
                    with self._lock:
                        queue, self._queue = self._queue, []
                    for f in queue:
                        sel.register(f.fileno(), selectors.EVENT_READ, f)
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    key.data.close()


DRAINER = Drainer()


# --------------------------------------------------------------------------
# Exec: request parsing, spawning, and the single-thread pump
# --------------------------------------------------------------------------


class ExecSpec(object):
    __slots__ = ("argv", "env", "cwd", "stdin", "timeout", "encoding", "marker", "stdin_pipe")


def parse_exec(req, legacy):
    spec = ExecSpec()
    cmd = req.get("cmd")
    shell = None if legacy else req.get("shell")
    if shell is not None and not isinstance(shell, bool):
        raise bad_request("`shell` must be true or false")
    if isinstance(cmd, str):
        if shell is False:
            raise bad_request("shell:false needs `cmd` as an array of strings (argv); got a string")
        if not cmd:
            raise bad_request("`cmd` is an empty string; pass a command line")
        spec.argv = ["/bin/sh", "-c", cmd]
    elif isinstance(cmd, list):
        if shell is True:
            raise bad_request("shell:true needs `cmd` as a string; got an array (send a string, or drop `shell`)")
        if not cmd:
            raise bad_request("`cmd` is an empty array; pass at least the program name")
        if not all(isinstance(a, str) for a in cmd):
            raise bad_request("every element of `cmd` must be a string")
        if not cmd[0]:
            raise bad_request("`cmd[0]` (the program) is an empty string")
        spec.argv = list(cmd)
    else:
        raise bad_request("`cmd` must be a string (run by /bin/sh -c) or an array of strings (argv)")
    for arg in spec.argv:
        if "\0" in arg:
            raise bad_request("`cmd` contains a NUL character")

    env = req.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise bad_request("`env` must be an object of string values")
    for k, v in env.items():
        if not isinstance(v, str):
            raise bad_request("`env` values must be strings: env.%s is %s" % (k, type(v).__name__))
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise bad_request("invalid environment variable name or value: %r" % k)
    spec.env = env

    cwd = req.get("workdir") if legacy else None
    if cwd is None:
        cwd = req.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd or "\0" in cwd:
            raise bad_request("`cwd` must be a non-empty path string")
        cwd = os.path.abspath(cwd)
        if not os.path.exists(cwd):
            raise bad_request(
                "working directory not found: %s (create it first, or pass an existing cwd)" % cwd, "cwd_not_found"
            )
        if not os.path.isdir(cwd):
            raise bad_request("working directory is not a directory: %s" % cwd, "not_a_directory")
    spec.cwd = cwd

    timeout = req.get("timeout")
    if timeout is None and legacy:
        timeout = LEGACY_TIMEOUT
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise bad_request("`timeout` must be a number of seconds")
        try:  # an integer beyond a float's range (10**400) is no number of seconds
            timeout = float(timeout)
        except OverflowError:
            timeout = math.inf
        if not math.isfinite(timeout) or timeout <= 0:
            raise bad_request("`timeout` must be a positive, finite number of seconds (omit it for no timeout)")
    spec.timeout = timeout

    stdin, stdin_b64 = req.get("stdin"), None if legacy else req.get("stdin_b64")
    if stdin is not None and stdin_b64 is not None:
        raise bad_request("pass either `stdin` or `stdin_b64`, not both")
    if stdin is not None:
        if not isinstance(stdin, str):
            raise bad_request("`stdin` must be a string")
        spec.stdin = stdin.encode("utf-8", "surrogatepass")
    elif stdin_b64 is not None:
        if not isinstance(stdin_b64, str):
            raise bad_request("`stdin_b64` must be a base64 string")
        try:
            spec.stdin = base64.b64decode(stdin_b64, validate=True)
        except (ValueError, TypeError):
            raise bad_request("`stdin_b64` is not valid base64")
    else:
        spec.stdin = None
    # True here; spawn() replaces it with the StdinPipe the stdin route writes to.
    stdin_pipe = None if legacy else req.get("stdin_pipe")
    if stdin_pipe is not None and not isinstance(stdin_pipe, bool):
        raise bad_request("`stdin_pipe` must be true or false")
    spec.stdin_pipe = True if stdin_pipe else None

    encoding = req.get("encoding", "utf-8") if not legacy else "utf-8"
    if encoding in ("utf-8", "utf8", None):
        spec.encoding = "utf-8"
    elif encoding == "base64":
        spec.encoding = "base64"
    else:
        raise bad_request("`encoding` must be \"utf-8\" or \"base64\"")
    return spec


def spawn(spec):
    """Start the command, or raise HttpError describing why it could not start.

    Spawn failures are answered before any streaming begins, so a client can
    tell "could not run" (4xx) from "ran and failed" (an exit code)."""
    env = dict(os.environ)
    env.update(spec.env)
    # Every process the command starts inherits the marker, so it is still found after it left the
    # command's process group and tree (setsid, double fork): see kill_family.
    spec.marker = new_marker()
    env[PROC_MARKER] = spec.marker
    name = spec.argv[0]
    try:
        proc = PROCS.spawn(
            spec.argv,
            stdin=subprocess.PIPE if spec.stdin or spec.stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.cwd,
            env=env,
            close_fds=True,
            start_new_session=True,
            bufsize=0,
        )
        if spec.stdin_pipe:
            # The pipe is the stdin route's, not the pump's: pump() sees no stdin and ends it via the spec.
            spec.stdin_pipe = StdinPipe(proc.stdin, spec.stdin or b"")
            proc.stdin = None
    except FileNotFoundError as e:
        if spec.cwd is not None and e.filename == spec.cwd:
            raise bad_request("working directory not found: %s" % spec.cwd, "cwd_not_found")
        found = os.path.exists(name) if "/" in name else shutil.which(name, path=env.get("PATH", os.defpath))
        if found:
            # The file exists, so ENOENT came from its #! interpreter.
            raise bad_request("cannot run %s: its interpreter (the #! line) was not found" % name, "command_not_found")
        if "/" in name:
            raise bad_request("command not found: %s (no such file)" % name, "command_not_found")
        raise bad_request("command not found: %s (not on PATH)" % name, "command_not_found")
    except PermissionError:
        raise bad_request("permission denied: %s (is it executable? is it a directory?)" % name, "permission_denied")
    except NotADirectoryError as e:
        if spec.cwd is not None and e.filename == spec.cwd:
            raise bad_request("working directory is not a directory: %s" % spec.cwd, "not_a_directory")
        raise bad_request("cannot run %s: a component of the path is not a directory" % name, "command_not_found")
    except ValueError as e:
        raise bad_request("cannot run %s: %s" % (name, e))
    except OSError as e:
        raise bad_request("cannot run %s: %s" % (name, e.strerror or e), "spawn_failed")
    log_command_start(proc, spec)
    return proc


class ExecResult(object):
    __slots__ = ("returncode", "timed_out", "duration_ms")


# --------------------------------------------------------------------------
# Streamed stdin (`stdin_pipe`, POST /v1/processes/{id}/stdin)
# --------------------------------------------------------------------------
#
# A quick tunnel's edge delivers a request body only once it is complete and
# refuses one over 100 MB, so streamed stdin is a series of bounded requests,
# each placed by its byte offset: a retry of a request whose answer was lost
# skips what was already written. Writes are non-blocking and done by the
# request's own thread; a command that does not read gets a partial answer
# after STDIN_STALL seconds instead of a request that never ends.

STDIN_BODY_LIMIT = 16 * 1024 * 1024
STDIN_WAIT = 0.25  # a blocked writer checks this often whether the command ended
STDIN_READ = 1024 * 1024  # body bytes taken from the socket at a time (into one reused buffer)
STDIN_PIPE_SIZE = 1024 * 1024  # Linux: a larger pipe wakes the writer and the reader 16x less often
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named only since Python 3.10


def env_seconds(name, default):
    """A positive number of seconds from the environment; the default when unset or not one."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return value if math.isfinite(value) and value > 0 else default


# Read once: the environment is the server's own, fixed at its start.
STDIN_STALL = env_seconds("SBX_STDIN_STALL", 20.0)


class StdinPipe(object):
    """The write end of a command's stdin, kept open until closed by the
    client (eof=1), the command's end (pump), or its reader going away (EPIPE).

    `turn` lets one request write at a time, in arrival order; `lock` guards
    the fd against a close from another thread (the pump's) mid-write."""

    def __init__(self, fileobj, initial):
        self.fileobj = fileobj
        self.fd = fileobj.fileno()
        os.set_blocking(self.fd, False)
        if IS_LINUX:
            try:
                import fcntl

                fcntl.fcntl(self.fd, F_SETPIPE_SZ, STDIN_PIPE_SIZE)
            except (ImportError, OSError):
                pass  # above /proc/sys/fs/pipe-max-size, or not allowed: the default pipe works too
        self.lock = threading.Lock()
        self.turn = threading.Lock()
        self.written = 0
        self.closed = False
        self.moved = threading.Condition()  # notified when `written`, `closed` or the turn change
        if initial:
            # `stdin`/`stdin_b64` are the bytes at offset 0, written before any request's.
            self.turn.acquire()
            threading.Thread(target=self._initial, args=(initial,), name="stdin-initial", daemon=True).start()

    def _initial(self, data):
        try:
            view = memoryview(data)
            while view and not self.closed:
                n = self.write(view, None)
                view = view[n:]
        finally:
            self.release_turn()

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                try:
                    self.fileobj.close()
                except OSError:
                    pass
        self._moved()

    def _moved(self):
        with self.moved:
            self.moved.notify_all()

    def take_turn(self, offset, stall):
        """Takes the turn for a body at `offset`. A body beyond what was written
        waits (up to `stall` seconds) for the bytes before it, which a client
        sending parts in parallel has in flight on another connection. False
        (without the turn) when the wait ran out."""
        deadline = time.monotonic() + stall
        while True:
            left = deadline - time.monotonic()
            if not self.turn.acquire(True, max(0.0, left)):
                return False
            if offset <= self.written or self.closed:
                return True
            self.turn.release()
            self._moved()
            with self.moved:
                if offset > self.written and not self.closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.moved.wait(left)

    def release_turn(self):
        self.turn.release()
        self._moved()

    def write(self, view, stall):
        """Writes a prefix of `view`; returns its length, 0 when the pipe is
        closed or no byte went in for `stall` seconds (None: no bound)."""
        deadline = None if stall is None else time.monotonic() + stall
        poller = None
        try:
            while True:
                n = self._try_write(view)
                if n or self.closed:
                    return n
                wait = STDIN_WAIT
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return 0
                    wait = min(wait, left)
                try:
                    if poller is None:
                        poller = new_selector()
                        poller.register(self.fd, selectors.EVENT_WRITE)
                    poller.select(wait)
                except (OSError, ValueError):  # closed by the pump meanwhile: the loop sees it
                    time.sleep(min(wait, 0.01))
        finally:
            if poller is not None:
                try:
                    poller.close()
                except OSError:
                    pass

    def _try_write(self, view):
        """One non-blocking write; 0 when the pipe is full or closed."""
        with self.lock:
            if self.closed:
                return 0
            try:
                n = os.write(self.fd, view)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError:  # EPIPE: the reader went away, like a closed pipe in a shell
                n = 0
                self.closed = True
                try:
                    self.fileobj.close()
                except OSError:
                    pass
            self.written += n
        self._moved()
        return n


def peer_closed(sock):
    """True when the client has closed (or reset) its side of the connection."""
    try:
        return sock.recv(1, _MSG_PEEK_FLAGS) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def pump(handler, proc, spec, sink, t0):
    """Drive one child to completion in the calling thread.

    Multiplexes stdin (non-blocking writes, so a child that never reads stdin
    cannot deadlock us), stdout/stderr, the child's exit (pidfd, or short
    polling where pidfd_open is missing) and the client socket (a hang-up kills
    the process group). Ends when the child has exited and its pipes reached
    EOF, or EXIT_QUIET after the exit if a background process still holds them.
    """
    sel = new_selector()
    readers = {}
    for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ, name)
        readers[name] = f
    stdin_view = None
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        stdin_view = memoryview(spec.stdin)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "stdin")
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        except OSError:
            pidfd = None
    sock = handler.connection if handler is not None else None  # None: a background process
    if sock is not None:
        sel.register(sock, selectors.EVENT_READ, "client")
    # An exec's sink may hold a stream back (back-pressure, see ExecSink) and wake us when a
    # reader has made room; other sinks never block.
    blocked = getattr(sink, "blocked", None)
    held = set()
    if blocked is not None:
        sel.register(sink.wake_fd, selectors.EVENT_READ, "wake")

    result = ExecResult()
    result.timed_out = False
    deadline = t0 + spec.timeout if spec.timeout is not None else None
    exited_at = None
    last_output = 0.0
    poll_delay = 0.001
    finished = False
    try:
        sink.start(proc.pid)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.returncode is not None:
                exited_at = now
            if blocked is not None:
                # Once the command has exited nothing is held back: what is left in its pipes is
                # read now, or a slow reader would let EXIT_DRAIN_MAX cut it off.
                for name, f in readers.items():
                    hold = exited_at is None and blocked(name)
                    if hold and name not in held:
                        sel.unregister(f.fileno())
                        held.add(name)
                    elif not hold and name in held:
                        sel.register(f.fileno(), selectors.EVENT_READ, name)
                        held.discard(name)
            if exited_at is not None:
                quiet_until = max(exited_at, last_output) + EXIT_QUIET
                if not readers or now >= quiet_until or now - exited_at >= EXIT_DRAIN_MAX:
                    break
                wait = quiet_until - now
            else:
                wait = None
                if pidfd is None:
                    wait = poll_delay
                    poll_delay = min(poll_delay * 2, 0.05)
                if deadline is not None:
                    # Bounded: poll() takes at most ~24 days, and a timeout may be any finite number.
                    left = min(max(0.0, deadline - now), MAX_SELECT_WAIT)
                    wait = left if wait is None else min(wait, left)
            tick = sink.next_tick(now)
            if tick is not None:
                wait = tick if wait is None else min(wait, tick)

            events = sel.select(wait)
            now = time.monotonic()
            for key, _mask in events:
                tag = key.data
                if tag == "stdout" or tag == "stderr":
                    try:
                        data = os.read(key.fd, OUTPUT_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        last_output = now
                        sink.output(tag, data)
                    else:
                        sel.unregister(key.fd)
                        readers.pop(tag).close()
                        sink.eof(tag)
                        poll_delay = 0.001  # EOF usually means the exit is imminent
                elif tag == "wake":
                    try:
                        os.read(key.fd, 4096)
                    except OSError:
                        pass
                elif tag == "stdin":
                    try:
                        n = os.write(key.fd, stdin_view[:FILE_CHUNK])
                    except BlockingIOError:
                        n = 0
                    except OSError:  # EPIPE: the child closed stdin; drop the rest
                        n = len(stdin_view)
                    stdin_view = stdin_view[n:]
                    if not stdin_view:
                        sel.unregister(key.fd)
                        proc.stdin.close()
                elif tag == "exit":
                    sel.unregister(key.fd)
                    proc.poll()
                elif tag == "client":
                    if peer_closed(sock):
                        raise ClientGone()
                    # Pipelined bytes of the next request: nothing to watch any more.
                    sel.unregister(sock)
            if pidfd is None and proc.returncode is None:
                proc.poll()
            if deadline is not None and proc.returncode is None and now >= deadline:
                kill_family(proc.pid, spec.marker, signal.SIGKILL)
                result.timed_out = True
                deadline = None
            sink.flush(now)
        finished = True
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        if spec.stdin_pipe is not None:
            spec.stdin_pipe.close()  # the command ended: a writer waiting on its stdin stops
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if not finished:
            # Client gone or an internal error: nobody will see this output.
            kill_family(proc.pid if proc.returncode is None else None, spec.marker, signal.SIGKILL)
        if proc.returncode is None:
            proc.wait()
        PROCS.reaped(proc, killed=result.timed_out or not finished)
        for f in readers.values():
            DRAINER.adopt(f)
        result.duration_ms = int((time.monotonic() - t0) * 1000)
        log_command_end(proc, spec, result, finished)
    result.returncode = proc.returncode
    sink.remaining(list(readers))
    return result


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


# --------------------------------------------------------------------------
# Background processes (/v1/processes)
# --------------------------------------------------------------------------
#
# A background process is spawned exactly like an exec (parse_exec + spawn)
# and driven by the same pump(), in a thread of its own with no client
# socket; its RingSink keeps the most recent `buffer_bytes` of each stream.
# Output followers and waiters read that state under the process's condition
# variable and never hold it while sending.

DEFAULT_BUFFER_BYTES = 1024 * 1024
DEFAULT_MAX_PROCESSES = 1024  # background processes and execs running at once
DEFAULT_MAX_EXITED = 1024  # exited background processes kept listed (with their output) at once
MAX_EXITED_BYTES = 256 * 1024 * 1024  # ...and the output they keep, together
MAX_BUFFER_BYTES = 64 * 1024 * 1024
FOLLOW_POLL = 0.25  # how often a follower / waiter checks that its client is still there
SIGNAL_NAMES = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "INT": signal.SIGINT}
if hasattr(signal, "SIGHUP"):
    SIGNAL_NAMES["HUP"] = signal.SIGHUP


# What a chunk costs beyond its bytes: its bytes object's header, its list slot, and its seq and
# start offset in OutputRing's arrays. Counted against `buffer_bytes`, so that tiny interleaved
# writes on stdout and stderr (a chunk per byte) cannot make a buffer cost many times its bound.
CHUNK_OVERHEAD = 64


class OutputRing(object):
    """One stream's buffered output: its chunks (bytes, as the pipe gave them or merged), and per
    chunk its sequence number and starting offset in typed arrays. Chunks are live from index
    `first`. Lookups by seq bisect (seqs only grow), so a replay costs what it sends, not what is
    buffered."""

    __slots__ = ("chunks", "seqs", "starts", "first", "size", "end")

    def __init__(self):
        self.chunks = []
        self.seqs = array.array("q")
        self.starts = array.array("q")
        self.first = 0
        self.size = 0  # bytes buffered
        self.end = 0  # bytes written: the stream offset after the newest byte

    def newest_seq(self):
        return self.seqs[-1] if len(self.seqs) > self.first else None

    def cost(self):
        # The newest chunk is free: a buffer of one stream written in one go keeps exactly its bound.
        return self.size + CHUNK_OVERHEAD * max(0, len(self.seqs) - self.first - 1)

    def append(self, seq, data, coalesce):
        if coalesce and len(self.chunks[-1]) + len(data) <= OUTPUT_CHUNK:
            self.chunks[-1] += data
            self.seqs[-1] = seq
        else:
            self.chunks.append(data)
            self.seqs.append(seq)
            self.starts.append(self.end)
        self.size += len(data)
        self.end += len(data)

    def evict(self, excess):
        """Drops the oldest bytes (whole chunks first) until the cost is `excess` lower; returns how
        many bytes went."""
        dropped = 0
        chunks, seqs, starts = self.chunks, self.seqs, self.starts
        while excess > 0 and self.first < len(seqs):
            i = self.first
            chunk = chunks[i]
            newest = i + 1 == len(seqs)  # it only ever loses a prefix: it is not counted as a chunk
            if excess >= len(chunk):
                chunks[i] = None
                self.first += 1
                dropped += len(chunk)
                excess -= len(chunk) + (0 if newest else CHUNK_OVERHEAD)
            else:
                chunks[i] = chunk[excess:]
                starts[i] += excess
                dropped += excess
                excess = 0
        self.size -= dropped
        if self.first > 1024 and self.first * 2 > len(seqs):
            del chunks[: self.first]
            del seqs[: self.first]
            del starts[: self.first]
            self.first = 0
        return dropped

    def collect(self, name, after, upto, limit):
        """Up to `limit` chunks (seq, name, start, bytes) with after < seq <= upto, oldest first."""
        seqs, out = self.seqs, []
        n = len(seqs)
        i = bisect.bisect_right(seqs, after, self.first, n)
        while i < n and len(out) < limit and seqs[i] <= upto:
            out.append((seqs[i], name, self.starts[i], self.chunks[i]))
            i += 1
        return out


class BgProcess(object):
    def __init__(self, pid, cmd, tag, limit, spec, proc, kind="process"):
        self.id = None
        self.kind = kind  # "process" (POST /v1/processes) or "exec" (POST /v1/exec): see ExecSink
        self.pid = pid
        self.cmd = cmd
        self.tag = tag
        self.limit = limit
        self.spec = spec
        self.proc = proc
        self.started_at_ms = int(time.time() * 1000)
        self.cond = threading.Condition()
        self.seq = 0  # sequence number of the newest chunk, both streams
        self.rings = {"stdout": OutputRing(), "stderr": OutputRing()}
        self.total = {"stdout": 0, "stderr": 0}  # bytes written, per stream
        self.dropped = {"stdout": 0, "stderr": 0}  # ...of which evicted: the offset of the oldest one kept
        self.result = None  # ExecResult once the process ended and its output was read
        # Execs only: the furthest raw offset any reader has handed to its socket, per stream (the
        # back-pressure window counts from there), the readers attached now, and since when none is.
        self.sent = {"stdout": 0, "stderr": 0}
        self.readers = 0
        self.detached_at = time.monotonic()
        self.ended_at = None
        self.paused = False  # the pump waits for a reader to advance: advance() wakes it
        self.wake_w = None
        self.key = None  # idempotency key, with the request it stands for
        self.fingerprint = None

    def info(self):
        r = self.result
        rc = r.returncode if r is not None else None
        return {
            "id": self.id,
            "kind": self.kind,
            "pid": self.pid,
            "cmd": self.cmd,
            "tag": self.tag,
            "started_at_ms": self.started_at_ms,
            "running": r is None,
            "exit_code": rc if rc is not None and rc >= 0 else None,
            "signal": -rc if rc is not None and rc < 0 else None,
        }

    # ---- called by the pump thread (RingSink) ----

    def append(self, name, data):
        with self.cond:
            ring = self.rings[name]
            self.seq += 1
            # Coalesce with the stream's newest chunk when nothing came in between; its new seq makes
            # followers that already sent its prefix send the rest.
            ring.append(self.seq, data, ring.newest_seq() == self.seq - 1)
            self.total[name] += len(data)
            excess = ring.cost() - self.limit
            if self.kind == "exec":
                # Keep a window behind what was sent (it may still sit in socket or proxy buffers
                # when a connection drops); the limit only bites after the exit, when back-pressure
                # no longer holds the command (see ExecSink.blocked).
                excess = max(excess - 2 * self.limit, self.sent[name] - self.limit - self.dropped[name])
            if excess > 0:
                self.dropped[name] += ring.evict(excess)
            self.cond.notify_all()

    def finished(self, result):
        with self.cond:
            self.result = result
            self.ended_at = time.monotonic()
            self.cond.notify_all()
        BGPROCS.release()
        if self.kind == "exec":
            JANITOR.poke()
        else:
            BGPROCS.forget_exited()

    def buffered(self):
        """Bytes of output this record holds."""
        with self.cond:
            return self.rings["stdout"].size + self.rings["stderr"].size

    # ---- execs: readers and back-pressure ----

    def attach(self):
        with self.cond:
            self.readers += 1
            self.detached_at = None

    def detach(self):
        with self.cond:
            self.readers -= 1
            if self.readers == 0:
                self.detached_at = time.monotonic()
        JANITOR.poke()
        self.wake()  # nobody attached: the pump may fill the whole window

    def wake(self):
        with self.cond:
            if not self.paused:
                return
            self.paused = False
            # Written under the lock that close() takes to retire the fd: never to a number since reused.
            if self.wake_w is not None:
                try:
                    os.write(self.wake_w, b"\0")
                except OSError:
                    pass  # pipe full (a wake-up is pending)

    def advance(self, pos):
        """A reader handed the bytes before `pos` (per stream) to its socket."""
        with self.cond:
            moved = False
            for name, n in pos.items():
                if n > self.sent[name]:
                    self.sent[name] = n
                    moved = True
        if moved:
            self.wake()

    # ---- called by followers, under self.cond ----

    def collect(self, after, upto, limit=256):
        """Chunks (seq, name, start, bytes) with after < seq <= upto, oldest
        first, at most `limit` of them."""
        out = []
        for name, ring in self.rings.items():
            out.extend(ring.collect(name, after, upto, limit))
        out.sort(key=lambda c: c[0])
        return out[:limit]


class RingSink(QuietSink):
    """pump() sink of a background process: output goes to its ring buffers."""

    def __init__(self, bg):
        self.bg = bg

    def output(self, name, data):
        self.bg.append(name, data)


class ExecSink(RingSink):
    """pump() sink of an exec: its buffer doubles as the back-pressure window.

    The pump stops reading a stream while more than `limit` of its bytes wait to be sent to a
    reader, so a slow or disconnected client pauses the command instead of losing its output.
    Readers (Handler.follow_output) wake the pump through a pipe when they make room."""

    def __init__(self, bg):
        RingSink.__init__(self, bg)
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.wake_fd = r
        bg.wake_w = w

    def blocked(self, name):
        bg = self.bg
        with bg.cond:
            # With a reader attached, read one chunk ahead of it, no more: the pipe fills meanwhile and
            # the next read takes a whole chunk. Reading every few KiB as they come, each sent on its
            # own, costs several times the CPU. Nobody attached: fill the window.
            room = bg.limit if bg.readers == 0 else min(bg.limit, OUTPUT_CHUNK)
            if bg.total[name] - bg.sent[name] < room:
                return False
            bg.paused = True
            return True

    def close(self):
        with self.bg.cond:
            w, self.bg.wake_w = self.bg.wake_w, None
        for fd in (self.wake_fd, w):
            try:
                os.close(fd)
            except OSError:
                pass


class BgTable(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.next_id = 1
        self.by_id = {}
        self.by_key = {}  # idempotency key -> BgProcess, for as long as the record is kept
        # Running background processes and execs: each holds a thread and three descriptors.
        self.running = 0
        self.max_running = DEFAULT_MAX_PROCESSES  # SBX_MAX_PROCESSES / --max-processes, set by main()
        self.max_exited = DEFAULT_MAX_EXITED  # SBX_MAX_EXITED / --max-exited, set by main()
        # Keys a client gave up (DELETE /v1/processes?idempotency_key=): key -> when, oldest first.
        # A request carrying one that arrives after the cancel is refused, so a command whose
        # request was still in flight when its caller was interrupted never starts.
        self.cancelled = {}

    def claim(self):
        """Reserve a slot for a command about to be spawned; 503 when all are taken. The slot is
        given back by release(), once the command has ended (BgProcess.finished) or failed to start."""
        with self.lock:
            if self.running >= self.max_running:
                message = (
                    "too many background processes: %d are running, the most this server runs at once "
                    "(SBX_MAX_PROCESSES / --max-processes); wait for some to end or kill them, then try again"
                )
                raise HttpError(503, message % self.running, "too_many_processes")
            self.running += 1

    def release(self):
        with self.lock:
            self.running -= 1

    def forget_exited(self):
        """An exited background process stays listed, with its output and exit status, until the
        oldest ones are forgotten (404 from then on) to keep at most `max_exited` of them and at most
        MAX_EXITED_BYTES of their output. Execs have their own retention (Janitor)."""
        with self.lock:
            exited = [b for b in self.by_id.values() if b.kind == "process" and b.ended_at is not None]
        exited.sort(key=lambda b: b.ended_at)
        kept = sum(b.buffered() for b in exited)
        while len(exited) > 1 and (len(exited) > self.max_exited or kept > MAX_EXITED_BYTES):
            oldest = exited.pop(0)
            kept -= oldest.buffered()
            self.remove(oldest)

    def spawn(self, spec):
        """spawn(spec) within the bound on running commands."""
        self.claim()
        try:
            return spawn(spec)
        except BaseException:
            self.release()
            raise

    def add(self, bg):
        with self.lock:
            bg.id = "%s-%d" % ("e" if bg.kind == "exec" else "p", self.next_id)
            self.next_id += 1
            self.by_id[bg.id] = bg
            if bg.key is not None:
                self.by_key[bg.key] = bg

    def by_idempotency_key(self, key, fingerprint):
        """The record a key stands for, or None; 409 if the key came with another request or was
        cancelled."""
        with self.lock:
            bg = self.by_key.get(key)
            cancelled = key in self.cancelled
        if cancelled:
            message = "idempotency_key %r was cancelled by its client: use a new key for a new command"
            raise HttpError(409, message % (key,), "idempotency_cancelled")
        if bg is not None and bg.fingerprint != fingerprint:
            message = "idempotency_key %r was used for %s (%s), a different request: use a new key for a new command"
            raise HttpError(409, message % (key, bg.id, bg.kind), "idempotency_conflict")
        return bg

    def cancel(self, key, retain):
        """Spends `key` for `retain` seconds (at most MAX_CANCELLED keys are remembered) and
        returns the record it stands for, or None when no request with it has arrived yet."""
        now = time.monotonic()
        with self.lock:
            self.cancelled.pop(key, None)
            self.cancelled[key] = now  # dicts keep insertion order: the oldest come first
            for old, at in list(self.cancelled.items()):
                if len(self.cancelled) <= MAX_CANCELLED and now - at < retain:
                    break
                del self.cancelled[old]
            return self.by_key.get(key)

    def remove(self, bg):
        with self.lock:
            self.by_id.pop(bg.id, None)
            if bg.key is not None and self.by_key.get(bg.key) is bg:
                del self.by_key[bg.key]

    def all(self):
        with self.lock:
            return sorted(self.by_id.values(), key=lambda b: int(b.id[2:]))

    def find(self, key):
        """By id, or by the OS pid of a listed process (the newest such)."""
        with self.lock:
            bg = self.by_id.get(key)
            pid = parse_decimal(key, 2**32) if bg is None else None
            if pid is not None:
                for b in sorted(self.by_id.values(), key=lambda b: -int(b.id[2:])):
                    if b.pid == pid:
                        bg = b
                        break
        if bg is None:
            raise HttpError(404, "no such process: %s" % key, "not_found")
        return bg


MAX_CANCELLED = 4096  # cancelled idempotency keys remembered at once
BGPROCS = BgTable()


def run_background(bg, t0):
    """The thread of one background process or exec: pump it to completion."""
    result = None
    sink = ExecSink(bg) if bg.kind == "exec" else RingSink(bg)
    try:
        result = pump(None, bg.proc, bg.spec, sink, t0)
    except Exception:
        log("background process %s failed:\n%s" % (bg.id, traceback.format_exc()))
        if bg.proc.returncode is None:
            kill_group(bg.proc.pid, signal.SIGKILL)
            bg.proc.wait()
        result = ExecResult()
        result.returncode = bg.proc.returncode
        result.timed_out = False
        result.duration_ms = int((time.monotonic() - t0) * 1000)
    finally:
        if bg.kind == "exec":
            sink.close()
        STATE.end()  # a running background process counts as a request in flight
        bg.finished(result)


IDEMPOTENCY_KEY = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")
# The fields that make two requests "the same command" for an idempotency key.
IDEMPOTENT_FIELDS = ("cmd", "shell", "env", "cwd", "workdir", "stdin", "stdin_b64", "stdin_pipe")
KEYED = threading.Lock()  # check-then-spawn of keyed requests is one step: a key runs one command


def buffer_bytes(req, default):
    """The request's `buffer_bytes` (a command's output window), checked."""
    limit = req.get("buffer_bytes", default)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BUFFER_BYTES:
        raise bad_request("`buffer_bytes` must be an integer from 1 to %d (64 MiB)" % MAX_BUFFER_BYTES)
    return limit


def checked_idempotency_key(key):
    if not isinstance(key, str) or not IDEMPOTENCY_KEY.match(key):
        raise bad_request("`idempotency_key` must be 1 to 128 characters of A-Z a-z 0-9 . _ : - (got %r)" % (key,))
    return key


def idempotency(req, kind):
    """(key, fingerprint) of a request, (None, None) without a key."""
    key = req.get("idempotency_key")
    if key is None:
        return None, None
    checked_idempotency_key(key)
    fields = dict((k, req.get(k)) for k in IDEMPOTENT_FIELDS if req.get(k) is not None)
    return key, kind + " " + json.dumps(fields, sort_keys=True, separators=(",", ":"))


def start_background(bg, t0):
    """Register `bg` (spawned) and run its pump in a thread of its own."""
    BGPROCS.add(bg)
    STATE.begin()  # ended by run_background
    try:
        threading.Thread(target=run_background, args=(bg, t0), name="bg-" + bg.id, daemon=True).start()
    except Exception:
        proc = bg.proc
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        PROCS.reaped(proc, True)
        result = ExecResult()
        result.returncode, result.timed_out, result.duration_ms = proc.returncode, False, 0
        bg.finished(result)
        STATE.end()
        raise


def start_keyed(req, spec, kind, tag, limit, attach=False):
    """Starts the command of an exec or spawn request (`kind` "exec" or "process"), or finds the one
    its idempotency key already started: (record, existing). The key's check and the spawn are one
    step under KEYED, so a key runs one command; `attach` makes the caller a reader before the
    command's output can pile up unread."""
    key, fingerprint = idempotency(req, kind)
    with KEYED if key is not None else contextlib.nullcontext():
        bg = BGPROCS.by_idempotency_key(key, fingerprint) if key is not None else None
        if bg is not None:
            if attach:
                bg.attach()
            return bg, True
        t0 = time.monotonic()
        proc = BGPROCS.spawn(spec)
        bg = BgProcess(proc.pid, req.get("cmd"), tag, limit, spec, proc, kind=kind)
        bg.key, bg.fingerprint = key, fingerprint
        if attach:
            bg.attach()
        try:
            start_background(bg, t0)  # gives it its id
        except Exception:
            if attach:
                bg.detach()
            raise
        return bg, False


# --------------------------------------------------------------------------
# Execs that outlive their connection
# --------------------------------------------------------------------------
#
# An exec is a record of BGPROCS (kind "exec") pumped by its own thread; the
# POST /v1/exec connection is only its first reader. When no reader is
# attached for SBX_EXEC_REATTACH seconds the command is killed (whole family);
# a finished exec is forgotten SBX_EXEC_RETAIN seconds after it ended.

DEFAULT_EXEC_BUFFER = 8 * 1024 * 1024
# Seconds a dropped exec waits for a reader to reattach. A client that gives a command up kills it
# itself (DELETE /v1/processes/{id}): a dropped connection is no longer a kill.
EXEC_REATTACH_DEFAULT = 60.0
EXEC_RETAIN_DEFAULT = 300.0  # seconds a finished exec's record and output are kept


class Janitor(object):
    """One thread that kills abandoned execs and forgets expired ones, waking
    at the next deadline or when an exec is detached or finishes."""

    def __init__(self):
        self.cond = threading.Condition()
        self.started = False
        self.kicked = False
        self.grace = EXEC_REATTACH_DEFAULT  # SBX_EXEC_REATTACH, set by main()
        self.retain = EXEC_RETAIN_DEFAULT  # SBX_EXEC_RETAIN

    def poke(self):
        with self.cond:
            if not self.started:
                self.started = True
                threading.Thread(target=self._run, name="exec-janitor", daemon=True).start()
            self.kicked = True
            self.cond.notify()

    def _run(self):
        while True:
            grace, retain = self.grace, self.retain
            now = time.monotonic()
            wait = None
            for bg in BGPROCS.all():
                if bg.kind != "exec":
                    continue
                with bg.cond:
                    ended, detached, running = bg.ended_at, bg.detached_at, bg.result is None
                    abandoned = running and bg.readers == 0 and detached is not None
                    if abandoned and now - detached >= grace:
                        bg.detached_at = None  # killed once; the exit follows
                    # Until the pump has reaped the leader its pid (the group id) cannot be recycled.
                    leader = bg.pid if bg.proc.returncode is None else None
                if not running:
                    due = ended + retain
                    if now >= due:
                        BGPROCS.remove(bg)
                        continue
                elif abandoned:
                    due = detached + grace
                    if now >= due:
                        log("exec %s: no reader for %g s, killing it" % (bg.id, grace))
                        kill_family(leader, bg.spec.marker, signal.SIGKILL)
                        continue
                else:
                    continue
                wait = due - now if wait is None else min(wait, due - now)
            with self.cond:
                if not self.kicked:
                    self.cond.wait(wait)
                self.kicked = False


JANITOR = Janitor()


def parse_signal(raw):
    if raw is None:
        return signal.SIGKILL
    name = raw.strip().upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name in SIGNAL_NAMES:
        return SIGNAL_NAMES[name]
    number = parse_decimal(name, 65)
    if number is not None and number >= 1:
        return number
    raise bad_request("invalid signal %r: use TERM, KILL, INT, HUP or a number" % raw)


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
            m = CHUNK_LINE.match(read_line(self.rfile, CHUNK_LINE_MAX, 400))
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
# Files
# --------------------------------------------------------------------------


def fs_error(e, path, action):
    """Map an OSError to an HttpError whose message names the path."""
    err = getattr(e, "errno", None)
    what = "cannot %s %s" % (action, path)
    if err == errno.ENOENT:
        return HttpError(404, "%s: no such file or directory" % what, "not_found")
    if err == errno.EISDIR:
        return HttpError(409, "%s: it is a directory" % what, "is_a_directory")
    if err == errno.ENOTDIR:
        return HttpError(400, "%s: a component of the path is not a directory" % what, "not_a_directory")
    if err == errno.ENOTEMPTY:
        return HttpError(409, "%s: directory not empty (delete it recursively)" % what, "not_empty")
    if err == errno.EEXIST:
        return HttpError(409, "%s: it already exists" % what, "already_exists")
    if err in (errno.EACCES, errno.EPERM):
        return HttpError(400, "%s: permission denied" % what, "permission_denied")
    if err in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return HttpError(507, "%s: no space left on device" % what, "no_space")
    if err == errno.EROFS:
        return HttpError(400, "%s: read-only file system" % what, "read_only")
    if isinstance(e, ValueError):
        return HttpError(400, "%s: %s" % (what, e), "bad_request")
    return HttpError(400, "%s: %s" % (what, getattr(e, "strerror", None) or e), "io_error")


def make_parents(path, action):
    """Create the parent directories of `path`. A file in the way is ENOTDIR's
    not_a_directory (makedirs reports it as EEXIST, which would say "exists")."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError:
        message = "cannot %s %s: a component of the path is not a directory" % (action, path)
        raise bad_request(message, "not_a_directory")
    except OSError as e:
        raise fs_error(e, parent, "create the parent directory of")


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---- atomic writes ----
#
# A write that takes more than one request (a "transfer": ranges sent in
# parallel, or one after the other) goes to a temporary file beside its
# destination, named after the client's transfer id, and a commit request
# renames it into place. An abandoned transfer's temporary file is removed:
# at once when a client hangs up mid-body, else once no byte of it has
# arrived for TRANSFER_STALE seconds. A transfer that was removed stays
# refused (410), so a late range can never rebuild a file with holes.

TRANSFER_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")  # \Z: `$` would take a trailing newline
TRANSFER_DEAD_KEEP = 4096  # removed transfer ids remembered, oldest forgotten first


def transfer_stale_seconds():
    return env_seconds("SBX_TRANSFER_STALE", 120.0)


def temp_beside(dest, tag):
    """A hidden name in the destination's directory (so that the rename is
    atomic) that says what it is and cannot collide with a user's file."""
    return os.path.join(os.path.dirname(dest), ".%s.hf-sandbox-%s.part" % (os.path.basename(dest), tag))


def write_target(path):
    """Where a write to `path` lands: through symlinks (as an in-place write
    would), so the rename replaces the file a link points to, not the link."""
    return os.path.realpath(path)


def is_special(dest):
    """A device, FIFO or socket: written in place, never replaced by a
    regular file (a write to /dev/null must not put a file there)."""
    try:
        kind = os.stat(dest).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(kind) and not stat.S_ISDIR(kind)


def dir_writable(dest):
    return os.access(os.path.dirname(dest), os.W_OK | os.X_OK)


def replace_file(tmp, dest):
    """Renames `tmp` over `dest`. A file that is a mount point (a container's
    bind-mounted /etc/hosts) cannot be renamed over: its content is copied in
    place instead, the best that can be done for it."""
    try:
        os.replace(tmp, dest)
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        with open(tmp, "rb") as src, open(dest, "r+b") as out:
            out.truncate(0)
            shutil.copyfileobj(src, out, FILE_CHUNK)
        os.chmod(dest, stat.S_IMODE(os.stat(tmp).st_mode))
        os.unlink(tmp)


def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# ---- the journal of temporary files ----
#
# A server killed outright (SIGKILL, the OOM killer) cannot remove the
# temporary files of the writes it was in the middle of, and they may be
# anywhere on the machine. So each one is recorded, before it is created,
# in a journal directory (--journal) that outlives the server: its
# supervisor, a server started later on the same journal, or the client's
# sweep of a crashed sandbox removes what it lists. An entry is a symlink
# named by a digest of the file's path and pointing to it: symlink(2) adds
# and unlink(2) removes one atomically, in one system call, with no file to
# rewrite and no lock, so the journal costs a write next to nothing.

TEMP_NAME_RE = re.compile(r"^\..+\.hf-sandbox-[A-Za-z0-9_-]{8,64}\.part$", re.S)
JOURNAL_ENTRY_RE = re.compile(r"^[0-9a-f]{40}$")


class Journal(object):
    def __init__(self):
        self.dir = None

    def open(self, path):
        """Starts journaling into `path`, after removing what a crashed
        predecessor's journal there still lists. A directory that is not a
        journal is refused (os.mkdir fails), never emptied."""
        replay_journal(path)
        os.mkdir(path, 0o700)
        self.dir = path

    def _entry(self, tmp):
        return os.path.join(self.dir, hashlib.sha256(os.fsencode(tmp)).hexdigest()[:40])

    def add(self, tmp):
        if self.dir is None:
            return
        try:
            os.symlink(tmp, self._entry(tmp))
        except FileExistsError:
            pass
        except OSError as e:
            # The write itself can still succeed; only a crash during it would leave its file.
            log("cannot record %s in the journal %s: %s" % (shown(tmp), self.dir, e.strerror or e))

    def remove(self, tmp):
        """After `tmp` is gone (renamed into place or removed), never before."""
        if self.dir is not None:
            unlink_quietly(self._entry(tmp))


def replay_journal(path):
    """Removes every temporary file the journal at `path` lists, then the
    journal. Only a regular file with the name of one of our temporary files
    is ever removed, whatever a link points to, and only our entries (links
    with our names): a directory that is not a journal is left as it is.
    Returns how many files went."""
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not JOURNAL_ENTRY_RE.match(name):
            continue
        entry = os.path.join(path, name)
        try:
            tmp = os.readlink(entry)
        except OSError:
            continue  # not a link: not ours
        try:
            if os.path.isabs(tmp) and TEMP_NAME_RE.match(os.path.basename(tmp)):
                if stat.S_ISREG(os.lstat(tmp).st_mode):
                    os.unlink(tmp)
                    removed += 1
        except OSError:
            pass
        unlink_quietly(entry)
    try:
        os.rmdir(path)
    except OSError:
        pass
    return removed


JOURNAL = Journal()


class Transfers(object):
    """The temporary files of transfers in progress: how many requests are
    writing each, and when a byte last arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = {}  # temp path -> [requests writing, last activity (monotonic)]
        self.dead = {}  # temp path -> None, insertion ordered
        # temp path -> requests writing it, abandoned transfers included: its
        # journal entry goes only once none of them can create the file again.
        self.writers = {}
        self.sweeper = None
        self.stale = None

    def _bury(self, tmp):
        self.live.pop(tmp, None)
        self.dead[tmp] = None
        while len(self.dead) > TRANSFER_DEAD_KEEP:
            del self.dead[next(iter(self.dead))]
        unlink_quietly(tmp)
        if not self.writers.get(tmp):
            JOURNAL.remove(tmp)

    def gone(self, tmp):
        return HttpError(
            410,
            "the transfer %s was abandoned (cut short, aborted, or silent too long); write the file again" % tmp,
            "transfer_gone",
        )

    def begin(self, tmp):
        with self.lock:
            if tmp in self.dead:
                raise self.gone(tmp)
            if tmp not in self.live and not self.writers.get(tmp):
                JOURNAL.add(tmp)  # before the first request creates it
            self.writers[tmp] = self.writers.get(tmp, 0) + 1
            entry = self.live.setdefault(tmp, [0, time.monotonic()])
            entry[0] += 1
            entry[1] = time.monotonic()
            if self.sweeper is None:
                self.stale = transfer_stale_seconds()
                self.sweeper = threading.Thread(target=self._sweep, name="transfer-sweeper", daemon=True)
                self.sweeper.start()

    def touch(self, tmp):
        entry = self.live.get(tmp)  # a plain read and store: races only delay a sweep
        if entry is not None:
            entry[1] = time.monotonic()

    def end(self, tmp, failed):
        """One request is done with `tmp`; a failed one abandons the transfer."""
        with self.lock:
            left = self.writers.pop(tmp, 1) - 1
            if left > 0:
                self.writers[tmp] = left
            entry = self.live.get(tmp)
            if entry is None:
                # Aborted or swept while this request ran: what it may have
                # recreated since goes too.
                self._bury(tmp)
                if failed:
                    return
                raise self.gone(tmp)
            entry[0] -= 1
            entry[1] = time.monotonic()
            if failed:
                self._bury(tmp)

    def abort(self, tmp):
        with self.lock:
            known = tmp in self.live
            self._bury(tmp)
            return known

    def take(self, tmp):
        """Claims a finished transfer for its commit."""
        with self.lock:
            if tmp in self.dead:
                raise self.gone(tmp)
            entry = self.live.get(tmp)
            if entry is None:
                raise HttpError(404, "no transfer to commit at %s (send its ranges first)" % tmp, "not_found")
            if entry[0] > 0:
                raise HttpError(409, "the transfer to %s still has ranges being written" % tmp, "transfer_busy")
            del self.live[tmp]

    def committed(self, tmp):
        """A taken transfer's file is in place: nothing is left to remove."""
        with self.lock:
            if tmp not in self.live and not self.writers.get(tmp):
                JOURNAL.remove(tmp)

    def _sweep(self):
        # Bounded: one pass over the live transfers every quarter of the bound (at most 10 s).
        period = min(max(self.stale / 4.0, 0.05), 10.0)
        while True:
            time.sleep(period)
            now = time.monotonic()
            with self.lock:
                for tmp, (_, seen) in list(self.live.items()):
                    if now - seen > self.stale:
                        log("removed %s: no byte of its transfer for %.1fs" % (shown(tmp), now - seen))
                        self._bury(tmp)


TRANSFERS = Transfers()


def pread(fd, n, offset):
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def pread_all(fd, n, offset):
    parts, got = [], 0
    while got < n:
        data = pread(fd, n - got, offset + got)
        if not data:
            break  # the file shrank
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def entry(path, name=None, st=None, with_target=False, dir_fd=None):
    """An Entry with exactly the keys of HF's FileEntry (whose client rejects any
    other key), plus a symlink's `target` when `with_target`. With `dir_fd`, the
    target is read relative to that directory (by the last part of `path`), not
    through `path`'s parents, which may have been swapped for links meanwhile."""
    if st is None:
        st = os.lstat(path)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    else:
        kind = "file"
    out = {
        "name": name if name is not None else (os.path.basename(path) or path),
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mtime_ms": st.st_mtime_ns // 1000000,
        "mode": "%o" % stat.S_IMODE(mode),
    }
    if with_target and kind == "symlink":
        try:
            if dir_fd is None:
                out["target"] = os.readlink(path)
            else:
                out["target"] = os.readlink(os.path.basename(path), dir_fd=dir_fd)
        except OSError:
            pass  # vanished or unreadable: omit rather than send null
    return out


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class DirChanged(OSError):
    """A directory seen by lstat was something else when opened: swapped for a
    symlink, a file or another directory in between."""


def open_dir(name, dir_fd=None, seen=None):
    """A descriptor of the directory `name`. A listed directory's root is opened
    as given (a symlink there is followed, as the caller named it); a child
    (`dir_fd` given) never: it is opened relative to its parent's descriptor with
    O_NOFOLLOW, and must be the very directory `seen` (its lstat) described, so a
    directory swapped for a link between the lstat and the open is never entered."""
    if dir_fd is None:
        return os.open(name, _DIR_FLAGS)
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # now a symlink, or a file
            raise DirChanged(e.errno, "it was replaced while listing (now not a directory)")
        raise
    if seen is not None:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
            os.close(fd)
            raise DirChanged(errno.ESTALE, "it was replaced by another directory while listing")
    return fd


def scan_dir(path, failed=None, dir_fd=None):
    """The (name, lstat) pairs of a directory, sorted by name. `path` is a path,
    or, with `dir_fd`, an open directory descriptor (kept open; entries are
    stat'ed relative to it, never through a path). Raises OSError for the
    directory itself. An entry that vanishes meanwhile is left out; one that
    cannot be lstat'ed for another reason (a directory readable but not
    searchable) too, after appending (name, error) to `failed`."""
    children = []
    # scandir of a descriptor works on a duplicate of it: `dir_fd` stays open.
    with os.scandir(path if dir_fd is None else dir_fd) as it:
        for de in it:
            try:
                children.append((de.name, de.stat(follow_symlinks=False)))
            except OSError as e:
                if failed is not None and not isinstance(e, FileNotFoundError):
                    failed.append((de.name, e))
    children.sort(key=lambda c: c[0])
    return children


_MODE_RE = re.compile(r"\A(0o)?[0-7]{1,4}\Z")


def parse_mode(value):
    if not _MODE_RE.match(value):
        raise bad_request("invalid mode %r: expected an octal string such as 644 or 0755" % value)
    return int(value[2:] if value.startswith("0o") else value, 8)


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
REQUEST_LINE = re.compile(rb"\A(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r\n\Z")
FIELD_LINE = re.compile(rb"\A(" + _TCHAR + rb"+):([^\r\n]*)\r\n\Z")
FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs other than HTAB
# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = re.compile(
    rb"\A([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))?)*\r\n\Z"
)
WAIT_SECONDS = re.compile(r"\A[0-9]{1,12}(?:\.[0-9]{1,9})?\Z")
CONTENT_LENGTH = re.compile(r"\A[0-9]{1,18}\Z")  # 18 digits: always below 2^63


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


def parse_head(raw_requestline, rfile):
    """(method, target, version, headers) of a request head, or HttpError. `version` is "HTTP/1.0"
    or "HTTP/1.1" (a later 1.x is answered as 1.1); headers is an http.client.HTTPMessage."""
    m = REQUEST_LINE.match(raw_requestline)
    if m is None:
        raise framing_error("malformed request line (expected `METHOD target HTTP/1.1`)")
    major, minor = int(m.group(3)), int(m.group(4))
    if major != 1:
        raise framing_error("HTTP version %d.%d is not supported (use HTTP/1.1)" % (major, minor), 505)
    headers = http.client.HTTPMessage()
    for name, value in read_fields(rfile, "header"):
        headers[name] = value
    version = "HTTP/1.0" if minor == 0 else "HTTP/1.1"
    return m.group(1).decode("ascii"), m.group(2).decode("ascii"), version, headers


JSON_DEPTH_MAX = 64
_JSON_ESCAPE = re.compile(rb"\\.", re.S)
_JSON_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone: linear, no backtracking
_JSON_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def check_json_depth(raw):
    """400 for a body nested deeper than JSON_DEPTH_MAX, before json.loads recurses into it (a
    RecursionError, or on a small thread stack a crash). Brackets inside strings do not count. Only a
    body with that many brackets at all is scanned, by C-speed passes: each removes the innermost
    empty pairs, so what is left after JSON_DEPTH_MAX passes nests deeper (or does not pair up)."""
    if raw.count(b"[") + raw.count(b"{") <= JSON_DEPTH_MAX:
        return
    rest = _JSON_NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", raw)))
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


def parse_decimal(raw, below):
    """A value of ASCII digits only (no sign, no spaces, no other scripts' digits) below `below`, else None."""
    if raw is None or not 0 < len(raw) <= len(str(below)) or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value < below else None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hf-sandbox-rpc/" + VERSION
    timeout = SOCKET_TIMEOUT

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        try:  # small responses and events must not wait for Nagle
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        # Reads go through the deadlines of ConnReader; the buffered reader setup() made is replaced.
        self.rfile.close()
        self.reader = ConnReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.trusted = False  # set by the connection's first authorized request

    def log_message(self, format, *args):
        pass  # no per-request logging: it costs time and floods job logs

    # ---- framing ----

    def head_bytes(self, status, headers):
        lines = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Unknown"))]
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
        # Used by BaseHTTPRequestHandler for malformed requests: answer JSON
        # like everything else, and drop the connection (it is out of sync).
        self.close_connection = True
        self._linger = True
        if not getattr(self, "request_version", None):
            self.request_version = "HTTP/1.1"
        msg = message or _REASONS.get(code, "error")
        try:
            self.respond(code, dumps({"error": msg, "code": "bad_request"}))
        except ClientGone:
            pass

    def parse_request(self):
        """Replaces BaseHTTPRequestHandler's, which ends the header block at the first line it cannot
        read as a header (the rest of the head then becomes the body): RFC 9112, see parse_head."""
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
        if values or not CONTENT_LENGTH.match(value):
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

    def dispatch(self):
        """Every method comes here (not to do_*), so a wrong method on a known
        path gets a JSON 405 rather than http.server's HTML 501."""
        method = self.command
        if method == "HEAD":
            # We would answer with a body, which a HEAD client does not read:
            # never reuse the connection after it.
            self.close_connection = True
        if self.path.startswith("/"):
            # Origin form, split by hand: urlsplit would read "//x/exec" as
            # host "x" plus path "/exec" and route it somewhere unintended.
            route, _, query = self.path.partition("?")
            route = route.partition("#")[0]
        else:  # absolute form (proxies): http://host/path?query
            try:
                split = urlsplit(self.path)
            except ValueError:  # `http://[::1/x`: an unclosed IPv6 literal is no URL
                return self.send_error(400, "malformed request target (not a path, not a URL)")
            route, query = split.path or "/", split.query
        try:
            self.query = parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")
            self._body = self.open_body()
            if route == "/health" and method == "GET":
                self.health()
            else:
                if not self.authorized():
                    # Its body is still read, to keep the connection in sync, but within the head's
                    # deadline: a peer without the token gets no more of our time than that.
                    self.reader.untrusted_body()
                    raise HttpError(403, AUTH_ERROR, "auth")
                self.trusted = True
                methods = ROUTES.get(route)
                args = ()
                if methods is None and route.startswith("/v1/processes/"):
                    methods, args = process_route(route)
                if methods is None:
                    raise HttpError(404, "no route: %s %s" % (method, route), "not_found")
                fn = methods.get(method)
                if fn is None:
                    allow = ", ".join(sorted(methods))
                    message = "method %s not allowed on %s (use %s)" % (method, route, allow)
                    raise HttpError(405, message, "method_not_allowed", [("Allow", allow)])
                STATE.begin()
                try:
                    fn(self, *args)
                finally:
                    STATE.end()
        except HttpError as e:
            if self._started:
                self.close_connection = True
                return
            if e.close:
                self.close_connection = True
                self._linger = True
            else:
                self.discard_body()  # before answering, so the client is not reset mid-upload
            body = {"error": e.message, "code": e.code}
            if route in LEGACY_ROUTES and e.code != "auth":
                body = {"detail": e.message, "error": e.message, "code": e.code}  # FastAPI-style too
            self.respond(e.status, dumps(body), headers=e.headers)
            return
        except ClientGone:
            raise
        except Exception as e:
            log("internal error on %s %s:\n%s" % (method, shown(route), traceback.format_exc()))
            if self._started:
                self.close_connection = True
                return
            self.close_connection = True
            self._linger = True
            self.respond(500, dumps({"error": "internal server error: %s" % e, "code": "internal"}))
            return
        self.discard_body()

    # ---- auth ----

    def authorized(self):
        want = STATE.token_digest
        if want is None:
            return True
        candidates = []
        x = self.headers.get("X-Sandbox-Token")
        if x is not None:
            candidates.append(x.strip())
        a = self.headers.get("Authorization")
        if a:
            parts = a.split(None, 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                candidates.append(parts[1].strip())
        ok = False
        matches = []
        for c in candidates:
            # Equal-length digests: compare_digest is constant time whatever
            # the candidate's length. Headers arrive latin-1 decoded, so this
            # recovers the raw bytes.
            digest = hashlib.sha256(c.encode("latin-1", "replace")).digest()
            match = hmac.compare_digest(digest, want)
            matches.append(match)
            ok = match or ok
        if ok and a and x is not None and len(matches) == 2 and not matches[1]:
            note_foreign_authorization()
        return ok

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
        return os.path.abspath(p)

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

    # ---- routes ----

    def health(self):
        # Unauthenticated callers learn only that the server is up (no version).
        if self.authorized():
            self.trusted = True
            STATE.touch()
            self.respond_json(
                {
                    "status": "ok",
                    "version": VERSION,
                    "protocol": PROTOCOL,
                    "uptime_ms": int((time.monotonic() - STATE.started) * 1000),
                    "mode": "dedicated",
                    "auth": STATE.token_digest is not None,
                }
            )
        else:
            self.respond(200, b'{"status":"ok"}')

    def route_exec(self):
        req = self.read_json()
        spec = parse_exec(req, legacy=False)
        bg, _existing = start_keyed(req, spec, "exec", None, buffer_bytes(req, DEFAULT_EXEC_BUFFER), attach=True)
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

    def open_for_read(self, path, shown):
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NONBLOCK)
        except OSError as e:
            raise fs_error(e, shown, "read")
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            message = "cannot read %s: it is a directory (list it with files/list)" % shown
            raise HttpError(409, message, "is_a_directory")
        return fd, st

    def stream_file(self, fd, offset, n, content_type, prefix=b"", encode=None, suffix=b"", total=None, headers=()):
        """Send file bytes [offset, offset+n) as the body. Small bodies go out
        in one sendall; large ones are streamed in FILE_CHUNK pieces (sendfile
        when possible) after announcing the length. If the file shrinks under
        us, the connection is closed rather than desynchronised."""
        if total is None:
            total = n
        if n <= FILE_CHUNK:
            data = pread_all(fd, n, offset)
            if encode is not None:
                data = encode(data)
            return self.respond(200, prefix + data + suffix, content_type, headers)
        length = len(prefix) + total + len(suffix)
        head = self.head_bytes(200, [("Content-Type", content_type), ("Content-Length", str(length))] + list(headers))
        self.send_bytes(head + prefix)
        sent = 0
        if encode is None and hasattr(os, "sendfile"):
            f = os.fdopen(fd, "rb", closefd=False)
            try:
                sent = self.connection.sendfile(f, offset, n)
            except (OSError, ValueError):
                raise ClientGone()
            finally:
                f.close()
        else:
            step = FILE_CHUNK - FILE_CHUNK % 3  # base64 needs whole 3-byte groups
            while sent < n:
                data = pread(fd, min(step, n - sent), offset + sent)
                if not data:
                    break
                sent += len(data)
                self.send_bytes(encode(data) if encode is not None else data)
        if sent < n:
            self.close_connection = True
            return
        self.send_bytes(suffix)

    def route_read(self):
        path = self.path_param()
        if self.param("path").endswith("/") and path != "/":
            path += "/"  # `file/` is not a directory: the OS answers ENOTDIR, like `cat file/`
        offset = self.int_param("offset", 0)
        length = self.int_param("length", None)
        fd, st = self.open_for_read(path, path)
        try:
            size = st.st_size
            n = max(0, size - offset)
            if length is not None:
                n = min(n, length)
            # The whole file's size and mode ride along, so a ranged reader needs no separate stat.
            facts = [("X-File-Size", str(size)), ("X-File-Mode", "%o" % stat.S_IMODE(st.st_mode))]
            self.stream_file(fd, offset, n, "application/octet-stream", headers=facts)
        finally:
            os.close(fd)

    def route_legacy_read(self):
        req = self.read_json()
        given = legacy_path(req)
        path = os.path.abspath(given)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NONBLOCK)
        except FileNotFoundError:
            raise HttpError(404, "file not found: %s" % given, "not_found")
        except OSError as e:
            raise fs_error(e, given, "read")
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise HttpError(409, "cannot read %s: it is a directory" % given, "is_a_directory")
            n = st.st_size
            # Streamed as JSON: the base64 length is known up front, so memory
            # stays bounded even for a large file.
            self.stream_file(
                fd, 0, n, "application/json",
                prefix=b'{"content_b64":"', encode=base64.b64encode, suffix=b'"}', total=4 * ((n + 2) // 3),
            )
        finally:
            os.close(fd)

    def route_write(self):
        path = self.path_param()
        mode = self.param("mode", required=False)
        mode = parse_mode(mode) if mode is not None else None
        offset = self.int_param("offset", None)
        truncate_to = self.int_param("truncate_to", None)
        transfer = self.transfer_param(False)
        if self.param("path").endswith("/"):
            if os.path.isdir(path):
                raise HttpError(409, "cannot write %s: it is a directory" % path, "is_a_directory")
            raise bad_request("cannot write %s/: a path ending in / names a directory; name the file" % path)
        if self.bool_param("mkdir", True):
            make_parents(path, "write")
        if transfer is not None:
            return self.write_range(path, transfer, offset or 0, truncate_to)
        # HF's ranged writes (an offset, no transfer) and asked-for in-place writes change the file itself.
        if offset is not None or self.bool_param("in_place", False):
            return self.write_in_place(path, mode, offset, truncate_to)
        self.write_replacing(path, mode, truncate_to)

    def write_in_place(self, path, mode, offset, truncate_to):
        flags = os.O_WRONLY | os.O_CREAT | _O_CLOEXEC | _O_NONBLOCK
        if offset is None:
            flags |= os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            message = "cannot write %s: parent directory does not exist (omit mkdir=0 to create it)" % path
            raise HttpError(404, message, "not_found")
        except OSError as e:
            raise fs_error(e, path, "write")
        try:
            try:
                self.copy_body(fd, offset)
                if truncate_to is not None:
                    os.ftruncate(fd, truncate_to)
                if mode is not None:
                    if hasattr(os, "fchmod"):
                        os.fchmod(fd, mode)
                    else:
                        os.chmod(path, mode)
                size = os.fstat(fd).st_size
            except OSError as e:
                raise fs_error(e, path, "write")
        finally:
            os.close(fd)
        self.respond_json({"path": path, "size": size})

    def transfer_param(self, required):
        transfer = self.param("transfer", required=required)
        if transfer is not None and not TRANSFER_ID_RE.match(transfer):
            raise bad_request("query parameter `transfer` must be 8 to 64 letters, digits, `-` or `_`, got %r" % transfer)
        return transfer

    def open_temp(self, tmp, path, extra_flags):
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | _O_CLOEXEC | _O_NONBLOCK | extra_flags, 0o666)
        except FileNotFoundError:
            message = "cannot write %s: parent directory does not exist (omit mkdir=0 to create it)" % path
            raise HttpError(404, message, "not_found")
        except OSError as e:
            raise fs_error(e, path, "write")

    def copy_body(self, fd, offset, tmp=None):
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        while True:
            chunk = self._body.read(FILE_CHUNK)
            if not chunk:
                return
            write_all(fd, chunk)
            if tmp is not None:
                TRANSFERS.touch(tmp)

    @staticmethod
    def settle_mode(tmp, dest, mode):
        """The replacing file gets `mode`, else the mode of the file it replaces
        (an in-place write would have kept it), else the default a new file gets."""
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(dest).st_mode)
            except OSError:
                return
        os.chmod(tmp, mode)

    def write_destination(self, path):
        dest = write_target(path)
        if os.path.isdir(dest):
            raise HttpError(409, "cannot write %s: it is a directory" % path, "is_a_directory")
        return dest

    def write_replacing(self, path, mode, truncate_to):
        """One request, one file: written beside the destination, then renamed
        over it, so a reader (or a cut connection) never meets half a file."""
        dest = self.write_destination(path)
        if is_special(dest) or (os.path.isfile(dest) and not dir_writable(dest)):
            # No room for a temp file beside a writable file: written in place, as it always could be.
            return self.write_in_place(path, mode, None, truncate_to)
        tmp = temp_beside(dest, os.urandom(8).hex())
        JOURNAL.add(tmp)
        try:
            fd = self.open_temp(tmp, path, os.O_EXCL)
        except BaseException:
            JOURNAL.remove(tmp)
            raise
        done = False
        try:
            try:
                self.copy_body(fd, 0)
                if truncate_to is not None:
                    os.ftruncate(fd, truncate_to)
                size = os.fstat(fd).st_size
                self.settle_mode(tmp, dest, mode)
                replace_file(tmp, dest)
                done = True
            except OSError as e:
                raise fs_error(e, path, "write")
        finally:
            os.close(fd)
            if not done:
                unlink_quietly(tmp)
            JOURNAL.remove(tmp)
        self.respond_json({"path": path, "size": size})

    def write_range(self, path, transfer, offset, truncate_to):
        """One range of a transfer, into the transfer's temporary file."""
        dest = self.write_destination(path)
        if is_special(dest):
            return self.write_in_place(path, None, offset, None)
        if os.path.isfile(dest) and not dir_writable(dest):
            message = (
                "cannot write %s: its directory is not writable, so it cannot be replaced whole by a transfer; "
                "write it in one request in place (in_place=1)" % path
            )
            raise bad_request(message, "permission_denied")
        tmp = temp_beside(dest, transfer)
        TRANSFERS.begin(tmp)
        failed = True
        try:
            fd = self.open_temp(tmp, path, 0)
            try:
                try:
                    self.copy_body(fd, offset, tmp)
                    if truncate_to is not None:
                        os.ftruncate(fd, truncate_to)
                    size = os.fstat(fd).st_size
                except OSError as e:
                    raise fs_error(e, path, "write")
            finally:
                os.close(fd)
            failed = False
        finally:
            TRANSFERS.end(tmp, failed)
        self.respond_json({"path": path, "size": size})

    def route_commit(self):
        path = self.path_param()
        transfer = self.transfer_param(True)
        mode = self.param("mode", required=False)
        mode = parse_mode(mode) if mode is not None else None
        size = self.int_param("size", None)
        dest = self.write_destination(path)
        if is_special(dest):
            return self.respond_json({"path": path, "size": 0})  # its ranges went straight to it
        tmp = temp_beside(dest, transfer)
        TRANSFERS.take(tmp)
        try:
            try:
                got = os.stat(tmp).st_size
            except FileNotFoundError:
                raise TRANSFERS.gone(tmp)
            if size is not None and got != size:
                message = "cannot write %s: the transfer holds %d bytes, not the %d expected" % (path, got, size)
                raise HttpError(409, message, "size_mismatch")
            self.settle_mode(tmp, dest, mode)
            replace_file(tmp, dest)
        except OSError as e:
            TRANSFERS.abort(tmp)
            raise fs_error(e, path, "write")
        except HttpError:
            TRANSFERS.abort(tmp)
            raise
        TRANSFERS.committed(tmp)
        self.respond_json({"path": path, "size": got})

    def route_abort(self):
        path = self.path_param()
        transfer = self.transfer_param(True)
        tmp = temp_beside(write_target(path), transfer)
        self.respond_json({"path": path, "aborted": TRANSFERS.abort(tmp)})

    def route_legacy_write(self):
        req = self.read_json()
        given = legacy_path(req)
        if isinstance(req.get("content_b64"), str):
            try:
                data = base64.b64decode(req["content_b64"], validate=True)
            except (ValueError, TypeError):
                raise bad_request("`content_b64` is not valid base64")
        elif isinstance(req.get("content"), str):
            data = req["content"].encode("utf-8", "surrogatepass")
        else:
            raise bad_request("pass the file content as `content_b64` (base64) or `content` (text)")
        path = os.path.abspath(given)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise fs_error(e, given, "write")
        self.respond_json({"ok": True})

    def route_stat(self):
        path = self.path_param()
        with_target = self.bool_param("symlink_targets", False)
        try:
            self.respond_json(entry(path, with_target=with_target))
        except OSError as e:
            raise fs_error(e, path, "stat")

    def route_list(self):
        path = self.path_param()
        recursive = self.bool_param("recursive", False)
        with_target = self.bool_param("symlink_targets", False)
        try:
            fd = open_dir(path)  # `path` itself may be a symlink: followed
        except NotADirectoryError:
            raise bad_request("cannot list %s: not a directory (stat or read it instead)" % path, "not_a_directory")
        except OSError as e:
            raise fs_error(e, path, "list")
        try:
            self.list_from(path, fd, recursive, with_target)
        finally:
            os.close(fd)

    def list_from(self, path, fd, recursive, with_target):
        """Answers a listing of the directory open at `fd`. The walk goes from
        descriptor to descriptor (see open_dir): a directory swapped for a symlink
        between its lstat and its listing is reported, never followed."""
        try:
            failed = []
            children = scan_dir(path, failed, dir_fd=fd)
            root = os.fstat(fd) if recursive else None
        except OSError as e:
            raise fs_error(e, path, "list")
        if not recursive:
            listed = [entry(os.path.join(path, name), name, st, with_target, fd) for name, st in children]
            self.respond_json({"entries": listed})
            return
        # Depth first, siblings sorted by name: a directory comes right before
        # its contents. Entries are encoded as they are found, so memory is the
        # answer's bytes plus one sorted directory (and one descriptor) per
        # level being walked.
        parts, skipped = [], []

        def skip(rel, full, e, action="list"):
            if isinstance(e, DirChanged):
                message = "cannot list %s: %s" % (full, e.strerror)
                skipped.append({"name": rel, "path": full, "error": message, "code": "changed"})
                return
            err = fs_error(e, full, action)
            skipped.append({"name": rel, "path": full, "error": err.message, "code": err.code})

        for name, e in failed:
            skip(name, os.path.join(path, name), e, "stat")
        ancestors = {(root.st_dev, root.st_ino)}
        stack = [("", iter(children), None, fd)]
        try:
            while stack:
                prefix, it, key, parent_fd = stack[-1]
                child = next(it, None)
                if child is None:
                    stack.pop()
                    ancestors.discard(key)
                    if parent_fd != fd:
                        os.close(parent_fd)
                    continue
                name, st = child
                rel = prefix + name
                full = os.path.join(path, rel)
                parts.append(dumps(entry(full, rel, st, with_target, parent_fd)))
                if not stat.S_ISDIR(st.st_mode):
                    continue  # files, and symlinks (never followed, even to a directory)
                key = (st.st_dev, st.st_ino)
                if key in ancestors:  # a bind mount of one of its own ancestors
                    message = "cannot list %s: it is one of its own parent directories (a file system loop)" % full
                    skipped.append({"name": rel, "path": full, "error": message, "code": "loop"})
                    continue
                del failed[:]
                try:
                    child_fd = open_dir(name, parent_fd, st)
                except FileNotFoundError:
                    continue  # vanished while listing
                except OSError as e:
                    skip(rel, full, e)
                    continue
                try:
                    grandchildren = scan_dir(full, failed, dir_fd=child_fd)
                except OSError as e:
                    os.close(child_fd)
                    if not isinstance(e, FileNotFoundError):
                        skip(rel, full, e)
                    continue
                for sub, e in failed:
                    skip(rel + "/" + sub, os.path.join(full, sub), e, "stat")
                ancestors.add(key)
                stack.append((rel + "/", iter(grandchildren), key, child_fd))
        finally:
            for _, _, _, open_fd in stack:
                if open_fd != fd:
                    os.close(open_fd)
        tail = b'],"skipped":' + dumps(skipped) + b"}"
        self.respond(200, b'{"entries":[' + b",".join(parts) + tail)

    def route_delete(self):
        path = self.path_param()
        recursive = self.bool_param("recursive", False)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    shutil.rmtree(path)  # unlinks symlinks inside, never follows them
                else:
                    os.rmdir(path)
            else:
                os.unlink(path)  # files and symlinks (the link, not its target)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and not recursive:
                raise HttpError(409, "cannot delete %s: directory not empty (delete it recursively)" % path, "not_empty")
            raise fs_error(e, path, "delete")
        self.respond_json({"deleted": path})

    def route_mkdir(self):
        path = self.path_param()
        try:
            os.makedirs(path, exist_ok=True)
        except FileExistsError:
            raise HttpError(409, "cannot create directory %s: a file with that name exists" % path, "already_exists")
        except OSError as e:
            raise fs_error(e, path, "create directory")
        self.respond_json({"created": path})

    def route_rename(self):
        src = self.path_param("from")
        dst = self.path_param("to")
        try:
            os.lstat(src)
        except OSError as e:
            raise fs_error(e, src, "rename")
        make_parents(dst, "rename %s to" % src)
        try:
            try:
                os.replace(src, dst)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                shutil.move(src, dst)  # across file systems: copy, then delete
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                message = "cannot rename %s to %s: the target is a non-empty directory" % (src, dst)
                raise HttpError(409, message, "not_empty")
            if e.errno == errno.EISDIR:
                raise HttpError(409, "cannot rename %s to %s: the target is a directory" % (src, dst), "is_a_directory")
            if e.errno == errno.ENOTDIR and os.path.isdir(src) and not os.path.isdir(dst):
                # Not "a component of the path": the source is a directory and the target a file.
                message = "cannot rename the directory %s to %s: the target exists and is not a directory" % (src, dst)
                raise bad_request(message, "not_a_directory")
            raise fs_error(e, "%s to %s" % (src, dst), "rename")
        self.respond_json({"renamed": src, "to": dst})

    def route_chmod(self):
        path = self.path_param()
        mode = parse_mode(self.param("mode"))
        try:
            os.chmod(path, mode)
        except OSError as e:
            raise fs_error(e, path, "chmod")
        self.respond_json({"path": path, "mode": "%o" % mode})

    def route_symlink(self):
        path = self.path_param()
        target = self.param("target")
        if not target:
            raise bad_request("query parameter `target` is empty")
        if "\0" in target:
            raise bad_request("query parameter `target` contains a NUL character")
        replace = self.bool_param("replace", False)
        try:
            kind = os.lstat(path).st_mode
            if stat.S_ISDIR(kind):
                message = "cannot create symlink %s: a directory with that name exists" % path
                raise HttpError(409, message, "is_a_directory")
            # Another link is replaced (re-linking is what `ln -sfn` does); a file only when asked.
            if not stat.S_ISLNK(kind) and not replace:
                message = "cannot create symlink %s: a file with that name exists (pass replace=1 to replace it)" % path
                raise HttpError(409, message, "already_exists")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise fs_error(e, path, "create symlink")
        parent = os.path.dirname(path)
        make_parents(path, "create symlink")
        # A temporary link next to it, renamed over it: whoever looks at `path`
        # sees the old entry or the new link, never nothing.
        for _ in range(100):
            tmp = os.path.join(parent, ".symlink-%s.tmp" % os.urandom(6).hex())
            try:
                os.symlink(target, tmp)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise fs_error(e, path, "create symlink")
        else:
            raise HttpError(500, "cannot create symlink %s: no free temporary name" % path, "internal")
        try:
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):  # a directory appeared meanwhile
                message = "cannot create symlink %s: a directory with that name exists" % path
                raise HttpError(409, message, "is_a_directory")
            raise fs_error(e, path, "create symlink")
        self.respond_json({"path": path, "target": target})

    # ---- background processes ----

    def route_process_start(self):
        req = self.read_json()
        spec = parse_exec(req, legacy=False)
        tag = req.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise bad_request("`tag` must be a string")
        bg, existing = start_keyed(req, spec, "process", tag, buffer_bytes(req, DEFAULT_BUFFER_BYTES))
        if existing:
            info = bg.info()
            info["existing"] = True
            return self.respond_json(info)
        log("command pid %d is background process %s%s" % (bg.pid, bg.id, "" if tag is None else " " + json.dumps(tag[:100])))
        info = bg.info()
        self.respond_json({k: info[k] for k in ("id", "pid", "cmd", "tag", "started_at_ms")})

    def route_shutdown(self):
        """Ends the server and everything it started (whole process groups), so
        that a job running it exits and stops billing without any Hub request.
        Answers 202 first: the shutdown itself runs on the main thread."""
        self.close_connection = True
        self.respond(202, dumps({"shutting_down": True}))
        request_shutdown("shutdown requested (POST /v1/shutdown)")

    def route_process_list(self):
        kind = self.param("kind", required=False) or "process"
        if kind not in ("process", "exec", "all"):
            raise bad_request("query parameter `kind` must be process, exec or all, got %r" % kind)
        self.respond_json([bg.info() for bg in BGPROCS.all() if kind == "all" or bg.kind == kind])

    def route_process_get(self, key):
        self.respond_json(BGPROCS.find(key).info())

    def route_process_cancel(self):
        """Kills the command a request with this idempotency key started, and refuses any such
        request that arrives later: a client interrupted before its exec or spawn answered cannot
        know the command's id, and its request may still be on its way."""
        key = checked_idempotency_key(self.param("idempotency_key"))
        sig = parse_signal(self.param("signal", required=False))
        with KEYED:  # a keyed request is either fully registered or not yet checked
            bg = BGPROCS.cancel(key, JANITOR.retain)
        if bg is None:
            return self.respond_json({"id": None, "killed": False})
        self.kill_record(bg, sig)

    def route_process_kill(self, key):
        self.kill_record(BGPROCS.find(key), parse_signal(self.param("signal", required=False)))

    def kill_record(self, bg, sig):
        with bg.cond:
            # The leader is unreaped until returncode is set (pump holds it),
            # so its pid -- the group id -- cannot have been recycled.
            running = bg.proc.returncode is None and bg.result is None
        # Everything it started goes too, wherever it moved, even after the
        # leader ended (a daemon it left); with KILL, answered once all are gone.
        signalled = kill_family(bg.pid if running else None, bg.spec.marker, sig)
        self.respond_json({"id": bg.id, "killed": running or signalled})

    def client_still_there(self):
        """Raise ClientGone if the client hung up. The socket has a timeout,
        so recv would wait for data whatever its flags: poll it first."""
        sel = new_selector()
        try:
            sel.register(self.connection, selectors.EVENT_READ)
            readable = bool(sel.select(0))
        finally:
            sel.close()
        if readable and peer_closed(self.connection):
            raise ClientGone()

    def route_process_wait(self, key):
        """GET|POST /v1/processes/{id}/wait?timeout=SECONDS."""
        bg = BGPROCS.find(key)
        raw = self.param("timeout", required=False)
        deadline = None
        if raw is not None:
            if not WAIT_SECONDS.match(raw):
                message = "query parameter `timeout` must be a non-negative number of seconds in ASCII digits (such as 30 or 0.5), got %r"
                raise bad_request(message % (raw if len(raw) <= 40 else raw[:40] + "..."))
            timeout = float(raw)
            deadline = time.monotonic() + timeout
        while True:
            with bg.cond:
                if bg.result is None:
                    wait = FOLLOW_POLL
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    if wait > 0:
                        bg.cond.wait(wait)
                result = bg.result
            if result is not None:
                out = exit_event(result)
                del out["event"]
                return self.respond_json(out)
            if deadline is not None and time.monotonic() >= deadline:
                raise HttpError(408, "process %s still running after %s s" % (bg.id, raw), "timeout")
            self.client_still_there()

    def route_process_stdin(self, key):
        """POST /v1/processes/{id}/stdin?offset=N&eof=0|1: the body is stdin from offset N."""
        bg = BGPROCS.find(key)
        pipe = getattr(bg.spec, "stdin_pipe", None)
        if pipe is None:
            raise HttpError(
                409,
                "process %s has no writable stdin: start it with \"stdin_pipe\": true to write to it" % bg.id,
                "stdin_not_piped",
            )
        offset = self.int_param("offset")
        if offset is None:
            raise bad_request("missing query parameter `offset` (the stdin offset of the body's first byte)")
        eof = self.bool_param("eof", False)
        body = self._body
        if body.chunked:
            raise HttpError(411, "the stdin route needs a Content-Length (send the body in bounded parts)", "length_required")
        if body.remaining > STDIN_BODY_LIMIT:
            message = "stdin body too large: %d bytes (at most 16 MiB per request; send the rest at the next offset)"
            raise HttpError(413, message % body.remaining, "too_large", close=True)
        stall = STDIN_STALL
        if not pipe.take_turn(offset, stall):
            if offset > pipe.written and not pipe.closed:
                # The bytes before this body did not come (from another connection) in time.
                raise HttpError(
                    409,
                    "stdin gap: this body starts at offset %d but %d bytes were written; send from offset %d"
                    % (offset, pipe.written, pipe.written),
                    "stdin_gap",
                )
            # Another request is still writing (to a command that does not read): try again later.
            return self.respond_json({"id": bg.id, "offset": pipe.written, "closed": pipe.closed})
        try:
            skip = pipe.written - offset
            complete = not pipe.closed
            buf = memoryview(bytearray(min(STDIN_READ, max(body.remaining, 1))))
            while complete and not body.done:
                n = body.read_into(buf)
                if skip >= n:
                    skip -= n
                    continue
                view = buf[skip:n]
                skip = 0
                while view:
                    n = pipe.write(view, stall)
                    if not n:
                        complete = False  # closed, or stalled: the answer's offset says how far it got
                        break
                    view = view[n:]
            if complete and eof:
                pipe.close()
            self.respond_json({"id": bg.id, "offset": pipe.written, "closed": pipe.closed})
        finally:
            pipe.release_turn()

    def route_process_output(self, key):
        bg = BGPROCS.find(key)
        follow = self.bool_param("follow", False)
        encoding = self.param("encoding", required=False) or "utf-8"
        if encoding in ("utf-8", "utf8"):
            encoding = "utf-8"
        elif encoding != "base64":
            raise bad_request("query parameter `encoding` must be utf-8 or base64, got %r" % encoding)
        offsets = None
        out, err = self.int_param("stdout_offset"), self.int_param("stderr_offset")
        if out is not None or err is not None:
            offsets = {"stdout": out or 0, "stderr": err or 0}
        self.follow_output(bg, follow, encoding, offsets)

    def follow_output(self, bg, follow, encoding, offsets, attached=False, start_event=False):
        """Stream `bg`'s buffered output (then, with `follow`, its live output and exit) as NDJSON.

        `offsets` (raw byte offset per stream) resumes where a reader left off; without them the
        stream starts at the oldest byte still buffered. A follower of an exec is one of its
        readers: while one is attached the exec is not abandoned, and what it has sent moves the
        back-pressure window. `attached`: the caller already counted this reader (POST /v1/exec), whose
        stream begins with the `start` event."""
        sink = StreamSink(self, encoding)
        reader = bg.kind == "exec" and follow
        try:
            with bg.cond:
                held = dict(bg.dropped)  # the oldest offset still buffered, per stream
                if offsets is not None:
                    for name in ("stdout", "stderr"):
                        if offsets[name] > bg.total[name]:
                            message = "%s_offset=%d is past the %d bytes %s has written to %s so far"
                            raise bad_request(message % (name, offsets[name], bg.total[name], bg.id, name))
                    pos = {name: max(offsets[name], held[name]) for name in held}
                    missing = {name: max(0, held[name] - offsets[name]) for name in held}
                else:
                    pos, missing = dict(held), held
                if reader and not attached:
                    bg.attach()
                    attached = True
                upto = bg.seq  # without follow: only what is buffered now...
                result = bg.result  # ...and the exit only if that is all there will be
            first = b""
            if start_event:
                first = dumps({"event": "start", "id": bg.id, "pid": bg.pid}) + b"\n"
            if missing["stdout"] or missing["stderr"]:
                first += dumps({"event": "dropped", "stdout": missing["stdout"], "stderr": missing["stderr"]}) + b"\n"
            sink.begin(first)
            self.stream_chunks(bg, sink, follow, pos, upto, result, reader)
        finally:
            if attached:
                bg.detach()

    def stream_chunks(self, bg, sink, follow, pos, upto, result, reader):
        last = 0
        while True:
            with bg.cond:
                chunks = bg.collect(last, bg.seq if follow else upto)
                if not chunks and follow and bg.result is None:
                    bg.cond.wait(min(FOLLOW_POLL, sink.next_tick(time.monotonic())))
                    chunks = bg.collect(last, bg.seq)
                if follow:
                    # Output is buffered before the result is set: caught up
                    # with a finished process, its exit is the next event.
                    result = bg.result
                    caught_up = not chunks or chunks[-1][0] >= bg.seq
                else:
                    caught_up = not chunks or chunks[-1][0] >= upto
            for seq, name, start, chunk in chunks:
                last = seq
                data = chunk
                if start > pos[name]:  # this follower fell behind the ring
                    gap = {"event": "dropped", "stdout": 0, "stderr": 0}
                    gap[name] = start - pos[name]
                    sink.pending.append(dumps(gap) + b"\n")
                elif start < pos[name]:  # a coalesced chunk whose prefix was sent, or before a resume offset
                    data = chunk[pos[name] - start :]
                pos[name] = max(pos[name], start + len(chunk))
                if data:
                    sink.output(name, data)
            if caught_up and (result is not None or not follow):
                sink.eof("stdout")
                sink.eof("stderr")
                sink.finish(result)
                if reader:
                    bg.advance(pos)
                return
            sink.flush(time.monotonic())
            if reader:
                bg.advance(pos)
            if not chunks:
                self.client_still_there()


ROUTES = {
    "/v1/exec": {"POST": Handler.route_exec},
    "/v1/files/read": {"GET": Handler.route_read},
    "/v1/files/write": {"PUT": Handler.route_write},
    "/v1/files/commit": {"POST": Handler.route_commit},
    "/v1/files/abort": {"POST": Handler.route_abort},
    "/v1/files/stat": {"GET": Handler.route_stat},
    "/v1/files/list": {"GET": Handler.route_list},
    "/v1/files/delete": {"DELETE": Handler.route_delete},
    "/v1/files/mkdir": {"POST": Handler.route_mkdir},
    "/v1/files/rename": {"POST": Handler.route_rename},
    "/v1/files/chmod": {"POST": Handler.route_chmod},
    "/v1/files/symlink": {"POST": Handler.route_symlink},
    "/v1/processes": {
        "GET": Handler.route_process_list,
        "POST": Handler.route_process_start,
        "DELETE": Handler.route_process_cancel,
    },
    "/v1/shutdown": {"POST": Handler.route_shutdown},
    "/health": {"GET": Handler.health},
    "/exec": {"POST": Handler.route_legacy_exec},
    "/write": {"POST": Handler.route_legacy_write},
    "/read": {"POST": Handler.route_legacy_read},
}


# The streaming and long-poll routes answer POST too, with the same query string: a
# Cloudflare quick tunnel holds a GET response's body until it ends (cloudflared#1449)
# but lets a POST's stream through live. GET stays for clients written for HF's server.
PROCESS_ROUTES = {
    "": {"GET": Handler.route_process_get, "DELETE": Handler.route_process_kill},
    "/output": {"GET": Handler.route_process_output, "POST": Handler.route_process_output},
    "/wait": {"GET": Handler.route_process_wait, "POST": Handler.route_process_wait},
    "/stdin": {"POST": Handler.route_process_stdin},
}


def process_route(route):
    """/v1/processes/{id}[/output|/wait] -> (methods, (id,)), or (None, ())."""
    key, _, rest = route[len("/v1/processes/") :].partition("/")
    methods = PROCESS_ROUTES.get("/" + rest if rest else "")
    if not key or methods is None:
        return None, ()
    return methods, (key,)


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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_activate(self):
        ThreadingHTTPServer.server_activate(self)
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
            request = ThreadingHTTPServer.get_request(self)
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
            ThreadingHTTPServer.process_request(self, request, client_address)
        except BaseException:
            self.closed_one()
            raise

    def process_request_thread(self, request, client_address):
        try:
            ThreadingHTTPServer.process_request_thread(self, request, client_address)
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
        log("connection error from %s:\n%s" % (client_address, traceback.format_exc()))


class Server6(Server):
    address_family = socket.AF_INET6


# --------------------------------------------------------------------------
# Tunnel mode: supervise a Cloudflare quick tunnel (cloudflared)
# --------------------------------------------------------------------------
#
# With --tunnel the server exposes itself through `cloudflared tunnel --url`.
# The URL is never scraped from cloudflared's logs (its creation-failure lines
# contain https://api.trycloudflare.com): it is read from cloudflared's local
# metrics server (/quicktunnel), announced only once /ready says an edge
# connection is registered, as one marker line on stdout. Imports that only
# this mode needs (urllib.request, tempfile, random, platform) are done lazily
# so the normal start-up costs nothing more.

CLOUDFLARED_VERSION = "2026.9.1"
CLOUDFLARED_BASE_URL = "https://github.com/cloudflare/cloudflared/releases/download"
CLOUDFLARED_SHA256 = {  # from the release notes ("SHA256 Checksums"); there is no .sha256 asset
    "2026.9.1": {
        "amd64": "03f1f25d1cc93b9ad6c60569d44060bc4f17ed97075760ed8cfca4b12dcd68cc",
        "arm64": "3d97437c71848bd8df68041e12436b484a661d95073ea1937f01a845ce88faa3",
    },
}
CLOUDFLARED_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# The first release that accepts every flag run_once() passes: --no-prechecks arrived in 2026.5.0
# (cloudflared RELEASE_NOTES, TUN-10387). An older cloudflared does not fail on an unknown flag: it
# prints its usage and exits 0 (urfave/cli), which would look like a tunnel that keeps dying.
CLOUDFLARED_MIN_VERSION = (2026, 5, 0)
CLOUDFLARED_VERSION_LINE = re.compile(r"^cloudflared version (\d+)\.(\d+)\.(\d+)(?:[ -]|$)", re.M)
CLOUDFLARED_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
VERSION_PROBE_TIMEOUT = 10.0  # `cloudflared --version`; a binary that hangs is not one we can use
TUNNEL_MARKER = "HF_SANDBOX_TUNNEL"
TUNNEL_EXIT = 3  # exit status when the tunnel cannot be brought up (or kept up)
TUNNEL_HOSTNAME = re.compile(r"^[a-z0-9-]+\.trycloudflare\.com$")
ANY_HOSTNAME = re.compile(r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")  # SBX_TUNNEL_ALLOW_ANY_HOST: still one sane host
TUNNEL_POLL = 0.2  # readiness polling interval
TUNNEL_PROBE_TIMEOUT = 1.0  # each metrics request
TUNNEL_WATCH = 0.25  # how often a ready cloudflared is checked for an exit
TUNNEL_BACKOFF_CAP = 30.0
TUNNEL_TERM_GRACE = 2.0  # stopping a cloudflared we gave up on: SIGTERM -> SIGKILL
DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_LIMIT = 512 * 1024 * 1024  # a cloudflared is ~40 MB; refuse to fill the disk


class TunnelConfig(object):
    __slots__ = (
        "binary", "base_url", "version", "sha256", "ready_timeout", "backoff", "restarts", "allow_any_host",
    )


class TunnelFailed(Exception):
    """Fatal for tunnel mode; the message is the whole stderr line."""


class TunnelStopped(Exception):
    """The server is shutting down: the supervisor just stops."""


class DownloadRetry(Exception):
    """A download error worth another try (network, 5xx, 429)."""


def _stderr_line(line):
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _plural(n, word):
    return "%d %s" % (n, word if n == 1 else word + "s")


def _dotted(version):
    return ".".join(str(x) for x in version)


def _exit_text(rc):
    return "exit status %d" % rc if rc >= 0 else "killed by signal %d" % -rc


def free_loopback_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def metrics_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path, or (None, b"") when
    cloudflared's metrics server is not answering (yet). No proxies."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TUNNEL_PROBE_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536)
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(FILE_CHUNK)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def usable_dir(path, shared):
    """Create (or accept) a directory we can write, or return False. In a
    shared location (the temp dir) it must also be ours and writable by no one
    else."""
    try:
        os.makedirs(path, 0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not os.access(path, os.W_OK | os.X_OK):
        return False
    if shared and hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        return False  # a shared temp dir someone else prepared: do not trust it
    return True


def _loopback_http(url):
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    except ValueError:
        return False


def download_opener():
    """A urllib opener whose redirects stay on https, as GitHub's do (github.com
    answers 302 to its objects host). Only a download that starts on loopback
    http (an emulated release host) may be redirected to loopback http."""
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = 5

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if not (newurl.startswith("https://") or (_loopback_http(req.full_url) and _loopback_http(newurl))):
                fp.close()
                raise TunnelFailed(
                    "hf-sandbox: tunnel failed: cannot download cloudflared from %s: redirected (HTTP %d) to %s, "
                    "which is not https; refusing to follow it" % (req.full_url, code, newurl[:300])
                )
            return urllib.request.HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(Redirects)


class Tunnel(object):
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
                _stderr_line(str(e))
                request_shutdown("tunnel failed", TUNNEL_EXIT)
        except Exception:
            if not self.stop.is_set():
                log("tunnel supervisor crashed:\n%s" % traceback.format_exc())
                _stderr_line("hf-sandbox: tunnel failed: internal error in the tunnel supervisor (traceback above)")
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

    # ---- 1. the binary ----

    def find_binary(self):
        explicit = self.config.binary
        if explicit:
            if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
                raise TunnelFailed("hf-sandbox: tunnel failed: SBX_CLOUDFLARED=%s is not an executable file" % explicit)
            version, why = self.binary_version(explicit)
            if why is not None:
                raise TunnelFailed(
                    "hf-sandbox: tunnel failed: SBX_CLOUDFLARED=%s %s; hf-sandbox needs cloudflared %s or newer: "
                    "point SBX_CLOUDFLARED at a newer one, or unset it to download %s"
                    % (explicit, why, _dotted(CLOUDFLARED_MIN_VERSION), self.config.version)
                )
            log("tunnel: using cloudflared %s %s (SBX_CLOUDFLARED)" % (explicit, version))
            return explicit
        found = shutil.which("cloudflared")
        if found:
            version, why = self.binary_version(found)
            if why is None:
                log("tunnel: using cloudflared %s %s (PATH)" % (found, version))
                return found
            log(
                "tunnel: not using cloudflared %s on PATH: it %s (need %s or newer); downloading %s instead"
                % (found, why, _dotted(CLOUDFLARED_MIN_VERSION), self.config.version)
            )
        return self.download()

    def binary_version(self, binary):
        """(version, None) when `binary --version` names a release new enough
        for our flags, else (None, why). Bounded: a hung binary is killed."""
        argv = [binary, "--version"]
        try:
            proc = PROCS.spawn(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
                start_new_session=True,
            )
        except HttpError:  # PROCS is closed: the server is shutting down
            raise TunnelStopped()
        except OSError as e:
            return None, "cannot be run (%s)" % (e.strerror or e)
        killed = False
        try:
            try:
                out, _ = proc.communicate(timeout=VERSION_PROBE_TIMEOUT)
            except subprocess.TimeoutExpired:
                killed = True
                kill_group(proc.pid, signal.SIGKILL)
                try:
                    proc.communicate(timeout=TUNNEL_TERM_GRACE)
                except subprocess.TimeoutExpired:  # a grandchild outside the group holds the pipe
                    proc.kill()
                    proc.wait()
                return None, "did not answer --version within %gs" % VERSION_PROBE_TIMEOUT
        finally:
            PROCS.reaped(proc, killed)
        text = out.decode("utf-8", "replace").strip()
        first = text.splitlines()[0] if text else ""
        m = CLOUDFLARED_VERSION_LINE.search(text)  # a wrapper may print a warning first
        if m is None:
            shown = first[:120] if first else "nothing"
            return None, "has an unreadable version (--version printed %r, exit status %d)" % (shown, proc.returncode)
        version = tuple(int(x) for x in m.groups())
        if version < CLOUDFLARED_MIN_VERSION:
            return None, "is version %s, older than %s (the first with --no-prechecks)" % (
                _dotted(version), _dotted(CLOUDFLARED_MIN_VERSION),
            )
        return _dotted(version), None

    def cache_dirs(self):
        import tempfile

        xdg = os.environ.get("XDG_CACHE_HOME")
        if xdg and os.path.isabs(xdg):
            yield os.path.join(xdg, "hf-sandbox"), False
        else:
            home = os.path.expanduser("~")
            if os.path.isabs(home):
                yield os.path.join(home, ".cache", "hf-sandbox"), False
        uid = os.getuid() if hasattr(os, "getuid") else 0
        yield os.path.join(tempfile.gettempdir(), "hf-sandbox-cache-%d" % uid), True

    def download(self):
        import platform

        cfg = self.config
        machine = platform.machine()
        arch = CLOUDFLARED_ARCH.get(machine.lower())
        if arch is None:
            raise TunnelFailed(
                "hf-sandbox: tunnel failed: cloudflared is not on PATH and there is no cloudflared download for "
                "this machine (%s); install cloudflared or set SBX_CLOUDFLARED" % (machine or "unknown")
            )
        expected = cfg.sha256 or CLOUDFLARED_SHA256.get(cfg.version, {}).get(arch)
        if expected is None:
            raise TunnelFailed(
                "hf-sandbox: tunnel failed: no known sha256 for cloudflared %s (linux-%s); refusing to download "
                "it unverified: set SBX_CLOUDFLARED_SHA256 to the digest from that release's notes, or unset "
                "SBX_CLOUDFLARED_VERSION to use %s" % (cfg.version, arch, CLOUDFLARED_VERSION)
            )
        url = "%s/%s/cloudflared-linux-%s" % (cfg.base_url.rstrip("/"), cfg.version, arch)
        name = "cloudflared-%s-linux-%s" % (cfg.version, arch)
        cache = None
        for d, shared in self.cache_dirs():
            if usable_dir(d, shared):
                cache = d
                break
        if cache is None:
            raise TunnelFailed("hf-sandbox: tunnel failed: no writable cache directory for the cloudflared download")
        target = os.path.join(cache, name)
        if os.path.isfile(target):
            try:
                cached = sha256_file(target)
            except OSError:
                cached = None
            if cached == expected:
                os.chmod(target, 0o755)
                log("tunnel: using cached cloudflared %s (sha256 verified)" % target)
                return target
            log("tunnel: cached %s does not match the expected sha256; downloading it again" % target)
        failures = 0
        while True:
            try:
                self.fetch(url, expected, cache, target)
                log("tunnel: downloaded cloudflared %s from %s (sha256 verified)" % (target, url))
                return target
            except DownloadRetry as e:
                failures += 1
                if failures > cfg.restarts:
                    raise TunnelFailed("hf-sandbox: tunnel failed: cannot download cloudflared from %s: %s" % (url, e))
                delay = self.backoff(failures)
                log("tunnel: download of %s failed (%s); retrying in %.2fs" % (url, e, delay))
                self.sleep(delay)

    def fetch(self, url, expected, cache, target):
        import tempfile
        import urllib.error
        import urllib.request

        log("tunnel: downloading cloudflared from %s" % url)
        fd, part = tempfile.mkstemp(prefix=".%s." % os.path.basename(target), suffix=".part", dir=cache)
        self._scratch(part, True)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                req = urllib.request.Request(url, headers={"User-Agent": "hf-sandbox-rpc-server/%s" % VERSION})
                try:
                    resp = download_opener().open(req, timeout=DOWNLOAD_TIMEOUT)
                except urllib.error.HTTPError as e:
                    e.close()
                    if e.code in (408, 429) or e.code >= 500:
                        raise DownloadRetry("HTTP %d" % e.code)
                    raise TunnelFailed(
                        "hf-sandbox: tunnel failed: cannot download cloudflared from %s: HTTP %d" % (url, e.code)
                    )
                except urllib.error.URLError as e:
                    raise DownloadRetry(str(e.reason))
                except (OSError, ValueError) as e:
                    raise DownloadRetry(str(e) or type(e).__name__)
                with resp:
                    while True:
                        if self.stop.is_set():
                            raise TunnelStopped()
                        try:
                            chunk = resp.read(FILE_CHUNK)
                        except Exception as e:  # socket errors, timeouts, IncompleteRead
                            raise DownloadRetry(str(e) or type(e).__name__)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > DOWNLOAD_LIMIT:
                            raise TunnelFailed(
                                "hf-sandbox: tunnel failed: %s is larger than %d bytes; not a cloudflared binary"
                                % (url, DOWNLOAD_LIMIT)
                            )
                        digest.update(chunk)
                        out.write(chunk)
                    # http.client ends a short body quietly: compare with what the host announced.
                    announced = resp.headers.get("Content-Length")
                    if announced is not None and announced.strip().isdigit() and size < int(announced):
                        raise DownloadRetry("the download was cut short (%d of %s bytes)" % (size, announced.strip()))
            got = digest.hexdigest()
            if got != expected:
                raise TunnelFailed(
                    "hf-sandbox: cloudflared download failed verification: expected sha256 %s, got %s (%s)"
                    % (expected, got, url)
                )
            os.chmod(part, 0o755)  # only now that it is verified
            os.replace(part, target)
        except OSError as e:  # the local side: disk full, permissions
            raise TunnelFailed("hf-sandbox: tunnel failed: cannot save cloudflared in %s: %s" % (cache, e.strerror or e))
        finally:
            try:
                os.unlink(part)
            except OSError:
                pass
            self._scratch(part, False)

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
                            "hf-sandbox: tunnel failed: cloudflared exited %s without a working tunnel (last %s); "
                            "its output is above" % (_plural(failures, "time"), _exit_text(rc))
                        )
                    raise TunnelFailed(
                        "hf-sandbox: tunnel failed: cloudflared failed %s without a working tunnel (last: %s); "
                        "its output is above" % (_plural(failures, "time"), detail)
                    )
                what = "cloudflared %s (failure %d of at most %d)" % (detail, failures, restarts + 1)
            delay = self.backoff(failures)
            log("tunnel: %s; restarting it in %.2fs" % (what, delay))
            self.sleep(delay)

    def run_once(self, binary, attempt):
        """One cloudflared run. Returns (worked, detail, exit status or None)."""
        import tempfile

        if self.stop.is_set():
            raise TunnelStopped()
        metrics = free_loopback_port()
        home = tempfile.mkdtemp(prefix="hf-sandbox-cloudflared-home-")
        self._scratch(home, True)
        env = dict(os.environ)
        for name in ("SBX_TOKEN", "HF_SANDBOX_TOKEN"):  # already gone; never let them come back
            env.pop(name, None)
        env["HOME"] = home  # no ~/.cloudflared/config.yaml can interfere
        argv = [
            binary, "tunnel", "--no-autoupdate", "--protocol", "http2", "--no-prechecks",
            "--metrics", "127.0.0.1:%d" % metrics, "--url", self.origin,
        ]
        log("tunnel: starting cloudflared (attempt %d, metrics on 127.0.0.1:%d)" % (attempt, metrics))
        err = sys.stderr.fileno()
        try:
            proc = PROCS.spawn(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, close_fds=True,
                start_new_session=True,
            )
        except HttpError:  # PROCS is closed: the server is shutting down
            shutil.rmtree(home, ignore_errors=True)
            self._scratch(home, False)
            raise TunnelStopped()
        except OSError as e:
            shutil.rmtree(home, ignore_errors=True)
            self._scratch(home, False)
            raise TunnelFailed("hf-sandbox: tunnel failed: cannot run cloudflared %s: %s" % (binary, e.strerror or e))
        killed = False
        try:
            hostname, detail = self.wait_ready(proc, metrics)
            if hostname is None:
                if proc.poll() is None:
                    killed = True
                    self.terminate(proc)
                return False, detail, (None if killed else proc.returncode)
            self.announce(hostname)
            log("tunnel: ready (attempt %d)" % attempt)
            while proc.poll() is None:
                self.sleep(TUNNEL_WATCH)
            return True, "exited (%s)" % _exit_text(proc.returncode), proc.returncode
        finally:
            if not self.stop.is_set():  # at shutdown, kill_everything() owns the process
                if proc.poll() is None:
                    killed = True
                    self.terminate(proc)
                PROCS.reaped(proc, killed)
                shutil.rmtree(home, ignore_errors=True)
                self._scratch(home, False)

    def terminate(self, proc):
        kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + TUNNEL_TERM_GRACE
        while proc.poll() is None and time.monotonic() < deadline:
            self.sleep(0.02)
        if proc.poll() is None:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait_ready(self, proc, metrics):
        """(hostname, None) once /quicktunnel names a valid host and /ready is
        200; (None, why) if cloudflared exits, names a bad host or times out."""
        timeout = self.config.ready_timeout
        deadline = time.monotonic() + timeout
        hostname = None
        while True:
            if proc.poll() is not None:
                return None, "exited (%s) before the tunnel was ready" % _exit_text(proc.returncode)
            if hostname is None:
                status, body = metrics_get(metrics, "/quicktunnel")
                if status == 200:
                    try:
                        value = json.loads(body.decode("utf-8")).get("hostname")
                    except (ValueError, AttributeError):
                        value = None
                    if isinstance(value, str) and value:
                        if not self.valid_hostname(value):
                            return None, "reported an unexpected tunnel hostname %r (not announced)" % value[:200]
                        hostname = value
            if hostname is not None and metrics_get(metrics, "/ready")[0] == 200:
                return hostname, None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "was not ready within %gs (SBX_TUNNEL_READY_TIMEOUT)" % timeout
            self.sleep(min(TUNNEL_POLL, remaining))

    def valid_hostname(self, hostname):
        if self.config.allow_any_host:
            return ANY_HOSTNAME.match(hostname) is not None
        return TUNNEL_HOSTNAME.match(hostname) is not None and hostname != "api.trycloudflare.com"

    def announce(self, hostname):
        line = "%s %s\n" % (TUNNEL_MARKER, json.dumps({"url": "https://" + hostname}, separators=(",", ":")))
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except Exception as e:
            log("tunnel: cannot write the tunnel marker to stdout: %s" % e)


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


TUNNEL_HELP = """\
tunnel mode (--tunnel or SBX_TUNNEL=1):
  Runs `cloudflared tunnel --url http://127.0.0.1:PORT` (a Cloudflare quick
  tunnel), waits until it is connected, then prints one line on stdout:
    HF_SANDBOX_TUNNEL {"url":"https://<name>.trycloudflare.com"}
  cloudflared is restarted with backoff if it exits (a new marker line follows
  each restart that works); the server exits 3 when it gives up.
  SBX_CLOUDFLARED            path of the cloudflared binary (else PATH, else download);
                             it must report version %s or newer (--version)
  SBX_CLOUDFLARED_VERSION    release to download (default %s; %s or newer)
  SBX_CLOUDFLARED_SHA256     expected sha256 of the download (needed for other versions)
  SBX_CLOUDFLARED_BASE_URL   download base (default %s)
  SBX_TUNNEL_READY_TIMEOUT   seconds to wait for each cloudflared to connect (default 90)
  SBX_TUNNEL_BACKOFF         first restart delay in seconds, doubling up to 30 (default 2)
  SBX_TUNNEL_RESTARTS        consecutive failed attempts retried before giving up (default 5)
  SBX_TUNNEL_ALLOW_ANY_HOST  1: announce any hostname, not only *.trycloudflare.com (tests)

exit status: 0 shutdown, 1 cannot bind, 2 bad configuration, 3 tunnel failure
""" % (
    _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_VERSION, _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_BASE_URL,
)


def tunnel_config(env):
    """Tunnel settings from the environment, validated before anything is bound."""
    c = TunnelConfig()
    c.binary = env.get("SBX_CLOUDFLARED") or None
    c.base_url = env.get("SBX_CLOUDFLARED_BASE_URL") or CLOUDFLARED_BASE_URL
    if not re.match(r"^https?://[^\s]+$", c.base_url):
        _fail("invalid SBX_CLOUDFLARED_BASE_URL %r: expected an http(s) URL" % c.base_url)
    c.version = env.get("SBX_CLOUDFLARED_VERSION") or CLOUDFLARED_VERSION
    release = CLOUDFLARED_RELEASE.match(c.version)
    if release is None:
        _fail("invalid SBX_CLOUDFLARED_VERSION %r: expected a release tag such as %s" % (c.version, CLOUDFLARED_VERSION))
    if tuple(int(x) for x in release.groups()) < CLOUDFLARED_MIN_VERSION:
        _fail(
            "invalid SBX_CLOUDFLARED_VERSION %r: older than %s, the first cloudflared release with every flag "
            "hf-sandbox passes (--no-prechecks); pick %s or newer, or unset it to use %s"
            % (c.version, _dotted(CLOUDFLARED_MIN_VERSION), _dotted(CLOUDFLARED_MIN_VERSION), CLOUDFLARED_VERSION)
        )
    c.sha256 = (env.get("SBX_CLOUDFLARED_SHA256") or "").strip().lower() or None
    if c.sha256 is not None and not re.match(r"^[0-9a-f]{64}$", c.sha256):
        _fail("invalid SBX_CLOUDFLARED_SHA256 %r: expected 64 hex digits" % env.get("SBX_CLOUDFLARED_SHA256"))
    c.ready_timeout = 90.0
    if env.get("SBX_TUNNEL_READY_TIMEOUT"):
        c.ready_timeout = _number(env["SBX_TUNNEL_READY_TIMEOUT"], "SBX_TUNNEL_READY_TIMEOUT", float, 0.01)
    c.backoff = 2.0
    if env.get("SBX_TUNNEL_BACKOFF"):
        c.backoff = _number(env["SBX_TUNNEL_BACKOFF"], "SBX_TUNNEL_BACKOFF", float, 0, TUNNEL_BACKOFF_CAP)
    c.restarts = 5
    if env.get("SBX_TUNNEL_RESTARTS"):
        c.restarts = _number(env["SBX_TUNNEL_RESTARTS"], "SBX_TUNNEL_RESTARTS", int, 0, 1000)
    c.allow_any_host = _flag(env.get("SBX_TUNNEL_ALLOW_ANY_HOST"), "SBX_TUNNEL_ALLOW_ANY_HOST")
    return c


def tunnel_origin(host, port):
    """The URL cloudflared forwards to: the address we listen on, with the
    wildcard addresses mapped to loopback (never `localhost`: it may be ::1)."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    if ":" in host:
        return "http://[%s]:%d" % (host, port)
    return "http://%s:%d" % (host, port)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="server.py",
        description="hf-sandbox in-sandbox RPC server (protocol %d, version %s)" % (PROTOCOL, VERSION),
        epilog=TUNNEL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to bind (default: $SBX_HOST or 127.0.0.1)")
    p.add_argument("--port", help="port to bind; 0 picks a free one (default: $SBX_PORT or %d)" % DEFAULT_PORT)
    p.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        help="exit after this long without requests; 0 = never (default: $SBX_IDLE_TIMEOUT or 0)",
    )
    p.add_argument(
        "--start-grace",
        metavar="SECONDS",
        help="with --idle-timeout: until a client has made an authorized request, wait at least this long before "
        "stopping as idle (a client still starting the sandbox is not idle); default 0",
    )
    p.add_argument(
        "--lifetime",
        metavar="SECONDS",
        help="exit after this long whatever is running; 0 = no limit (default: $SBX_LIFETIME or 0)",
    )
    p.add_argument("--allow-no-auth", action="store_true", help="start without SBX_TOKEN (local development only)")
    p.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="shut down when stdin reaches EOF (the parent died)"
    )
    p.add_argument(
        "--supervise",
        action="store_true",
        help="Linux: run the server under a supervisor process that kills everything left when the server "
        "ends, however it ends (even SIGKILL)",
    )
    p.add_argument(
        "--remove-on-exit",
        metavar="DIR",
        help="with --supervise: the supervisor removes this directory (and its marker DIR.owner) after the server and "
        "all its processes are gone",
    )
    p.add_argument(
        "--journal",
        metavar="DIR",
        help="record the temporary files of writes in progress in this directory (created; it must not be inside "
        "a directory the sandbox's commands can remove), so that what a killed server leaves is removed: by its "
        "supervisor, or by the next server started with the same journal",
    )
    p.add_argument(
        "--max-connections",
        metavar="N",
        help="connections served at once; more are answered 503 too_many_connections "
        "(default: $SBX_MAX_CONNECTIONS or %d)" % DEFAULT_MAX_CONNECTIONS,
    )
    p.add_argument(
        "--header-timeout",
        metavar="SECONDS",
        help="a request's line and headers must arrive within this long, and a connection that has made no "
        "authorized request is closed after this long idle (default: $SBX_HEADER_TIMEOUT or %g)" % DEFAULT_HEADER_TIMEOUT,
    )
    p.add_argument(
        "--body-timeout",
        metavar="SECONDS",
        help="a request body that sends nothing for this long is dropped; a slow body that keeps moving is not "
        "(default: $SBX_BODY_TIMEOUT or %g)" % DEFAULT_BODY_TIMEOUT,
    )
    p.add_argument(
        "--max-processes",
        metavar="N",
        help="background processes and execs running at once; more are answered 503 too_many_processes "
        "(default: $SBX_MAX_PROCESSES or %d)" % DEFAULT_MAX_PROCESSES,
    )
    p.add_argument(
        "--max-exited",
        metavar="N",
        help="exited background processes kept listed with their output; the oldest are forgotten "
        "(default: $SBX_MAX_EXITED or %d)" % DEFAULT_MAX_EXITED,
    )
    p.add_argument(
        "--tunnel",
        action="store_true",
        help="expose the server through a Cloudflare quick tunnel and announce its URL on stdout "
        "(default: $SBX_TUNNEL); see below",
    )
    args = p.parse_args(argv)

    env = os.environ
    args.host = args.host if args.host is not None else (env.get("SBX_HOST") or "127.0.0.1")
    if args.port is not None:
        args.port = _number(args.port, "--port", int, 0, 65535)
    elif env.get("SBX_PORT"):
        args.port = _number(env["SBX_PORT"], "SBX_PORT", int, 0, 65535)
    else:
        args.port = DEFAULT_PORT
    # Seconds from the option, else its environment variable, else 0 (off).
    for name, var in (("idle_timeout", "SBX_IDLE_TIMEOUT"), ("lifetime", "SBX_LIFETIME")):
        given = getattr(args, name)
        if given is not None:
            value = _number(given, "--" + name.replace("_", "-"), float, 0)
        elif env.get(var):
            value = _number(env[var], var, float, 0)
        else:
            value = 0.0
        setattr(args, name, value)
    args.start_grace = _number(args.start_grace, "--start-grace", float, 0) if args.start_grace is not None else 0.0
    args.ping_interval = DEFAULT_PING_INTERVAL
    if env.get("SBX_PING_INTERVAL"):
        args.ping_interval = _number(env["SBX_PING_INTERVAL"], "SBX_PING_INTERVAL", float, 0.01)
    args.exec_reattach, args.exec_retain = EXEC_REATTACH_DEFAULT, EXEC_RETAIN_DEFAULT
    if env.get("SBX_EXEC_REATTACH"):
        args.exec_reattach = _number(env["SBX_EXEC_REATTACH"], "SBX_EXEC_REATTACH", float, 0)
    if env.get("SBX_EXEC_RETAIN"):
        args.exec_retain = _number(env["SBX_EXEC_RETAIN"], "SBX_EXEC_RETAIN", float, 0)
    bounds = (
        ("max_connections", "SBX_MAX_CONNECTIONS", int, 1, DEFAULT_MAX_CONNECTIONS),
        ("header_timeout", "SBX_HEADER_TIMEOUT", float, 0.01, DEFAULT_HEADER_TIMEOUT),
        ("body_timeout", "SBX_BODY_TIMEOUT", float, 0.01, DEFAULT_BODY_TIMEOUT),
        ("max_processes", "SBX_MAX_PROCESSES", int, 1, DEFAULT_MAX_PROCESSES),
        ("max_exited", "SBX_MAX_EXITED", int, 1, DEFAULT_MAX_EXITED),
    )
    for name, var, kind, lo, default in bounds:
        given = getattr(args, name)
        if given is not None:
            value = _number(given, "--" + name.replace("_", "-"), kind, lo)
        elif env.get(var):
            value = _number(env[var], var, kind, lo)
        else:
            value = default
        setattr(args, name, value)
    args.tunnel = args.tunnel or _flag(env.get("SBX_TUNNEL"), "SBX_TUNNEL")
    args.tunnel_config = tunnel_config(env) if args.tunnel else None
    return args


def raise_open_files_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: every connection and command costs descriptors, and a
    soft limit of 1024 (a common default) would run out long before --max-connections. Commands
    inherit the raised limit (restoring it per spawn would cost the fast spawn path)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ImportError, ValueError, OSError):
        pass  # not Unix, or not allowed: the accept loop still copes with running out


# 128 bits as the shortest encoding people use for random tokens gives them: 16 bytes in hex. The
# providers send 64 hex characters (256 bits). A shorter token could be guessed by whoever reaches
# the port (any local user; anyone on the internet with the tunnel's URL), so it is refused.
TOKEN_MIN_CHARS = 32


def take_token():
    """(token, the variable it came from), removed from our environment so no child can see it."""
    token = os.environ.pop("SBX_TOKEN", None)
    legacy = os.environ.pop("HF_SANDBOX_TOKEN", None)
    if token:
        return token, "SBX_TOKEN"
    return (legacy, "HF_SANDBOX_TOKEN") if legacy else (None, None)


def lifetime_loop(limit):
    # The backstop that the Hub's job timeout is for a job: it holds even while commands run.
    time.sleep(limit)
    request_shutdown("lifetime of %gs reached (--lifetime)" % limit)


def idle_loop(timeout, grace):
    interval = min(1.0, timeout / 4.0)
    while True:
        time.sleep(interval)
        # Before any client has reached us, the sandbox is still being started
        # (a quick tunnel, the client finding its URL): not idle, unless that
        # takes longer than the client itself waits (--start-grace).
        if not STATE.contacted and grace > timeout:
            if STATE.idle_for() >= grace:
                request_shutdown("no client reached the server within %gs (--start-grace)" % grace)
                return
        elif STATE.idle_for() >= timeout:
            request_shutdown("idle for %gs with no request in flight (--idle-timeout)" % timeout)
            return


def stdin_loop():
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
    request_shutdown("stdin closed (parent exited; --exit-on-stdin-eof)")


def main(argv=None):
    args = parse_args(argv)
    token, token_source = take_token()
    if token is not None and len(token) < TOKEN_MIN_CHARS:
        sys.stderr.write(
            "server.py: error: refusing to start: %s is %d characters, shorter than a 128-bit token; "
            "use at least %d random characters (e.g. `openssl rand -hex 16`; hf-sandbox's providers use 64)\n"
            % (token_source, len(token), TOKEN_MIN_CHARS)
        )
        sys.stderr.flush()
        return 2
    if token is None and not args.allow_no_auth:
        sys.stderr.write(
            "server.py: error: refusing to start without a token: set SBX_TOKEN "
            "(or pass --allow-no-auth, for local development only)\n"
        )
        sys.stderr.flush()
        return 2
    if token is None and args.tunnel:
        sys.stderr.write(
            "server.py: error: refusing --tunnel without a token: the tunnel makes the server public; set SBX_TOKEN\n"
        )
        sys.stderr.flush()
        return 2
    dir_ = args.remove_on_exit
    if dir_ is not None and (not args.supervise or not os.path.isabs(dir_) or os.path.dirname(dir_) == dir_):
        _fail("--remove-on-exit needs --supervise and an absolute path other than /")
    if args.journal is not None and not os.path.isabs(args.journal):
        _fail("--journal needs an absolute path")
    if args.supervise:
        supervise(args.remove_on_exit, args.journal)  # returns in the server process
    if args.journal is not None:
        try:
            JOURNAL.open(args.journal)
        except FileExistsError:
            _fail("--journal %s: it exists and is not a journal (give a path that does not exist)" % args.journal)
        except OSError as e:
            _fail("cannot create the journal %s: %s" % (args.journal, e.strerror or e))
    STATE.token_digest = hashlib.sha256(token.encode("utf-8")).digest() if token is not None else None
    STATE.ping_interval = args.ping_interval
    JANITOR.grace, JANITOR.retain = args.exec_reattach, args.exec_retain
    LIMITS.max_connections, LIMITS.header_timeout, LIMITS.body_timeout = (
        args.max_connections, args.header_timeout, args.body_timeout,
    )
    BGPROCS.max_running = args.max_processes
    BGPROCS.max_exited = args.max_exited
    raise_open_files_limit()

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda signum, _frame: request_shutdown("received signal %d" % signum))
    # The kernel may deliver a signal to any thread, and the Python-level
    # handler runs only when the main thread next executes bytecode, which
    # it does not while blocked in os.read. The wakeup fd is written by the
    # C-level handler in whichever thread caught the signal.
    try:
        signal.set_wakeup_fd(_wake_w, warn_on_full_buffer=False)
    except (ValueError, OSError, TypeError):
        pass

    cls = Server6 if ":" in args.host else Server
    try:
        server = cls((args.host, args.port), Handler)
    except OSError as e:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e))
        return 1
    host, port = server.server_address[:2]

    if become_subreaper() or os.getpid() == 1:
        threading.Thread(target=reaper_loop, name="reaper", daemon=True).start()
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    if args.idle_timeout > 0:
        threading.Thread(target=idle_loop, args=(args.idle_timeout, args.start_grace), name="idle", daemon=True).start()
    if args.lifetime > 0:
        threading.Thread(target=lifetime_loop, args=(args.lifetime,), name="lifetime", daemon=True).start()
    if args.exit_on_stdin_eof:
        threading.Thread(target=stdin_loop, name="stdin", daemon=True).start()

    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        log("WARNING: no token and listening on %s: anyone who can reach this port can run commands" % host)
    log(
        "started: version %s (protocol %d), Python %s, pid %d, working directory %s, listening on %s:%d"
        % (VERSION, PROTOCOL, sys.version.split()[0], os.getpid(), os.getcwd(), host, port)
    )
    sys.stdout.write(
        json.dumps(
            {
                "event": "listening",
                "host": host,
                "port": port,
                "pid": os.getpid(),
                "version": VERSION,
                "protocol": PROTOCOL,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    sys.stdout.flush()
    tunnel = None
    if args.tunnel:  # after the listening line: the marker lines follow it on stdout
        tunnel = Tunnel(args.tunnel_config, tunnel_origin(host, port))
        tunnel.start()

    while True:  # the main thread only waits; request_shutdown() and signals wake it
        try:
            woke = os.read(_wake_r, 1)
        except InterruptedError:
            continue
        if woke:
            break
    if woke != b"x" and not _shutdown_reason:  # a byte from the wakeup fd is the signal number
        _shutdown_reason.append("received signal %d" % woke[0])
    log("shutting down: %s" % (_shutdown_reason[0] if _shutdown_reason else "requested"))
    try:
        if tunnel is not None:
            tunnel.stop.set()  # before the kill: the supervisor must not restart cloudflared
        kill_everything()
        if tunnel is not None:
            tunnel.cleanup()
        if JOURNAL.dir is not None:
            replay_journal(JOURNAL.dir)  # the transfers cut short by the shutdown
    finally:
        log("stopped: exit status %d" % _exit_status[0])
        try:
            sys.stderr.flush()
        except Exception:
            pass
        # Daemon threads may be blocked in socket or process calls; a normal
        # interpreter shutdown could wait on them. Nothing is left to flush.
        os._exit(_exit_status[0])


if __name__ == "__main__":
    sys.exit(main())
