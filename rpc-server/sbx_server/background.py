"""Background processes (/v1/processes) and execs kept for reattach: the output ring each one keeps,
the table of them with its bounds, and the janitor that kills abandoned execs and forgets expired ones."""

import array
import bisect
import os
import signal
import threading
import time

from .common import PROCESS_LIMITS, HttpError, OUTPUT_CHUNK, log
from .execution import spawn
from .httpframe import parse_decimal
from .proctree import kill_family
from .sinks import QuietSink


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
        # With `ack_window` (see ack()): bytes per stream a reader may send past what its client
        # acknowledged, and the furthest offsets acknowledged. None: no acknowledgements asked for.
        self.window = None
        self.acked = {"stdout": 0, "stderr": 0}
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

    def ack(self, pos):
        """The client holds the bytes before `pos` (per stream): a reader held back by the ack window
        may go on. The window is what makes a resume safe whatever sits in proxy and socket buffers:
        what was sent but not acknowledged is at most `window` <= `limit`, and a window behind the
        furthest byte sent is kept (see append)."""
        with self.cond:
            for name, n in pos.items():
                if n > self.acked[name]:
                    self.acked[name] = n
            self.cond.notify_all()

    # ---- called by followers, under self.cond ----

    def room(self, name, pos):
        """Bytes of stream `name` a reader at `pos` may still send before an acknowledgement."""
        if self.window is None:
            return None
        return self.acked[name] + self.window - pos

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
    Readers (RoutedHandler.follow_output) wake the pump through a pipe when they make room."""

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
        # Keys a client gave up (DELETE /v1/processes?idempotency_key=): key -> when, oldest first.
        # A request carrying one that arrives after the cancel is refused, so a command whose
        # request was still in flight when its caller was interrupted never starts.
        self.cancelled = {}

    def claim(self):
        """Reserve a slot for a command about to be spawned; 503 when all are taken. The slot is
        given back by release(), once the command has ended (BgProcess.finished) or failed to start."""
        with self.lock:
            if self.running >= PROCESS_LIMITS.max_running:  # read now: cli.main may set it after our import
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
        while len(exited) > 1 and (len(exited) > PROCESS_LIMITS.max_exited or kept > MAX_EXITED_BYTES):
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


# --------------------------------------------------------------------------
# Execs that outlive their connection
# --------------------------------------------------------------------------
#
# An exec is a record of BGPROCS (kind "exec") pumped by its own thread; the
# POST /v1/exec connection is only its first reader. When no reader is
# attached for SBX_EXEC_REATTACH seconds the command is killed (whole family);
# a finished exec is forgotten SBX_EXEC_RETAIN seconds after it ended.

DEFAULT_EXEC_BUFFER = 8 * 1024 * 1024


class Janitor(object):
    """One thread that kills abandoned execs and forgets expired ones, waking
    at the next deadline or when an exec is detached or finishes."""

    def __init__(self):
        self.cond = threading.Condition()
        self.started = False
        self.kicked = False

    def poke(self):
        with self.cond:
            if not self.started:
                self.started = True
                threading.Thread(target=self._run, name="exec-janitor", daemon=True).start()
            self.kicked = True
            self.cond.notify()

    def _run(self):
        while True:
            grace, retain = PROCESS_LIMITS.exec_reattach, PROCESS_LIMITS.exec_retain  # SBX_EXEC_REATTACH, _RETAIN
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
