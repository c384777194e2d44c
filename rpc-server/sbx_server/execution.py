"""Running one command: the exec request (`parse_exec`), the spawn, and the pump that multiplexes
its pipes, its exit and the client's socket; the drainer of pipes a command's descendants hold open."""

import math
import os
import selectors
import signal
import threading
import time

from .common import (
    SCOPE,
    STATE,
    AsServer,
    ClientGone,
    EXIT_DRAIN_MAX,
    EXIT_QUIET,
    FILE_CHUNK,
    LEGACY_TIMEOUT,
    MAX_SELECT_WAIT,
    OUTPUT_CHUNK,
    _MSG_PEEK_FLAGS,
    bad_request,
    log_command_end,
    log_command_start,
    new_selector,
)
from .proctree import PROCS, PROC_MARKER, kill_family, new_marker
from .stdin import StdinPipe


# --------------------------------------------------------------------------
# Output left behind by background processes
# --------------------------------------------------------------------------


class Drainer(object):
    """Reads and discards pipes that an exec left open.

    When a command exits but something it backgrounded still holds its
    stdout/stderr, the exec ends without that output. Closing our read end
    would make the background process die of SIGPIPE on its next write (a
    dev server logging a request, say), so one shared thread keeps draining
    those pipes until their writers go away.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = []
        self._wake_w = None

    def adopt(self, fileobj):
        with self._lock:
            if self._wake_w is None:
                r, w = os.pipe()
                os.set_blocking(r, False)
                os.set_blocking(w, False)
                self._wake_w = w
                threading.Thread(target=self._run, args=(r,), name="drain", daemon=True).start()
            self._queue.append(fileobj)
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # pipe full: a wake-up is already pending

    def _run(self, wake_r):
        sel = new_selector()
        sel.register(wake_r, selectors.EVENT_READ, None)
        while True:
            for key, _mask in sel.select():
                if key.data is None:
                    try:
                        os.read(wake_r, 4096)
                    except OSError:
                        pass
                    with self._lock:
                        queue, self._queue = self._queue, []
                    for f in queue:
                        sel.register(f.fileno(), selectors.EVENT_READ, f)
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    key.data.close()


DRAINER = Drainer()


# --------------------------------------------------------------------------
# Exec: request parsing, spawning, and the single-thread pump
# --------------------------------------------------------------------------


class ExecSpec(object):
    __slots__ = ("argv", "env", "cwd", "stdin", "timeout", "encoding", "marker", "stdin_pipe", "sandbox")


def parse_exec(req, legacy):
    spec = ExecSpec()
    cmd = req.get("cmd")
    shell = None if legacy else req.get("shell")
    if shell is not None and not isinstance(shell, bool):
        raise bad_request("`shell` must be true or false")
    if isinstance(cmd, str):
        if shell is False:
            raise bad_request("shell:false needs `cmd` as an array of strings (argv); got a string")
        if not cmd:
            raise bad_request("`cmd` is an empty string; pass a command line")
        spec.argv = ["/bin/sh", "-c", cmd]
    elif isinstance(cmd, list):
        if shell is True:
            raise bad_request("shell:true needs `cmd` as a string; got an array (send a string, or drop `shell`)")
        if not cmd:
            raise bad_request("`cmd` is an empty array; pass at least the program name")
        if not all(isinstance(a, str) for a in cmd):
            raise bad_request("every element of `cmd` must be a string")
        if not cmd[0]:
            raise bad_request("`cmd[0]` (the program) is an empty string")
        spec.argv = list(cmd)
    else:
        raise bad_request("`cmd` must be a string (run by /bin/sh -c) or an array of strings (argv)")
    for arg in spec.argv:
        if "\0" in arg:
            raise bad_request("`cmd` contains a NUL character")

    env = req.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise bad_request("`env` must be an object of string values")
    for k, v in env.items():
        if not isinstance(v, str):
            raise bad_request("`env` values must be strings: env.%s is %s" % (k, type(v).__name__))
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise bad_request("invalid environment variable name or value: %r" % k)
    spec.env = env

    cwd = req.get("workdir") if legacy else None
    if cwd is None:
        cwd = req.get("cwd")
    spec.sandbox = sandbox = SCOPE.sandbox  # host mode: the sandbox it runs in, rooted at its home
    if cwd is None and sandbox is not None:
        cwd = "/"  # its home
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd or "\0" in cwd:
            raise bad_request("`cwd` must be a non-empty path string")
        cwd = os.path.abspath(cwd) if sandbox is None else sandbox.resolve(cwd)
        if not os.path.exists(cwd):
            raise bad_request(
                "working directory not found: %s (create it first, or pass an existing cwd)" % cwd, "cwd_not_found"
            )
        if not os.path.isdir(cwd):
            raise bad_request("working directory is not a directory: %s" % cwd, "not_a_directory")
    spec.cwd = cwd

    timeout = req.get("timeout")
    if timeout is None and legacy:
        timeout = LEGACY_TIMEOUT
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise bad_request("`timeout` must be a number of seconds")
        try:  # an integer beyond a float's range (10**400) is no number of seconds
            timeout = float(timeout)
        except OverflowError:
            timeout = math.inf
        if not math.isfinite(timeout) or timeout <= 0:
            raise bad_request("`timeout` must be a positive, finite number of seconds (omit it for no timeout)")
    spec.timeout = timeout

    stdin, stdin_b64 = req.get("stdin"), None if legacy else req.get("stdin_b64")
    if stdin is not None and stdin_b64 is not None:
        raise bad_request("pass either `stdin` or `stdin_b64`, not both")
    if stdin is not None:
        if not isinstance(stdin, str):
            raise bad_request("`stdin` must be a string")
        spec.stdin = stdin.encode("utf-8", "surrogatepass")
    elif stdin_b64 is not None:
        if not isinstance(stdin_b64, str):
            raise bad_request("`stdin_b64` must be a base64 string")
        import base64  # at first use: a module the server's start does without

        try:
            spec.stdin = base64.b64decode(stdin_b64, validate=True)
        except (ValueError, TypeError):
            raise bad_request("`stdin_b64` is not valid base64")
    else:
        spec.stdin = None
    # True here; spawn() replaces it with the StdinPipe the stdin route writes to.
    stdin_pipe = None if legacy else req.get("stdin_pipe")
    if stdin_pipe is not None and not isinstance(stdin_pipe, bool):
        raise bad_request("`stdin_pipe` must be true or false")
    spec.stdin_pipe = True if stdin_pipe else None

    encoding = req.get("encoding", "utf-8") if not legacy else "utf-8"
    if encoding in ("utf-8", "utf8", None):
        spec.encoding = "utf-8"
    elif encoding == "base64":
        spec.encoding = "base64"
    else:
        raise bad_request("`encoding` must be \"utf-8\" or \"base64\"")
    return spec


def spawn(spec):
    """Start the command, or raise HttpError describing why it could not start.

    Spawn failures are answered before any streaming begins, so a client can
    tell "could not run" (4xx) from "ran and failed" (an exit code)."""
    import subprocess  # at the first command: the server's start does without it

    sandbox = spec.sandbox
    env = dict(os.environ) if sandbox is None else sandbox.environment()
    env.update(spec.env)
    # Every process the command starts inherits the marker, so it is still found after it left the
    # command's process group and tree (setsid, double fork): see kill_family.
    spec.marker = new_marker()
    env[PROC_MARKER] = spec.marker
    if sandbox is not None:
        env["SBX_SANDBOX_ID"] = sandbox.id  # after the command's env too, like the marker: see Host.pids_of
    name = spec.argv[0]
    program = confined(sandbox, spec, env) if sandbox is not None else None
    try:
        with AsServer():  # the wrapper starts as the server, then confines itself (isolation.py)
            # A warm wrapper (warm.py) when one is free; else a cold one, or the command itself.
            proc = STATE.host.wrappers.run(sandbox, program, spec, env) if program is not None else None
        if proc is None:
            argv, pass_fds = spec.argv, ()
            if program is not None:
                argv, pass_fds = STATE.host.isolation.command(sandbox, program, spec.argv)
            with AsServer():
                proc = PROCS.spawn(
                    argv,
                    stdin=subprocess.PIPE if spec.stdin or spec.stdin_pipe else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=spec.cwd,
                    env=env,
                    close_fds=True,
                    pass_fds=pass_fds,
                    start_new_session=True,
                    bufsize=0,
                )
        if spec.stdin_pipe:
            # The pipe is the stdin route's, not the pump's: pump() sees no stdin and ends it via the spec.
            spec.stdin_pipe = StdinPipe(proc.stdin, spec.stdin or b"")
            proc.stdin = None
    except FileNotFoundError as e:
        if spec.cwd is not None and e.filename == spec.cwd:
            raise bad_request("working directory not found: %s" % spec.cwd, "cwd_not_found")
        import shutil  # at first use: a module the server's start does without

        found = os.path.exists(name) if "/" in name else shutil.which(name, path=env.get("PATH", os.defpath))
        if found:
            # The file exists, so ENOENT came from its #! interpreter.
            raise bad_request("cannot run %s: its interpreter (the #! line) was not found" % name, "command_not_found")
        if "/" in name:
            raise bad_request("command not found: %s (no such file)" % name, "command_not_found")
        raise bad_request("command not found: %s (not on PATH)" % name, "command_not_found")
    except PermissionError:
        raise bad_request("permission denied: %s (is it executable? is it a directory?)" % name, "permission_denied")
    except NotADirectoryError as e:
        if spec.cwd is not None and e.filename == spec.cwd:
            raise bad_request("working directory is not a directory: %s" % spec.cwd, "not_a_directory")
        raise bad_request("cannot run %s: a component of the path is not a directory" % name, "command_not_found")
    except ValueError as e:
        raise bad_request("cannot run %s: %s" % (name, e))
    except OSError as e:
        raise bad_request("cannot run %s: %s" % (name, e.strerror or e), "spawn_failed")
    log_command_start(proc, spec)
    if sandbox is not None and sandbox.deleted:  # deleted while this was starting: it must not outlive it
        kill_family(proc.pid, spec.marker, signal.SIGKILL)
    return proc


def confined(sandbox, spec, env):
    """The program a confining wrapper (isolation.py, warm.py) execs for a command run in a host-mode
    sandbox; None where the host confines nothing (the command is started itself). The program is
    looked up here, in the sandbox's PATH, so that "not found" is the same 400 as in dedicated mode."""
    isolation = STATE.host.isolation
    if not isolation.confines:
        return None
    import shutil  # host mode only

    name = spec.argv[0]
    if "/" in name:
        program = name if os.path.isabs(name) else os.path.join(spec.cwd, name)
        if not os.path.exists(program):
            raise bad_request("command not found: %s (no such file)" % name, "command_not_found")
    else:
        program = shutil.which(name, path=env.get("PATH", os.defpath))
        if program is None:
            raise bad_request("command not found: %s (not on PATH)" % name, "command_not_found")
    return program


class ExecResult(object):
    __slots__ = ("returncode", "timed_out", "duration_ms")


def peer_closed(sock):
    """True when the client has closed (or reset) its side of the connection."""
    try:
        return sock.recv(1, _MSG_PEEK_FLAGS) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def pump_selector(handler, proc, spec, sink):
    """The selector of pump(): the child's stdout and stderr, its stdin (while there is some to
    write), its exit, the client socket and the sink's wake pipe. Returns (selector, readers,
    stdin_view, pidfd, sock); pidfd is None where pidfd_open is missing, sock is None for a
    background process."""
    sel = new_selector()
    readers = {}
    for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ, name)
        readers[name] = f
    stdin_view = None
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        stdin_view = memoryview(spec.stdin)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "stdin")
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        except OSError:
            pidfd = None
    sock = handler.connection if handler is not None else None  # None: a background process
    if sock is not None:
        sel.register(sock, selectors.EVENT_READ, "client")
    if getattr(sink, "blocked", None) is not None:
        sel.register(sink.wake_fd, selectors.EVENT_READ, "wake")
    return sel, readers, stdin_view, pidfd, sock


def pump(handler, proc, spec, sink, t0):
    """Drive one child to completion in the calling thread.

    Multiplexes stdin (non-blocking writes, so a child that never reads stdin
    cannot deadlock us), stdout/stderr, the child's exit (pidfd, or short
    polling where pidfd_open is missing) and the client socket (a hang-up kills
    the process group). Ends when the child has exited and its pipes reached
    EOF, or EXIT_QUIET after the exit if a background process still holds them.
    """
    sel, readers, stdin_view, pidfd, sock = pump_selector(handler, proc, spec, sink)
    # An exec's sink may hold a stream back (back-pressure, see ExecSink) and wake us when a
    # reader has made room; other sinks never block.
    blocked = getattr(sink, "blocked", None)
    held = set()

    result = ExecResult()
    result.timed_out = False
    deadline = t0 + spec.timeout if spec.timeout is not None else None
    exited_at = None
    last_output = 0.0
    poll_delay = 0.001
    finished = False
    try:
        sink.start(proc.pid)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.returncode is not None:
                exited_at = now
            if blocked is not None:
                # Once the command has exited nothing is held back: what is left in its pipes is
                # read now, or a slow reader would let EXIT_DRAIN_MAX cut it off.
                for name, f in readers.items():
                    hold = exited_at is None and blocked(name)
                    if hold and name not in held:
                        sel.unregister(f.fileno())
                        held.add(name)
                    elif not hold and name in held:
                        sel.register(f.fileno(), selectors.EVENT_READ, name)
                        held.discard(name)
            if exited_at is not None:
                quiet_until = max(exited_at, last_output) + EXIT_QUIET
                if not readers or now >= quiet_until or now - exited_at >= EXIT_DRAIN_MAX:
                    break
                wait = quiet_until - now
            else:
                wait = None
                if pidfd is None:
                    wait = poll_delay
                    poll_delay = min(poll_delay * 2, 0.05)
                if deadline is not None:
                    # Bounded: poll() takes at most ~24 days, and a timeout may be any finite number.
                    left = min(max(0.0, deadline - now), MAX_SELECT_WAIT)
                    wait = left if wait is None else min(wait, left)
            tick = sink.next_tick(now)
            if tick is not None:
                wait = tick if wait is None else min(wait, tick)

            events = sel.select(wait)
            now = time.monotonic()
            for key, _mask in events:
                tag = key.data
                if tag == "stdout" or tag == "stderr":
                    try:
                        data = os.read(key.fd, OUTPUT_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        last_output = now
                        sink.output(tag, data)
                    else:
                        sel.unregister(key.fd)
                        readers.pop(tag).close()
                        sink.eof(tag)
                        poll_delay = 0.001  # EOF usually means the exit is imminent
                elif tag == "wake":
                    try:
                        os.read(key.fd, 4096)
                    except OSError:
                        pass
                elif tag == "stdin":
                    try:
                        n = os.write(key.fd, stdin_view[:FILE_CHUNK])
                    except BlockingIOError:
                        n = 0
                    except OSError:  # EPIPE: the child closed stdin; drop the rest
                        n = len(stdin_view)
                    stdin_view = stdin_view[n:]
                    if not stdin_view:
                        sel.unregister(key.fd)
                        proc.stdin.close()
                elif tag == "exit":
                    sel.unregister(key.fd)
                    proc.poll()
                elif tag == "client":
                    if peer_closed(sock):
                        raise ClientGone()
                    # Pipelined bytes of the next request: nothing to watch any more.
                    sel.unregister(sock)
            if pidfd is None and proc.returncode is None:
                proc.poll()
            if deadline is not None and proc.returncode is None and now >= deadline:
                kill_family(proc.pid, spec.marker, signal.SIGKILL)
                result.timed_out = True
                deadline = None
            sink.flush(now)
        finished = True
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        if spec.stdin_pipe is not None:
            spec.stdin_pipe.close()  # the command ended: a writer waiting on its stdin stops
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if not finished:
            # Client gone or an internal error: nobody will see this output.
            kill_family(proc.pid if proc.returncode is None else None, spec.marker, signal.SIGKILL)
        if proc.returncode is None:
            proc.wait()
        PROCS.reaped(proc, killed=result.timed_out or not finished)
        for f in readers.values():
            DRAINER.adopt(f)
        result.duration_ms = int((time.monotonic() - t0) * 1000)
        log_command_end(proc, spec, result, finished)
    result.returncode = proc.returncode
    sink.remaining(list(readers))
    return result
