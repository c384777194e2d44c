"""Starting a command on behalf of a route: background starts, idempotency keys (a key runs one
command), buffer sizes, and signal names."""

import contextlib
import json
import re
import signal
import threading
import time

from .background import BGPROCS, BgProcess, ExecSink, MAX_BUFFER_BYTES, RingSink, SIGNAL_NAMES
from .common import SCOPE, STATE, bad_request, format_exc, log
from .execution import ExecResult, pump
from .httpframe import parse_decimal
from .proctree import PROCS, kill_group


def run_background(bg, t0):
    """The thread of one background process or exec: pump it to completion."""
    result = None
    sink = ExecSink(bg) if bg.kind == "exec" else RingSink(bg)
    try:
        result = pump(None, bg.proc, bg.spec, sink, t0)
    except Exception:
        log("background process %s failed:\n%s" % (bg.id, format_exc()))
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


IDEMPOTENCY_KEY = r"\A[A-Za-z0-9._:-]{1,128}\Z"  # a pattern: re compiles it at its first use (see httpframe.py)
# The fields that make two requests "the same command" for an idempotency key.
IDEMPOTENT_FIELDS = ("cmd", "shell", "env", "cwd", "workdir", "stdin", "stdin_b64", "stdin_pipe")
KEYED = threading.Lock()  # check-then-spawn of keyed requests is one step: a key runs one command


def buffer_bytes(req, default):
    """The request's `buffer_bytes` (a command's output window), checked."""
    limit = req.get("buffer_bytes", default)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BUFFER_BYTES:
        raise bad_request("`buffer_bytes` must be an integer from 1 to %d (64 MiB)" % MAX_BUFFER_BYTES)
    return limit


def ack_window(req, limit):
    """The request's `ack_window` (bytes a reader may send ahead of the client's acknowledgements),
    checked, at most `limit`; None when the client sends no acknowledgements."""
    window = req.get("ack_window")
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_BUFFER_BYTES:
        raise bad_request("`ack_window` must be an integer from 1 to %d (64 MiB)" % MAX_BUFFER_BYTES)
    return min(window, limit)


def checked_idempotency_key(key):
    if not isinstance(key, str) or not re.match(IDEMPOTENCY_KEY, key):
        raise bad_request("`idempotency_key` must be 1 to 128 characters of A-Z a-z 0-9 . _ : - (got %r)" % (key,))
    return key


def scoped_key(key):
    """`key` as the process table holds it. In host mode, within the sandbox's own namespace (its id and a
    slash, which no key has): sandboxes never share a key, nor spend one another's by cancelling it."""
    sandbox = SCOPE.sandbox
    return key if sandbox is None else sandbox.id + "/" + key


def idempotency(req, kind):
    """(key, fingerprint) of a request, (None, None) without a key; the key scoped (scoped_key)."""
    key = req.get("idempotency_key")
    if key is None:
        return None, None
    key = scoped_key(checked_idempotency_key(key))
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
