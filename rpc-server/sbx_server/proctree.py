"""Process families: the table of process groups the server started, marking a command's
descendants so that they can be found and killed even after they leave its group, the subreaper,
the reaper thread and the bounded kill of everything at shutdown."""

import os
import signal
import threading
import time

from .common import HttpError, IS_LINUX, KILL_GRACE


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
        self.reaping = False  # see reap_children

    def spawn(self, argv, popen=None, **kwargs):
        """A started process (subprocess.Popen, or what `popen(argv, **kwargs)` makes), tracked until reaped."""
        if not self.reaping:
            reap_children()
        with self.lock:
            if self.closed:
                raise HttpError(503, "server is shutting down; cannot start %s" % argv[0], "shutting_down")
            self.spawning += 1
        proc = None
        try:
            import subprocess  # at the first command: the server's start does without it

            proc = (popen or subprocess.Popen)(argv, **kwargs)
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


def spawn_scrubbed(argv, fd, popen=None, **kwargs):
    """A helper process of the server's own (the warm wrappers' zygote, a warm wrapper), as a PROCS process:
    an empty environment (the host's holds the job's secrets), no fd of the server's but `fd` and its
    standard streams, a session of its own, in /."""
    return PROCS.spawn(
        argv, popen=popen, cwd="/", env={}, close_fds=True, pass_fds=(fd,), start_new_session=True, **kwargs
    )


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


def proc_file(pid, name, size):
    """The first `size` bytes of /proc/<pid>/<name> (one open and one read); OSError when it has none."""
    fd = os.open("/proc/%s/%s" % (pid, name), os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def proc_files(name, size):
    """(pid, the first `size` bytes of /proc/<pid>/<name>) for every process that has one now; nothing
    elsewhere."""
    try:
        pids = os.listdir("/proc")
    except OSError:
        return
    for pid in pids:
        if not pid.isdigit():
            continue
        try:
            data = proc_file(pid, name, size)
        except OSError:
            continue
        yield int(pid), data


STAT_SIZE = 1024


def parse_stat(data):
    """(ppid, pgrp, state) of a /proc/<pid>/stat; ValueError or IndexError when it is not one."""
    # "pid (comm) S ppid pgrp ..." -- comm may hold spaces and parens.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[2]), fields[0][:1]


def stat_of(pid):
    """(ppid, pgrp, state) of process `pid`, or None when it has none (gone; not Linux)."""
    try:
        return parse_stat(proc_file(pid, "stat", STAT_SIZE))
    except (OSError, ValueError, IndexError):
        return None


def scan_proc():
    """pid -> (ppid, pgrp, state) for every process in /proc; {} elsewhere."""
    table = {}
    for pid, data in proc_files("stat", STAT_SIZE):
        try:
            table[pid] = parse_stat(data)
        except (ValueError, IndexError):
            continue
    return table


def scan_uids(low, high):
    """uid -> pids of its live processes, for every real uid in [low, high) that some process has now (a
    uid whose processes are all zombies maps to []). One read per process: its status holds both the
    State and the Uid line (the 3rd and the 9th, a few hundred bytes in)."""
    table = {}
    for pid, data in proc_files("status", 4096):
        try:
            at = data.index(b"\nUid:")
            uid = int(data[at + 5 :].split(None, 1)[0])
            if low <= uid < high:
                pids = table.setdefault(uid, [])
                if data[data.index(b"\nState:") + 7 :].lstrip()[:1] != b"Z":
                    pids.append(pid)
        except (ValueError, IndexError):
            continue
    return table


class FreshScan(object):
    """A /proc scan shared by the threads that want one at once. Each caller gets the result of a scan
    that began after its call (a process killed before the call is not found alive by an older scan), and
    one scan serves every caller that was waiting when it began: deletes at once cost about two scans, not
    one each (a scan reads every process of the machine, the other hosts' too)."""

    def __init__(self, scan):
        self.scan = scan
        self.cond = threading.Condition()
        self.started = 0
        self.done = 0
        self.result = None

    def __call__(self):
        with self.cond:
            want = self.started + 1  # the next scan to begin is the first that begins after this call
            while self.done < want:
                if self.started > self.done:  # one is running, begun before this call or by another waiter
                    self.cond.wait()
                    continue
                self.started += 1
                self.cond.release()
                try:
                    result = self.scan()
                except BaseException:
                    self.cond.acquire()
                    self.started -= 1  # not done: the next waiter begins its own
                    self.cond.notify_all()
                    raise
                self.cond.acquire()
                self.done += 1
                self.result = result
                self.cond.notify_all()
            return self.result


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
    signalled, _left = kill_found(lambda: family(leader, marker), sig, FAMILY_KILL_BOUND)
    return signalled


def kill_found(find, sig, bound):
    """Signal every pid `find()` returns; with SIGKILL, find and kill again until none is left (a dying
    shell may have just forked), within `bound` seconds. (whether anything was signalled, the pids still
    found when the bound ran out)."""
    signalled = False
    deadline = time.monotonic() + bound
    while True:
        members = find()
        for pid in members:
            signalled = True
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if members:
            PROCS.reap_kick.set()  # adopted orphans die as zombies of ours: reaped now, not at the next poll
        if sig != signal.SIGKILL or not members:
            return signalled, []
        if time.monotonic() > deadline:
            return signalled, members
        time.sleep(0.01)


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


_reaping_lock = threading.Lock()


def reap_children():
    """From now on, adopt and reap the orphans of what we start (the reaper thread). Done at the first
    spawn, not at start: prctl needs ctypes, some milliseconds of the start, and before a first command
    there is nothing to adopt. PID 1 (a container's init) is given every orphan anyway, its commands' or
    not, so it needs no prctl and reaps from the start (main)."""
    with _reaping_lock:
        if not PROCS.reaping:
            if os.getpid() == 1 or become_subreaper():
                threading.Thread(target=reaper_loop, name="reaper", daemon=True).start()
            PROCS.reaping = True


def reaper_loop():
    """Reap adopted orphans. Never waitpid(-1): that would steal exit codes
    from the Popen objects the exec handlers are waiting on."""
    me = os.getpid()
    listed = children_listed()
    while True:
        PROCS.reap_kick.wait(1.0)
        PROCS.reap_kick.clear()
        with PROCS.lock:
            if PROCS.spawning:
                continue
            if listed:
                reap_listed()
            else:
                reap_scanned(me)


def reap_scanned(me):
    """One round of the reaper from a scan of every process: a zombie child of ours not a Popen's is
    reaped, and the groups with no live member are forgotten (so that a recycled pgid can never make
    shutdown signal a stranger)."""
    table = scan_proc()
    for pid, (ppid, _pgrp, state) in table.items():
        if ppid == me and state == b"Z" and pid not in PROCS.active:
            reap(pid)
    live = set(pg for (_pp, pg, st) in table.values() if st != b"Z")
    PROCS.groups &= live | set(PROCS.active)


def reap_listed():
    """One round of the reaper from our own children's list (the kernel's), not a scan of every process:
    each second, reading every process's stat cost a sandbox's server some milliseconds of CPU on a
    machine with a few hundred processes (the local provider sees all of the machine's). A group is
    forgotten once no process is in it (kill(-pgid, 0)); a zombie still holds its pgid, which cannot be
    recycled before it is reaped."""
    for pid in our_children():
        if pid not in PROCS.active:
            stat = stat_of(pid)
            if stat is not None and stat[2] == b"Z":
                reap(pid)
    PROCS.groups -= set(pg for pg in PROCS.groups if pg not in PROCS.active and not group_exists(pg))


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except OSError:
        pass


def children_listed():
    """Whether the kernel lists each thread's children (/proc/<pid>/task/<tid>/children, Linux with
    CONFIG_PROC_CHILDREN), where it also puts the orphans it hands a subreaper."""
    return os.path.exists("/proc/self/task/%d/children" % os.getpid())


def our_children():
    """The pids of the server's children, each of its threads' (a child is listed under the thread that
    forked it, or the one the kernel handed it to); a thread that ended meanwhile has none."""
    pids = set()
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tids:
        try:
            with open("/proc/self/task/%s/children" % tid, "rb") as f:
                pids.update(int(pid) for pid in f.read().split())
        except (OSError, ValueError):
            continue
    return pids


def group_exists(pgid):
    """Whether any process, a zombie included, is in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's
        pass
    return True


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
