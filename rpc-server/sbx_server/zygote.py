"""The warm wrappers' zygote: one Python, started once, that forks each new warm wrapper (warm.py).

Every command of a pooled sandbox uses up a wrapper, and a wrapper started as a new Python costs some
10 ms of CPU on a quiet machine, 30-40 ms on a loaded one: the stock's refills competed with the very
commands it is there to speed up. A fork of the zygote costs about a millisecond, and the child has
the wrapper's imports done. The server itself does not fork (a fork of the threaded server holds its
GIL and its memory map for the whole copy, and stalls every request meanwhile).

A wrapper must still be the server's own child (a Popen of PROCS: its pid waited for, its group
killed): the zygote forks it with clone(CLONE_PARENT), which makes it a child of the zygote's parent,
the server. A raw clone skips Python's fork hooks (harmless in the zygote, which has one thread and whose
child only confines itself and execs) and the C library's own fork bookkeeping: glibc >= 2.25 keeps no
pid or thread id of its own to update, but an older glibc caches the pid and musl (Alpine) the thread id,
so the child's os.getpid(), or its abort()/raise() (which would signal the zygote), went wrong. The raw
clone is used only under glibc >= 2.25 (clone_syscall). Elsewhere, or once the kernel refused the call
(ENOSYS, EPERM, EINVAL; EAGAIN or ENOMEM, a limit reached, only fail the fork at hand), the zygote forks
twice and the middle process exits at once, so that the kernel hands the wrapper to the nearest
subreaper above it, which the server is (proctree.reap_children: the zygote is its first spawn); that
costs a second fork of a Python and a round trip more per wrapper (on the loaded 2-core bench machine
a Python fork is some 7 ms of CPU). The server checks that the wrapper is its child; where not, the
zygote is given up and wrappers start as new Pythons, as without it.

Wire (the zygote's control socket): the server sends one byte with four fds (SCM_RIGHTS): the
wrapper's stdin, stdout, stderr and control fd; the zygote answers the wrapper's pid as decimal
digits and a newline (0: it could not fork). The wrapper takes the fds as 0, 1, 2 and 3, closes
every other, names itself TAG (its /proc comm: its argv is the zygote's) and runs warm.WARM_JOB."""

import os
import sys
import threading

from .isolation import CONFINE_FN

ZTAG = "sbx-warm-zygote"  # the zygote's argv and name (/proc comm holds 15 characters: all of it)
ANSWER_TIMEOUT = 10.0  # how long a fork may take before the zygote is given up
# clone(2)'s number where its first two arguments are (flags, stack), the rest 0 here: the zygote forks a
# wrapper with CLONE_PARENT, as a child of the server's. Elsewhere (or where it is refused) it forks twice.
CLONE_SYSCALLS = {"x86_64": 56, "aarch64": 220}

ZYGOTE_LOOP = r"""
import _socket
zctl = _socket.socket(fileno=int(sys.argv[2]))
NAME = sys.argv[3].encode()
prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: what ps shows
def close_from(low):
    if syscall(436, low, 0xFFFFFFFF, 0) == 0:  # close_range (Linux 5.9); the fd limit may be huge
        return
    for name in os.listdir("/proc/self/fd"):
        if int(name) >= low:
            try:
                os.close(int(name))
            except OSError:
                pass
def become(fds):
    prctl(15, NAME, 0, 0, 0)
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    close_from(4)
    g = dict(globals())
    g["ctl"] = _socket.socket(fileno=3)
    exec(JOB, g)
def wrapper_of(fds):  # a forked child's life as the wrapper on `fds`: it never returns
    code = 127
    try:
        become(fds)
    except SystemExit as e:  # fatal() and run(): the cold wrapper's exit codes
        code = e.code if isinstance(e.code, int) else 1
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)
while True:
    msg, anc, _f, _a = zctl.recvmsg(1, _socket.CMSG_SPACE(16))
    if not msg:
        os._exit(0)  # the server went away
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True) for i in range(0, len(data) - 3, 4)]
    pid = b"0"
    if len(fds) == 4 and CLONE >= 0:
        child = syscall(CLONE, 0x8000 | 17, 0, 0, 0, 0)  # CLONE_PARENT | SIGCHLD: the server's child
        if child == 0:
            wrapper_of(fds)
        if child > 0:
            pid = b"%d" % child
        elif _ctypes.get_errno() in (38, 1, 22):  # ENOSYS, EPERM, EINVAL: the double fork from now on
            CLONE = -1  # (EAGAIN, ENOMEM: a limit reached now; this fork fails, answered 0, the next tries again)
    if len(fds) == 4 and CLONE < 0:
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:
            try:
                wrapper = os.fork()
                if wrapper == 0:
                    wrapper_of(fds)
                os.write(w, b"%d" % wrapper)
            finally:
                os._exit(0)
        os.close(w)
        pid = os.read(r, 32) or b"0"
        os.close(r)
        os.waitpid(middle, 0)  # the wrapper is the server's from here on
    for fd in fds:
        os.close(fd)
    zctl.sendall(pid + b"\n")
"""


class Zygote(object):
    """The zygote process of a host's stock, and the forks asked of it (one at a time)."""

    def __init__(self, job):
        try:
            libc = os.confstr("CS_GNU_LIBC_VERSION")
        except (ValueError, OSError):  # not glibc (musl has no such name)
            libc = None
        clone = clone_syscall(os.uname().machine, libc)
        self.source = CONFINE_FN + "JOB = compile(%r, 'warm', 'exec')\nCLONE = %d\n" % (job, clone) + ZYGOTE_LOOP
        self.lock = threading.Lock()
        self.proc = None
        self.sock = None

    def start(self, tag):
        """Starts the zygote (a PROCS process like a command: killed with the rest at shutdown); its
        wrappers will call themselves `tag`."""
        import socket
        import subprocess

        from .proctree import spawn_scrubbed

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = spawn_scrubbed(
                [sys.executable, "-S", "-I", "-c", self.source, ZTAG, str(theirs.fileno()), tag],
                theirs.fileno(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(ANSWER_TIMEOUT)
        self.sock = ours

    def fork(self, fds):
        """The pid of a new wrapper on `fds` (stdin, stdout, stderr, control: the zygote's copies are
        closed once it forked), now the server's child; raises OSError when the zygote cannot."""
        import socket

        data = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        with self.lock:
            self.sock.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, data)])
            answer = b""
            while not answer.endswith(b"\n"):
                more = self.sock.recv(32)
                if not more:
                    raise OSError("the warm wrappers' zygote exited")
                answer += more
        pid = int(answer)
        if pid <= 0:
            raise ForkFailed("the warm wrappers' zygote could not fork")
        if parent_of(pid) != os.getpid():
            # No subreaper here: it went to init (or another reaper). It is killed, never used.
            import signal

            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            raise OSError("a forked wrapper (pid %d) is not this server's child (no subreaper)" % pid)
        return pid

    def stop(self):
        """The zygote ended: killed if it still runs, and reaped (PROCS's reaper leaves its own to them)."""
        import signal

        from .proctree import PROCS

        if self.sock is not None:
            self.sock.close()
            self.sock = None
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            PROCS.reaped(proc, killed=False)


def clone_syscall(machine, libc):
    """clone(2)'s number for the zygote's raw clone, or -1 (the double fork): `libc` is
    confstr(CS_GNU_LIBC_VERSION), e.g. "glibc 2.36", or None. Only glibc >= 2.25 caches neither the pid
    nor the thread id that a raw clone would leave the child with (the zygote's)."""
    words = (libc or "").split()
    if len(words) != 2 or words[0] != "glibc":
        return -1
    try:
        version = tuple(int(part) for part in words[1].split(".")[:2])
    except ValueError:
        return -1
    if version < (2, 25):
        return -1
    return CLONE_SYSCALLS.get(machine, -1)


class ForkFailed(OSError):
    """The zygote is well but its fork failed (EAGAIN at a process limit): a passing failure, for which the
    zygote is kept (the refill retries), unlike its death."""

    transient = True


def parent_of(pid):
    from .proctree import stat_of

    stat = stat_of(pid)
    return stat[0] if stat is not None else None


_FORKED = []


def popen_class():
    """subprocess.Popen whose child comes from a zygote: `ForkedWrapper(argv, zygote=z, ...)`, with
    pipes for all three streams and the control fd as `pass_fds[0]`. (Made at first use: subprocess is
    imported by then.)"""
    if not _FORKED:
        _FORKED.append(forked_wrapper())
    return _FORKED[0]


def forked_wrapper():
    import subprocess

    class ForkedWrapper(subprocess.Popen):
        def __init__(self, argv, zygote, **kwargs):
            self.zygote = zygote
            subprocess.Popen.__init__(self, argv, **kwargs)

        def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                           creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, *rest):
            self.pid = self.zygote.fork((p2cread, c2pwrite, errwrite, pass_fds[0]))
            self._child_created = True
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    return ForkedWrapper
