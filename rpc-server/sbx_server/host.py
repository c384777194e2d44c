"""Host mode: many sandboxes in one server (HF's sandbox-server `SBX_HOST_MODE=1`, src/sandboxes.rs).

A sandbox here is a record: an id, a uid (with isolation), a home directory, its own token and the
environment its commands start from. Creating one costs a few directories, not a process: an idle
sandbox is a few hundred bytes of this server's memory. What confines its commands (the uid,
Landlock, rlimits) is isolation.py's; the routes are routes_host.py's. Imported only in host mode."""

import os
import threading
import time

from .common import IS_LINUX, HttpError, _fail, _refuse, log, request_shutdown
from .digest import compare_digest, hmac_sha256, sha256
from .proctree import FreshScan, has_marker, kill_family, kill_found, scan_proc, scan_uids

# HF's numbers (src/sandboxes.rs): HF Jobs run containers in a user namespace that maps uids 0..65535
# only (setuid above fails with EINVAL), and images' own service accounts sit in the low thousands
# (nobody is 65534): sandboxes take 20000 up to, not including, 65000.
UID_BASE = 20000
UID_MAX = 65000
DEFAULT_CAPACITY = 50  # HF's DEFAULT_SANDBOXES_PER_HOST (huggingface_hub _sandbox.py)
DEFAULT_HOMES_DIR = "/sbx/homes"
DEFAULT_MAX_PROCS = 256  # RLIMIT_NPROC: per uid, so per sandbox
DEFAULT_MAX_MEM_MB = 2048  # RLIMIT_AS: per process
MAX_COUNT = 4096  # sandboxes one POST may ask for (HF clamps there too)
PROXY_SUBDIR = ".sbx/proxy"  # HF's proxy.rs PROXY_SUBDIR: $SBX_PROXY_DIR/<port>.sock
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILL_BOUND = 3.0  # delete: SIGKILL by uid until none is left, for at most this long


def random_id():
    return os.urandom(8).hex()  # HF's random_id: 16 lowercase hex characters


def sandbox_token(host_token, sandbox_id):
    """A sandbox's own token: hex HMAC-SHA256(host token, id). A client that knows the host token derives
    it from the id alone, so connecting to `<host>.<id>` needs no stored state."""
    return hmac_sha256(host_token, sandbox_id.encode("ascii")).hexdigest()


def token_digest(token_text):
    return sha256(token_text.encode("latin-1", "replace")).digest()


class Sandbox(object):
    __slots__ = (
        "id", "uid", "home", "created_at_ms", "env", "max_procs", "max_mem_mb", "idle_timeout",
        "token_digest", "last_activity", "inflight", "ruleset", "deleted", "uid_lock",
    )

    def info(self):
        return {"id": self.id, "uid": self.uid, "home": self.home, "created_at_ms": self.created_at_ms}

    def accepts(self, token_text):
        return compare_digest(token_digest(token_text), self.token_digest)

    def environment(self):
        """What every command starts from: never the host's environment (it holds the job's secrets)."""
        home = self.home
        env = {
            "PATH": home + "/.local/bin:" + SYSTEM_PATH,  # HF's: `pip install --user` scripts first
            "HOME": home,
            "TMPDIR": home + "/.tmp",
            "USER": "sbx-" + self.id,
            "LOGNAME": "sbx-" + self.id,
            "SBX_PROXY_DIR": home + "/" + PROXY_SUBDIR,
        }
        for name in ("LANG", "LC_ALL"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        env.update(self.env)
        env["SBX_SANDBOX_ID"] = self.id  # after the create request's env: weak-mode scans find its processes by it
        return env

    def resolve(self, path):
        """HF's resolve_in_home: `path` taken relative to the home (a leading / too), `..` never above it.
        What it names must also stay inside once symlinks are followed: the server, which may run as
        root, never reaches through a sandbox's link to a file the sandbox could not open itself."""
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        resolved = os.path.join(self.home, *parts) if parts else self.home
        real = os.path.realpath(resolved)
        if real != self.home and not real.startswith(self.home + "/"):
            message = "path %s leads out of the sandbox's home through a symbolic link" % ("/" + "/".join(parts))
            raise HttpError(403, message, "outside_home")
        return resolved

    def touch(self):
        self.last_activity = time.monotonic()


class Host(object):
    """The registry of live sandboxes, their capacity and the host's own idle clock."""

    def __init__(self, token, capacity, homes, isolation, token_acts):
        self.lock = threading.Lock()
        self.token = token.encode("latin-1", "replace")
        self.capacity = capacity
        self.homes = homes
        self.isolation = isolation  # isolation.Isolation
        self.token_acts = token_acts  # SBX_HOST_TOKEN_ACTS: the host token also acts in sandboxes
        self.sandboxes = {}
        self.reserved = 0  # slots taken, including creations under way
        self.next_uid = UID_BASE
        self.taken = set()  # uids of this host's sandboxes
        self.empty_since = time.monotonic()
        self.wrappers = None  # warm.Stock: the confining wrappers started ahead of commands
        self.spare = None  # (uid, lock fd): claimed and found running nothing, for the next create (take_spare)
        self.preparing = False  # a thread is preparing the spare
        # The sandboxes' processes by uid, one scan shared by the requests that want one at once.
        self.by_uid = FreshScan(lambda: scan_uids(UID_BASE, UID_MAX))

    # ---- create ----

    def create(self, count, env, idle_timeout, max_procs, max_mem_mb):
        """Up to `count` new sandboxes: fewer when the host is full."""
        running = None  # uids with processes, zombies too: scanned when the spare does not do
        made = []
        for _ in range(count):
            with self.lock:
                if self.reserved >= self.capacity:
                    break
                self.reserved += 1
            uid, uid_lock = -1, -1
            try:
                # Claimed, then found running nothing by a scan begun after the claim (the spare, or one
                # checked now); the scan before the claim is left for when every uid tried runs something.
                spare = self.take_spare() or (self.clean_uid() if self.isolation.uids else None)
                if spare is not None:
                    uid, uid_lock = spare
                else:
                    if running is None:
                        running = set(self.scan()) if self.isolation.uids else set()
                    uid, uid_lock = self.take_uid(running)
                sandbox = self.make(uid, uid_lock, env, idle_timeout, max_procs, max_mem_mb)
            except BaseException:
                self.release(uid, uid_lock)
                for earlier in made:  # none of this batch is answered: none may stay
                    self.delete(earlier.id)
                raise
            with self.lock:
                self.sandboxes[sandbox.id] = sandbox
            made.append(sandbox)
        self.prepare_spare()
        return made

    # ---- the spare uid ----

    def take_spare(self):
        with self.lock:
            spare, self.spare = self.spare, None
        return spare

    def prepare_spare(self):
        """In the background, a uid for the next create: claimed (its lock held from then on, so no other
        server can start anything under it), then checked by a /proc scan begun after the claim to run
        nothing. A lease then makes its sandbox without a scan on its way (every process of the machine
        read: ~3.4 ms for 118 processes on the loaded 2-core bench machine, a quarter of a lease)."""
        if not self.isolation.uids:
            return  # no own uids: nothing to claim or scan
        with self.lock:
            if self.spare is not None or self.preparing:
                return
            self.preparing = True
        threading.Thread(target=self.spare_thread, name="spare-uid", daemon=True).start()

    def spare_thread(self):
        try:
            spare = self.clean_uid()
        except HttpError as e:  # the next create claims and scans itself
            if e.code != "uids_exhausted":  # every uid in use: that create says so, not the log after each
                log("host mode: cannot prepare a uid ahead (%s)" % e)
            spare = None
        except Exception as e:
            log("host mode: cannot prepare a uid ahead (%s)" % e)
            spare = None
        with self.lock:
            self.preparing = False
            if spare is not None:
                self.spare = spare

    def clean_uid(self):
        """(uid, lock fd) of a uid claimed by this host and found running nothing after the claim; None when
        every one tried runs something (the next create's own scan skips them)."""
        for _ in range(8):
            uid, fd = self.take_uid(())
            if uid not in self.scan():
                return uid, fd
            self.free_uid(uid, fd)
        return None

    def take_uid(self, running):
        """(uid, lock fd) of a uid no other sandbox has, on this host or any other host-mode server of the
        machine (isolation.claim_uid), and not in `running` (uids a scan found running something: a crashed
        server's leftovers; clean_uid checks after the claim instead). Without
        own uids: the server's, and no lock."""
        if not self.isolation.uids:
            return os.getuid(), -1
        span = UID_MAX - UID_BASE
        with self.lock:
            for _ in range(span):
                uid = self.next_uid
                self.next_uid = UID_BASE + (uid + 1 - UID_BASE) % span  # round robin: a freed uid rests
                if uid in self.taken or uid in running:
                    continue
                fd = self.isolation.claim_uid(uid)
                if fd >= 0:
                    self.taken.add(uid)
                    return uid, fd
        raise HttpError(503, "no sandbox uid left (%d to %d are all in use)" % (UID_BASE, UID_MAX - 1), "uids_exhausted")

    def release(self, uid, uid_lock):
        """A slot, and a uid with its lock, given back."""
        with self.lock:
            self.reserved -= 1
            if not self.sandboxes and not self.reserved:
                self.empty_since = time.monotonic()
        self.free_uid(uid, uid_lock)

    def free_uid(self, uid, uid_lock):
        """A uid and its lock given back (-1: none taken)."""
        with self.lock:
            self.taken.discard(uid)
        if uid_lock >= 0:
            os.close(uid_lock)

    def make(self, uid, uid_lock, env, idle_timeout, max_procs, max_mem_mb):
        sandbox = Sandbox()
        sandbox.id = random_id()
        while sandbox.id in self.sandboxes:
            sandbox.id = random_id()
        sandbox.uid, sandbox.uid_lock = uid, uid_lock
        sandbox.home = os.path.join(self.homes, sandbox.id)
        sandbox.created_at_ms = int(time.time() * 1000)
        sandbox.env, sandbox.idle_timeout = env, idle_timeout
        sandbox.max_procs, sandbox.max_mem_mb = max_procs, max_mem_mb
        sandbox.token_digest = token_digest(sandbox_token(self.token, sandbox.id))
        sandbox.last_activity, sandbox.inflight, sandbox.deleted = time.monotonic(), 0, False
        try:
            self.isolation.make_home(sandbox, PROXY_SUBDIR)
        except OSError as e:
            self.isolation.remove_home(sandbox.home)
            raise HttpError(500, "cannot create the sandbox's home %s: %s" % (sandbox.home, e.strerror or e), "io_error")
        return sandbox

    # ---- look-up ----

    def get(self, sandbox_id):
        with self.lock:
            return self.sandboxes.get(sandbox_id)

    def count(self):
        with self.lock:
            return len(self.sandboxes)

    def all(self):
        with self.lock:
            return sorted(self.sandboxes.values(), key=lambda s: (s.created_at_ms, s.id))

    # ---- delete ----

    def delete(self, sandbox_id):
        """Kill everything the sandbox runs, remove its home, free its slot. False: no such sandbox."""
        with self.lock:
            sandbox = self.sandboxes.pop(sandbox_id, None)
            if sandbox is None:
                return False
            sandbox.deleted = True
            # Its Landlock ruleset fd is closed once no request of its is in flight: now, or by the last
            # one's end (busy). A spawn under way may still pass it on, and a closed fd's number could be
            # reused by another sandbox's ruleset. Under the lock: closed once. A request that begins
            # after this finds it deleted (routes_host.run) and spawns nothing.
            if not sandbox.inflight:
                self.isolation.forget(sandbox)
        try:
            self.kill_all(sandbox)
            self.isolation.remove_home(sandbox.home)
        finally:
            self.release(sandbox.uid, sandbox.uid_lock)
        log("sandbox %s deleted" % sandbox.id)
        return True

    def kill_all(self, sandbox):
        """SIGKILL every process of the sandbox, until none is left, and forget its process records. With
        its own uid, by uid (nothing it runs can shed that); without, by the families of the commands it
        started and by what carries its id in the environment (a process that cleared its environment
        and left the tree escapes this)."""
        import signal

        from .background import BGPROCS

        records = [bg for bg in BGPROCS.all() if bg.spec.sandbox is sandbox]
        for bg in records:
            if not self.isolation.uids:
                with bg.cond:
                    running = bg.proc.returncode is None and bg.result is None
                kill_family(bg.pid if running else None, bg.spec.marker, signal.SIGKILL)
        if IS_LINUX:
            _signalled, left = kill_found(lambda: self.pids_of(sandbox), signal.SIGKILL, KILL_BOUND)
            if left:
                log("sandbox %s: %d processes still alive after %gs of SIGKILL" % (sandbox.id, len(left), KILL_BOUND))
        for bg in records:
            BGPROCS.remove(bg)

    def scan(self):
        """The processes now, for pids_of: by uid (a scan begun after this call, shared with the other
        requests that want one at once: FreshScan), or without own uids scan_proc's table."""
        return self.by_uid() if self.isolation.uids else scan_proc()

    def pids_of(self, sandbox, table=None):
        """The live pids of `sandbox`, from `table` (scan()) or a scan of now."""
        if table is None:
            table = self.scan()
        if self.isolation.uids:
            return table.get(sandbox.uid, [])
        entry = ("SBX_SANDBOX_ID=%s" % sandbox.id).encode()
        me = os.getpid()
        return [pid for pid, row in table.items() if pid != me and row[2] != b"Z" and has_marker(pid, entry)]

    def delete_all(self):
        return sum(1 for s in self.all() if self.delete(s.id))

    # ---- idle ----

    def sweep(self, now):
        """Delete the sandboxes idle past their own timeout: no request to them for that long and nothing
        running in them."""
        from .background import BGPROCS

        stale = [s for s in self.all() if s.idle_timeout > 0 and not s.inflight and now - s.last_activity >= s.idle_timeout]
        if not stale:
            return
        busy = set(id(bg.spec.sandbox) for bg in BGPROCS.all() if bg.result is None)
        table = self.scan() if IS_LINUX else None  # one scan for all of them
        for sandbox in stale:
            if id(sandbox) in busy or (IS_LINUX and self.pids_of(sandbox, table)):
                sandbox.touch()
            else:
                log("sandbox %s idle for %gs: deleting it" % (sandbox.id, sandbox.idle_timeout))
                self.delete(sandbox.id)

    def start_idle(self, timeout):
        """Started in the serving process (after --supervise forks): the idle loop. The first spare uid is
        prepared once the server is listening (cli.py): its /proc scan has no place in the start."""
        threading.Thread(target=host_idle_loop, args=(self, timeout), name="idle", daemon=True).start()

    def busy(self, sandbox, n):
        """A request to the sandbox begins (1) or ends (-1): activity, for its idle timeout. The last
        request of a deleted sandbox to end closes its ruleset (delete)."""
        with self.lock:
            sandbox.inflight += n
            sandbox.last_activity = time.monotonic()
            if sandbox.deleted and not sandbox.inflight:
                self.isolation.forget(sandbox)

    def empty_for(self, now):
        with self.lock:
            return 0.0 if self.sandboxes or self.reserved else now - self.empty_since


def connect_socket(sandbox, port):
    """A connection to the server a sandbox exposes on `port`: the unix socket $SBX_PROXY_DIR/<port>.sock
    (with Landlock its commands cannot bind TCP). Opened acting for the sandbox (routes_host.run), so a
    socket path that is a link to another sandbox's is refused like any of its files."""
    import socket

    from .common import SOCKET_TIMEOUT

    path = sandbox.resolve("%s/%d.sock" % (PROXY_SUBDIR, port))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        message = (
            "nothing is listening on port %d in sandbox %s: its server must listen on the unix socket "
            "$SBX_PROXY_DIR/%d.sock (%s)"
        )
        raise HttpError(502, message % (port, sandbox.id, port, path), "port_closed")
    except OSError as e:
        sock.close()
        raise HttpError(502, "cannot reach port %d in sandbox %s: %s" % (port, sandbox.id, e.strerror or e), "bad_gateway")
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def setup(args, token):
    """The Host of `args`; exits 2 when isolation is missing and --weak-isolation was not given."""
    from .isolation import probe

    isolation, missing = probe()
    if missing and not args.weak_isolation:
        _refuse(
            "host mode refused: %s. Run it as root on a kernel with Landlock (ABI >= 6), or accept weaker "
            "isolation with SBX_HOST_WEAK_ISOLATION=1 (--weak-isolation)" % "; ".join(missing),
            "isolation_missing",
            missing=missing,
        )
    isolation.warm()
    try:
        isolation.prepare(args.homes_dir)
    except OSError as e:
        _fail("cannot create the homes' directory %s: %s" % (args.homes_dir, e.strerror or e))
    homes = os.path.realpath(args.homes_dir)  # Sandbox.resolve compares real paths with the homes'

    for what in missing:
        log("WARNING: weak isolation: %s" % what)
    log("host mode: capacity %d, homes in %s, isolation %s" % (args.capacity, homes, isolation.name))
    host = Host(token, args.capacity, homes, isolation, args.host_token_acts)
    from .warm import Stock

    # Started by main() in the serving process: --supervise forks after this, and the stock's thread and
    # the wrappers it starts must belong to the process that hands them out (a wrapper is its child).
    host.wrappers = Stock(isolation, args.warm_wrappers)
    return host


def host_idle_loop(host, timeout):
    """Per-sandbox idle timeouts, and the host's own (HF's semantics): exit once it has had no sandbox
    for `timeout` seconds, the backstop that stops a forgotten pool from billing. 0: never."""
    while True:
        time.sleep(0.25 if timeout == 0 or timeout > 1 else timeout / 4.0)
        now = time.monotonic()
        host.sweep(now)
        if timeout > 0 and host.empty_for(now) >= timeout:
            request_shutdown("host mode: no sandbox for %gs (--idle-timeout)" % timeout)
            return

