"""A command's stdin as a pipe the client writes to (`stdin_pipe`), with its bounds and stall limit."""

import errno
import io
import os
import select
import selectors
import threading
import time

from .common import IS_LINUX, ClientGone, env_seconds, new_selector


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


# splice(2) moves body bytes from the socket into the pipe inside the kernel: no copy through a buffer
# here, and one call per pipe-full instead of a read and a write per MiB (Linux, Python 3.10+).
SPLICE = IS_LINUX and hasattr(os, "splice")
SPLICE_F_MOVE = 1
SPLICE_F_NONBLOCK = 2
# What the buffered reader may hold of a body (io.BufferedReader's buffer), taken by copy before splicing.
HELD_MAX = max(io.DEFAULT_BUFFER_SIZE, 64 * 1024)

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

    def splice_from(self, sock, most):
        """One non-blocking splice of up to `most` bytes from socket `sock` into the pipe: how many
        moved (0: one end was not ready), None when the pipe is closed. ClientGone when the client
        closed its end mid-body or the connection failed."""
        with self.lock:
            if self.closed:
                return None
            try:
                n = os.splice(sock, self.fd, min(most, STDIN_PIPE_SIZE), flags=SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError as e:
                if e.errno != errno.EPIPE:
                    raise ClientGone()
                self.closed = True  # the reader went away, as in _try_write
                try:
                    self.fileobj.close()
                except OSError:
                    pass
                n = None
            if n == 0:
                raise ClientGone()  # end of stream before the body's end
            if n is not None:
                self.written += n
        self._moved()
        return n

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


# --------------------------------------------------------------------------
# A stdin request's body into the pipe
# --------------------------------------------------------------------------


def feed_body(pipe, body, reader, skip, stall):
    """Writes a Content-Length `body` into `pipe`, its first `skip` bytes left out (a retry's, already
    written). False when the pipe closed or took nothing for `stall` seconds before all went in (the
    answer's offset says how far it got); ClientGone when the client stopped sending."""
    if pipe.closed:
        return False
    if SPLICE and skip <= 0:
        return splice_body(pipe, body, reader, stall)
    return copy_body(pipe, body, skip, stall)


def copy_body(pipe, body, skip, stall):
    """feed_body through a buffer: read from the socket, written to the pipe."""
    buf = memoryview(bytearray(min(STDIN_READ, max(body.remaining, 1))))
    while not body.done:
        n = body.read_into(buf)
        if skip >= n:
            skip -= n
            continue
        if not write_all(pipe, buf[skip:n], stall):
            return False
        skip = 0
    return True


def write_all(pipe, view, stall):
    while view:
        n = pipe.write(view, stall)
        if not n:
            return False
        view = view[n:]
    return True


def idle_bound(reader):
    try:
        return reader.wait_bound()
    except OSError:  # socket.timeout: the body's deadline passed, as a read would have found
        raise ClientGone()


def splice_body(pipe, body, reader, stall):
    """feed_body with splice(2), from the socket `reader` reads. What the buffered reader already holds
    of the body goes first, by copy. The socket (it has a timeout) and the pipe are non-blocking: a
    splice that moves nothing waits for whichever end is not ready, the socket within the body's idle
    bound (`reader.wait_bound`), the pipe within `stall`."""
    if not body.done and not write_all(pipe, memoryview(body.read_buffered(HELD_MAX)), stall):
        return False
    sock = reader.fileno()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(pipe.fd, select.POLLOUT)
    moved_at = time.monotonic()
    while not body.done:
        n = pipe.splice_from(sock, body.remaining)
        if n is None:
            return False  # closed (by the pump, or EPIPE)
        if n > 0:
            body.moved(n)
            moved_at = time.monotonic()
            continue
        ready = dict(poller.poll(STDIN_WAIT * 1000))
        if pipe.closed:
            return False
        waited = time.monotonic() - moved_at
        if not ready.get(pipe.fd, 0) & (select.POLLOUT | select.POLLERR) and waited >= stall:
            return False
        if not ready.get(sock, 0) and waited >= idle_bound(reader):
            raise ClientGone()
    return True
