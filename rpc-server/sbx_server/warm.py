"""Warm wrappers: a small stock of confining wrappers (isolation.py) started ahead of the commands that
will use them, so that a host-mode command does not wait for a Python start.

A warm wrapper is `python3 -S -I -c WARM`, started like any command (stdin, stdout and stderr pipes, a
session and process group of its own, in PROCS) plus the child end of a unix socket pair, its control
fd, on which it blocks with its imports done. An exec or spawn takes one (`Stock.start`) and sends its
job there: the program, argv, environment, cwd, whether stdin is /dev/null, the uid and rlimits, and
the sandbox's Landlock ruleset fd (SCM_RIGHTS; the wrapper was started before the sandbox had one).
The wrapper confines itself exactly as the cold one does (isolation.CONFINE_FN), closes its control fd
and execs: the command keeps the pid and the pipes the server already has, and is its child, so
waiting, reaping and killing its family work as for a cold one. Until its job comes it runs as the
server with an empty environment and no sandbox's marker: no sandbox's process list, kill or idle scan
sees it; shutdown kills it with every group in PROCS. A background thread refills the stock.

Job bytes: 8-byte little-endian length, then NUL-separated fields (no field may hold a NUL: parse_exec
refuses them): uid, max_procs, max mem bytes, stdin-is-null (0/1), cwd, argc, program, argv...,
NAME=VALUE... Before confining, the wrapper reports a chdir failure back on the control fd as
"errno strerror"; the server raises it as the OSError a cold spawn's chdir would have raised, so the
client gets the same answer."""

import os
import sys
import threading
import time

from .common import HttpError, log
from .isolation import CONFINE_FN
from .proctree import PROCS

DEFAULT_STOCK = 8  # SBX_HOST_WARM_WRAPPERS: the most wrappers kept started (0: every command starts one cold)
# The stock starts this small and grows by one at each command that found it empty, up to its most: a
# host whose commands come faster than a wrapper starts keeps more ready, an idle one costs little (an
# idle wrapper is ~4.4 MiB of its own).
INITIAL_STOCK = 2
TAG = "sbx-warm-wrapper"  # in the wrapper's argv: what it is, for ps and for the tests
REPLY_TIMEOUT = 30.0  # how long a wrapper may take between its job and its exec
RETRY = 1.0  # after a wrapper could not be started: the next try
# From a take to the start of its replacement: a Python start (some 15 ms of CPU) at once would
# compete with the command that took the wrapper, on the few cores of a job, in exactly the
# milliseconds the stock is there to cut (measured: p50 of exec("true") 7-9 ms at once, 5-6 ms so).
# A burst meanwhile takes the rest of the stock, then starts cold.
REFILL_DELAY = 0.02

WARM = CONFINE_FN + r"""
import _socket
ctl = _socket.socket(fileno=int(sys.argv[2]))
def fail(data=b""):
    if data:
        ctl.sendall(data)
    os._exit(127)
data, anc, _f, _a = ctl.recvmsg(65536, _socket.CMSG_SPACE(4))
while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "little"):
    more = data and ctl.recv(1 << 20)
    if not more:
        os._exit(0)  # the server went away before a whole job came
    data += more
data = data[8:]
fd = -1
for level, kind, fds in anc:
    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
        fd = int.from_bytes(fds[:4], sys.byteorder, signed=True)
fields = data.split(b"\0")
uid, nproc, mem, null, argc = (int(fields[i]) for i in (0, 1, 2, 3, 5))
program, argv = fields[6], fields[7:7 + argc]
env = dict(e.split(b"=", 1) for e in fields[7 + argc:])
try:
    if null:
        n = os.open("/dev/null", os.O_RDONLY)
        os.dup2(n, 0)
        os.close(n)
    os.chdir(fields[4])
except OSError as e:
    fail(b"%d %s" % (e.errno or 0, (e.strerror or str(e)).encode()))
confine(uid, nproc, mem, fd)
ctl.close()
run(program, argv, env)
"""


class Stock(object):
    """The warm wrappers of a host: `target` kept started, from INITIAL_STOCK up to `size` as commands find
    the stock empty (0: none, every command is started cold)."""

    def __init__(self, isolation, size):
        self.isolation = isolation
        self.size = size if isolation.confines else 0  # without confinement commands need no wrapper
        self.target = min(INITIAL_STOCK, self.size)
        self.cond = threading.Condition()
        self.ready = []  # (Popen, control socket), oldest first

    def start(self):
        if self.size > 0:
            threading.Thread(target=self.refill_loop, name="warm", daemon=True).start()

    # ---- the stock ----

    def refill_loop(self):
        while True:
            with self.cond:
                while len(self.ready) >= self.target:
                    self.cond.wait()
            time.sleep(REFILL_DELAY)
            try:
                wrapper = self.started()
            except HttpError:  # PROCS is closed: the server is shutting down
                return
            except Exception as e:  # no process can start now (fds, processes): commands start cold
                log("warm wrappers: cannot start one (%s): commands start cold meanwhile" % e)
                time.sleep(RETRY)
                continue
            with self.cond:
                self.ready.append(wrapper)

    def started(self):
        import socket
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = PROCS.spawn(
                [sys.executable, "-S", "-I", "-c", WARM, TAG, str(theirs.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd="/",
                env={},  # the host's environment holds the job's secrets
                close_fds=True,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                bufsize=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return proc, ours

    def take(self):
        """A live warm wrapper, or None; the refill thread is told to start another."""
        while True:
            with self.cond:
                if not self.ready:
                    if self.target < self.size:
                        self.target += 1  # this command starts cold: keep one more ready from now on
                        self.cond.notify()
                    return None
                proc, ctl = self.ready.pop(0)
                self.cond.notify()
            if proc.poll() is None:
                return proc, ctl
            discard(proc, ctl)  # it died waiting (killed by someone): never used

    # ---- a command ----

    def run(self, sandbox, program, spec, env):
        """The command started in a warm wrapper (its Popen), or None when none is free: then the caller
        starts it cold. Raises OSError where a cold start's chdir would have."""
        taken = self.take() if self.size > 0 else None
        if taken is None:
            return None
        proc, ctl = taken
        isolation = self.isolation
        head = [
            sandbox.uid if isolation.uids else -1,
            sandbox.max_procs if isolation.uids else 0,  # see Isolation.command
            sandbox.max_mem_mb * 1024 * 1024,
            0 if spec.stdin or spec.stdin_pipe else 1,
            os.fsencode(spec.cwd),
            len(spec.argv),
            os.fsencode(program),
        ]
        fields = [x if isinstance(x, bytes) else str(x).encode() for x in head]
        fields += [os.fsencode(a) for a in spec.argv]
        fields += [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        payload = b"\0".join(fields)
        try:
            reply = self.send(ctl, len(payload).to_bytes(8, "little") + payload, sandbox.ruleset)
        except OSError:  # it died between take and send: start the command cold
            discard(proc, ctl)
            return None
        if reply:
            discard(proc, ctl)
            number, _, text = reply.decode("utf-8", "replace").partition(" ")
            raise OSError(int(number) if number.isdigit() else 0, text, spec.cwd)
        ctl.close()
        proc.args = spec.argv
        if not (spec.stdin or spec.stdin_pipe):
            proc.stdin.close()  # it reads /dev/null
            proc.stdin = None
        return proc

    def send(self, ctl, job, ruleset):
        """Sends the job, then waits until the wrapper closed its control fd (confined, about to exec:
        b"") or reported why it cannot start the command."""
        import socket

        ancillary = []
        if ruleset >= 0:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, ruleset.to_bytes(4, sys.byteorder, signed=True))]
        ctl.settimeout(REPLY_TIMEOUT)
        sent = ctl.sendmsg([job], ancillary)  # the ruleset goes with the first bytes
        if sent < len(job):  # only then: a wrapper that has its job may have closed its end already
            ctl.sendall(job[sent:])
        reply = b""
        while True:
            more = ctl.recv(4096)
            if not more:
                return reply
            reply += more


def discard(proc, ctl):
    """A wrapper that runs no command: killed, reaped, forgotten."""
    import signal

    ctl.close()
    try:
        proc.send_signal(signal.SIGKILL)
    except OSError:
        pass
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()
    proc.wait()
    PROCS.reaped(proc, killed=False)

