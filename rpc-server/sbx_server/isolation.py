"""Host mode's isolation: what keeps a sandbox's commands away from the other sandboxes and from the
server. With root, each sandbox has its own uid (0700 home, no signals or ptrace across uids, rlimits
per uid); with Landlock, its commands see the system read-only and only their own home read-write,
cannot bind TCP ports nor reach abstract unix sockets outside their domain (landlock.py).

The confinement is applied in the child between fork and exec by a small wrapper, `python3 -S -I -c
CONFINE`, which execs the command: subprocess's preexec_fn would run Python in a child forked from a
threaded server (a lock another thread held at the fork deadlocks it: the reason the server never
uses preexec_fn), posix_spawn cannot setuid, and subprocess's own user=/group= cannot set
NO_NEW_PRIVS, rlimits or Landlock. The wrapper costs a Python start per command, in host mode only,
unless a warm one (warm.py, started ahead with the same confine()) takes the command."""

import os
import shutil
import sys
import threading

from .common import log

MIN_LANDLOCK_ABI = 6  # scoped abstract unix sockets arrived in ABI 6 (Linux 6.12)
# Where host-mode servers of one machine lock the uids their sandboxes have (one file per uid, flock'ed
# while the sandbox lives, released by the kernel when its server dies): two hosts on a machine (the
# local provider's) must never give one uid to two sandboxes.
UID_LOCKS = "/run/hf-sandbox/uids"

# What confines a process, in the wrapper's source (shared by the cold wrapper below and warm.py's):
# confine(uid or -1, max_procs or 0, max mem bytes or 0, ruleset fd or -1). It runs as the server's
# user until it gives its uid up; everything it cannot do is fatal (126), so a command never runs less
# confined than the host says. It calls prctl and syscall through _ctypes itself: the ctypes package
# would cost each command some 10 ms more to import.
CONFINE_FN = r"""
import os, sys
def fatal(e):
    sys.stderr.write("sandbox: cannot confine the command: %s\n" % e)
    sys.exit(126)
try:
    import _ctypes, resource
    class c_int(_ctypes._SimpleCData):
        _type_ = "i"
    class CFunc(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int
    class libc:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)
    prctl, syscall = CFunc(("prctl", libc)), CFunc(("syscall", libc))
except Exception as e:
    fatal(e)
def confine(uid, nproc, mem, fd):
    try:
        if nproc:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if mem:
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if uid >= 0:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        if prctl(38, 1, 0, 0, 0) != 0:
            raise OSError(_ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if fd >= 0:
            if syscall(446, fd, 0) != 0:
                raise OSError(_ctypes.get_errno(), "landlock_restrict_self")
            os.close(fd)
    except Exception as e:
        fatal(e)
def run(program, argv, env=None):
    try:
        os.execv(program, argv) if env is None else os.execve(program, argv, env)
    except OSError as e:
        sys.stderr.write("sandbox: cannot run %s: %s\n" % (os.fsdecode(program), e.strerror or e))
        sys.exit(126)
"""

# The cold wrapper's source: argv = [uid or -1, max_procs or 0, max mem bytes or 0, ruleset fd or -1,
# program, argv...].
CONFINE = CONFINE_FN + r"""
confine(*(int(a) for a in sys.argv[1:5]))
run(sys.argv[5], sys.argv[6:])
"""


class Isolation(object):
    """What this host gives its sandboxes: own uids (root) and Landlock (its ABI, 0: none)."""

    def __init__(self, uids, landlock_abi):
        self.uids = uids
        self.landlock_abi = landlock_abi
        self.local = threading.local()  # per thread: the fs uid a handler acts with
        self._libc = None
        self.uid_locks = UID_LOCKS

    @property
    def name(self):
        parts = (["uid"] if self.uids else []) + (["landlock"] if self.landlock_abi else [])
        return "+".join(parts) or "none"

    @property
    def confines(self):
        return self.uids or self.landlock_abi > 0

    def claim_uid(self, uid):
        """A lock fd on `uid`, machine-wide; -1 when another server holds it."""
        import fcntl

        fd = os.open("%s/%d" % (self.uid_locks, uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return -1
        return fd

    # ---- homes ----

    def prepare(self, homes):
        """The homes' directory: created, and with its parents traversable by every sandbox uid (each home
        is 0700: traversing the parent lists nothing)."""
        os.makedirs(homes, exist_ok=True)
        if self.uids:
            try:
                os.makedirs(UID_LOCKS, 0o700, exist_ok=True)
            except OSError as e:  # a read-only /run: the locks hold for the hosts sharing these homes only
                self.uid_locks = os.path.join(homes, ".uids")
                log("host mode: cannot use %s (%s): uid locks in %s" % (UID_LOCKS, e.strerror or e, self.uid_locks))
                os.makedirs(self.uid_locks, 0o700, exist_ok=True)
            path = homes
            while True:
                mode = os.stat(path).st_mode & 0o7777
                if mode & 0o111 != 0o111:
                    os.chmod(path, mode | 0o111)
                    log("host mode: made %s traversable (o+x) for the sandboxes' uids" % path)
                parent = os.path.dirname(path)
                if parent == path:
                    break
                path = parent

    def make_home(self, sandbox, proxy_subdir):
        home = sandbox.home
        os.mkdir(home, 0o700)
        for sub in (".tmp", ".sbx", proxy_subdir):
            os.mkdir(os.path.join(home, sub), 0o700)
        if self.uids:
            for path in (home, home + "/.tmp", home + "/.sbx", os.path.join(home, proxy_subdir)):
                os.chown(path, sandbox.uid, sandbox.uid)
        sandbox.ruleset = -1
        if self.landlock_abi:
            from .landlock import ruleset

            sandbox.ruleset = ruleset(self.landlock_abi, home)

    def remove_home(self, home):
        """Removes a sandbox's home, whatever its commands left in it. Root removes any file; the server's own
        user (weak isolation: the sandbox's files are its own) cannot empty a directory the sandbox made
        read-only (`chmod 500 d`), so those are made writable, without following links, and removed again."""
        shutil.rmtree(home, ignore_errors=True)
        if not os.path.lexists(home) or os.geteuid() == 0:
            # Root was not stopped by modes: what is left is still in use, and no chmod of root's may
            # follow a link a surviving sandbox process swapped in.
            if os.path.lexists(home):
                log("sandbox home %s: cannot remove all of it" % home)
            return
        writable(home)  # before the walk lists it
        for parent, dirs, _files in os.walk(home):  # top-down: a directory is made writable before it is listed
            for d in dirs:
                writable(os.path.join(parent, d))
        shutil.rmtree(home, ignore_errors=True)
        if os.path.lexists(home):
            log("sandbox home %s: cannot remove all of it" % home)

    def forget(self, sandbox):
        if sandbox.ruleset >= 0:
            os.close(sandbox.ruleset)
            sandbox.ruleset = -1

    # ---- commands ----

    def limits(self, sandbox):
        """(uid or -1, max processes or 0, max memory bytes): what a wrapper, cold or warm, confines a
        command of `sandbox` to. RLIMIT_NPROC counts per uid: without own uids it would count the host's."""
        mem = sandbox.max_mem_mb * 1024 * 1024
        return (sandbox.uid, sandbox.max_procs, mem) if self.uids else (-1, 0, mem)

    def command(self, sandbox, program, argv):
        """(argv, pass_fds) that run `program` with `argv` confined to `sandbox`."""
        if not self.confines:
            return argv, ()
        head = [sys.executable, "-S", "-I", "-c", CONFINE]
        head += [str(x) for x in self.limits(sandbox)] + [str(sandbox.ruleset), program]
        return head + list(argv), ((sandbox.ruleset,) if sandbox.ruleset >= 0 else ())

    # ---- the server acting for a sandbox ----

    def warm(self):
        """Imports, before any thread acts for a sandbox: with its fs uid, the interpreter's own files may
        be out of reach (a Python under /root), and the server imports some modules at first use."""
        if not self.uids:
            return
        import base64, ctypes, fcntl, resource, shutil, signal, socket, subprocess, traceback  # noqa: F401
        import urllib.parse  # noqa: F401

        for codec in ("latin-1", "ascii", "utf-8", "idna"):
            "x".encode(codec)
        self.libc()

    def enter(self, sandbox):
        """The calling thread's file system accesses from now on are the sandbox uid's (setfsuid and
        setfsgid are per thread): what the server creates for it is its own, and the server, root, cannot
        be led by a sandbox's symlink to anything the sandbox could not open itself."""
        if not self.uids:
            return
        libc = self.libc()
        libc.setfsgid(sandbox.uid)
        libc.setfsuid(sandbox.uid)
        self.local.uid = sandbox.uid

    def leave(self):
        if getattr(self.local, "uid", None) is None:
            return
        libc = self.libc()
        libc.setfsuid(0)
        libc.setfsgid(0)
        self.local.uid = None

    def libc(self):
        if self._libc is None:
            import ctypes

            self._libc = ctypes.CDLL(None, use_errno=True)
        return self._libc


def writable(path):
    """chmod 0700 a directory that is not a link (its target is not the sandbox's to give away). Through an
    O_PATH descriptor opened without following a link, so a link swapped in after the check cannot be
    followed; it needs no permission on the directory (a `chmod 0` one too), and the chmod goes through
    its /proc/self/fd entry, which names the opened directory itself (glibc's fchmodat does the same)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (OSError, AttributeError):  # AttributeError: no O_PATH (not Linux): leave it
        return
    try:
        os.chmod("/proc/self/fd/%d" % fd, 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def landlock_abi():
    """The kernel's Landlock ABI version; 0 without Landlock."""
    if not sys.platform.startswith("linux"):
        return 0
    from .landlock import abi

    return abi()


def probe():
    """(Isolation, what is missing): the caller refuses to start unless told to accept it."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    abi = landlock_abi()
    missing = []
    if not root:
        # What one uid for all costs; with Landlock (any ABI) it still keeps ptrace and /proc/<pid>/environ
        # within a command's own domain.
        also = "" if abi else ", trace them and read their environment and memory (the host token's too)"
        missing.append(
            "not root: cannot give sandboxes their own uid (all would run as this server's user: they could "
            "signal each other and this server%s)" % also
        )
    if abi == 0:
        missing.append("Landlock unavailable (kernel without it, or disabled at boot): sandboxes could read each other's files in shared directories and reach each other's ports")
    elif abi < MIN_LANDLOCK_ABI:
        missing.append("Landlock ABI %d < %d: sandboxes could reach each other through abstract unix sockets" % (abi, MIN_LANDLOCK_ABI))
    return Isolation(root, abi), missing
