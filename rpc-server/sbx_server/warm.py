"""Warm wrappers: a small stock of confining wrappers (isolation.py) started ahead of the commands that
will use them, so that a host-mode command does not wait for a Python start.

A warm wrapper is a Python forked by the stock's zygote (zygote.py: a fork, not a Python start, for
each; where the zygote cannot run, `python3 -S -I -c WARM`), a child of the server like any command
(stdin, stdout and stderr pipes, a session and process group of its own, in PROCS) plus the child end
of a unix socket pair, its control fd, on which it blocks with its imports done, named TAG. An exec or spawn takes one (`Stock.start`) and sends its
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

import collections
import os
import sys
import threading
import time

from .common import HttpError, log
from .isolation import CONFINE_FN
from .proctree import PROCS, spawn_scrubbed

DEFAULT_STOCK = 8  # SBX_HOST_WARM_WRAPPERS: the most wrappers kept started (0: every command starts one cold)
# The stock starts this small and grows by one at each command that found it empty, up to its most: a
# host whose commands come faster than a wrapper starts keeps more ready, an idle one costs little (an
# idle wrapper is ~4.4 MiB of its own).
INITIAL_STOCK = 2
TAG = "sbx-warm"  # a waiting wrapper's name (/proc/PID/comm): what it is, for ps and for the tests
REPLY_TIMEOUT = 30.0  # how long a wrapper may take between its job and its exec
RETRY = 1.0  # after a wrapper could not be started: the next try
# From a take to the start of its replacement: a start at once would compete with the command that
# took the wrapper, on the few cores of a job, in exactly the milliseconds the stock is there to cut
# (measured with Python starts: p50 of exec("true") 7-9 ms at once, 5-6 ms 20 ms later; with the
# zygote, on a loaded 2-core machine, a lease's first exec 1.29x a dedicated one at 20 ms, 0.91x at
# 50 ms). Counted per take: the replacements of a burst's takes, older than this, start back to back.
REFILL_DELAY = 0.05

# What a wrapper does with its control fd `ctl` (a socket object): its job read, confined, exec'ed.
WARM_JOB = r"""
import _socket
def fail(data=b""):
    if data:
        ctl.sendall(data)
    os._exit(127)
def parse(data):
    fields = data.split(b"\0")
    uid, nproc, mem, null, argc = (int(fields[i]) for i in (0, 1, 2, 3, 5))
    program, argv = fields[6], fields[7:7 + argc]
    env = dict(e.split(b"=", 1) for e in fields[7 + argc:])
    return uid, nproc, mem, null, fields[4], program, argv, env
# A forked wrapper shares the zygote's pages until it writes one (a reference count is a write), and each
# first write is a page fault and a copy: done now, while it waits, by a parse of a job like the ones to
# come and a touch of what it calls then, not between its job and its exec (on the loaded bench machine,
# a VM where faults are dear: 33 faults and 1.6-1.9 ms from the job to confined, then 12 and 0.9-1.1 ms).
parse(b"\0".join([b"20000", b"256", b"2147483648", b"1", b"/", b"1", b"/bin/true", b"true"] + [b"V%d=v" % i for i in range(12)]))
touched = (resource.setrlimit, resource.RLIMIT_NPROC, resource.RLIMIT_AS, resource.RLIMIT_CORE, os.setgroups,
           os.setgid, os.setuid, os.chdir, os.open, os.dup2, os.close, os.execve, prctl, syscall, confine, run,
           int.from_bytes, _socket.SOL_SOCKET, _socket.SCM_RIGHTS, sys.byteorder)
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
uid, nproc, mem, null, cwd, program, argv, env = parse(data)
try:
    if null:
        n = os.open("/dev/null", os.O_RDONLY)
        os.dup2(n, 0)
        os.close(n)
    os.chdir(cwd)
except OSError as e:
    fail(b"%d %s" % (e.errno or 0, (e.strerror or str(e)).encode()))
confine(uid, nproc, mem, fd)
ctl.close()
run(program, argv, env)
"""

# A wrapper started as a new Python (without the zygote): argv = [TAG, control fd].
WARM = CONFINE_FN + r"""
import _socket
prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: what ps shows, as the zygote's wrappers
ctl = _socket.socket(fileno=int(sys.argv[2]))
""" + WARM_JOB


class Stock(object):
    """The warm wrappers of a host: `target` kept started, from INITIAL_STOCK up to `size` as commands find
    the stock empty (0: none, every command is started cold)."""

    def __init__(self, isolation, size):
        self.isolation = isolation
        self.size = size if isolation.confines else 0  # without confinement commands need no wrapper
        self.target = min(INITIAL_STOCK, self.size)
        self.cond = threading.Condition()
        self.ready = []  # (Popen, control socket), oldest first
        self.taken = collections.deque()  # when each wrapper not yet replaced was taken (monotonic)
        self.zygote = None  # zygote.Zygote: what forks the wrappers; None: each starts as a new Python

    def start(self):
        if self.size > 0:
            threading.Thread(target=self.refill_loop, name="warm", daemon=True).start()

    # ---- the stock ----

    def refill_loop(self):
        try:
            self.zygote = self.started_zygote()
        except HttpError:  # PROCS is closed: the server is shutting down
            return
        while True:
            with self.cond:
                while len(self.ready) >= self.target:
                    self.cond.wait()
                taken = self.taken.popleft() if self.taken else None
            if taken is not None:  # a replacement (not the first stock, nor its growth)
                time.sleep(max(0.0, taken + REFILL_DELAY - time.monotonic()))
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

    def started_zygote(self):
        """The zygote that forks this stock's wrappers (zygote.py), or None where it cannot start."""
        from .zygote import Zygote

        zygote = Zygote(WARM_JOB)
        try:
            zygote.start(TAG)
        except HttpError:
            raise
        except Exception as e:
            log("warm wrappers: no zygote (%s): each wrapper starts as a new Python" % e)
            return None
        return zygote

    def started(self, only=None):
        """A new wrapper: forked by the zygote, else (none, or it failed: then for good) a new Python.
        `only`: forked by that zygote, else the failure raised (nothing given up, no Python started)."""
        import socket
        import subprocess

        argv, popen = [sys.executable, "-S", "-I", "-c", WARM, TAG], None
        zygote = only or self.zygote
        if zygote is not None:
            from .zygote import popen_class

            forked = popen_class()
            argv, popen = [TAG], lambda args, **kwargs: forked(args, zygote=zygote, **kwargs)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = spawn_scrubbed(
                argv + ([] if popen else [str(theirs.fileno())]),
                theirs.fileno(),
                popen=popen,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
            )
        except HttpError:
            ours.close()
            raise
        except Exception as e:  # not only OSError: the zygote's Popen relies on CPython internals
            ours.close()
            if popen is None or only is not None or getattr(e, "transient", False):  # the refill retries (a fork may fail at a limit)
                raise
            log("warm wrappers: the zygote failed (%s): each wrapper starts as a new Python from now on" % e)
            self.zygote.stop()
            self.zygote = None
            return self.started()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return proc, ours

    def take(self):
        """A live warm wrapper, or None; the refill thread is told to start another. With the stock empty,
        one forked now by the zygote (a fork, about a millisecond, where a cold wrapper is a Python start:
        ~30 ms of CPU, more than a burst's commands can afford); None without a zygote."""
        while True:
            with self.cond:
                empty = not self.ready
                if empty:
                    if self.target < self.size:
                        self.target += 1  # this command found none: keep one more ready from now on
                        self.cond.notify()
                else:
                    proc, ctl = self.ready.pop(0)
                    self.taken.append(time.monotonic())
                    self.cond.notify()
            if empty:
                # outside the lock: the fork (up to ANSWER_TIMEOUT) must not hold up other takes or the refill
                return self.forked_now()
            if proc.poll() is None:
                return proc, ctl
            discard(proc, ctl)  # it died waiting (killed by someone): never used

    def forked_now(self):
        """A wrapper forked for the command at hand, or None (no zygote, or its fork failed: the command
        starts cold). The refill thread alone gives a failed zygote up."""
        zygote = self.zygote
        if zygote is None:
            return None
        try:
            return self.started(zygote)
        except HttpError:
            raise
        except Exception as e:
            log("warm wrappers: could not fork one for a command (%s): it starts cold" % e)
            return None

    # ---- a command ----

    def run(self, sandbox, program, spec, env):
        """The command started in a warm wrapper (its Popen), or None when none is free: then the caller
        starts it cold. Raises OSError where a cold start's chdir would have."""
        taken = self.take() if self.size > 0 else None
        if taken is None:
            return None
        proc, ctl = taken
        head = list(self.isolation.limits(sandbox)) + [
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

