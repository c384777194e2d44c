"""A command's stdin as a pipe the client writes to (`stdin_pipe`), with its bounds and stall limit."""

import os
import selectors
import threading
import time

from .common import IS_LINUX, env_seconds, new_selector


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
