"""The command line: options and their environment variables, the token, and main(): listen, announce,
wait for a shutdown request, stop everything within a bound."""

import json
import os
import sys
import threading
import time

try:
    # signal's C module (as digest.py uses _sha256 rather than hashlib): signal.py adds to it only enums
    # of the signals, handlers and masks, a few percent of the start; main needs three numbers, two calls.
    import _signal as signal
except ImportError:
    import signal

from .common import (
    DEFAULT_MAX_EXITED,
    DEFAULT_MAX_PROCESSES,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PORT,
    EXEC_REATTACH_DEFAULT,
    EXEC_RETAIN_DEFAULT,
    PROCESS_LIMITS,
    PROTOCOL,
    STATE,
    VERSION,
    _exit_status,
    _fail,
    _flag,
    _number,
    _shutdown_reason,
    _wake_r,
    _wake_w,
    log,
    request_shutdown,
)
from .connections import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    LIMITS,
    Server,
    Server6,
)
from .digest import sha256
from .handler import Handler
from .options import parse as parse_options
from . import exposed


def parse_args(argv):
    args = parse_options(argv)

    env = os.environ
    args.host = args.host if args.host is not None else (env.get("SBX_HOST") or "127.0.0.1")
    if args.port is not None:
        args.port = _number(args.port, "--port", int, 0, 65535)
    elif env.get("SBX_PORT"):
        args.port = _number(env["SBX_PORT"], "SBX_PORT", int, 0, 65535)
    else:
        args.port = DEFAULT_PORT
    # Seconds from the option, else its environment variable, else 0 (off).
    for name, var in (("idle_timeout", "SBX_IDLE_TIMEOUT"), ("lifetime", "SBX_LIFETIME")):
        given = getattr(args, name)
        if given is not None:
            value = _number(given, "--" + name.replace("_", "-"), float, 0)
        elif env.get(var):
            value = _number(env[var], var, float, 0)
        else:
            value = 0.0
        setattr(args, name, value)
    args.start_grace = _number(args.start_grace, "--start-grace", float, 0) if args.start_grace is not None else 0.0
    args.ping_interval = DEFAULT_PING_INTERVAL
    if env.get("SBX_PING_INTERVAL"):
        args.ping_interval = _number(env["SBX_PING_INTERVAL"], "SBX_PING_INTERVAL", float, 0.01)
    args.exec_reattach, args.exec_retain = EXEC_REATTACH_DEFAULT, EXEC_RETAIN_DEFAULT
    if env.get("SBX_EXEC_REATTACH"):
        args.exec_reattach = _number(env["SBX_EXEC_REATTACH"], "SBX_EXEC_REATTACH", float, 0)
    if env.get("SBX_EXEC_RETAIN"):
        args.exec_retain = _number(env["SBX_EXEC_RETAIN"], "SBX_EXEC_RETAIN", float, 0)
    bounds = (
        ("max_connections", "SBX_MAX_CONNECTIONS", int, 1, DEFAULT_MAX_CONNECTIONS),
        ("header_timeout", "SBX_HEADER_TIMEOUT", float, 0.01, DEFAULT_HEADER_TIMEOUT),
        ("body_timeout", "SBX_BODY_TIMEOUT", float, 0.01, DEFAULT_BODY_TIMEOUT),
        ("max_processes", "SBX_MAX_PROCESSES", int, 1, DEFAULT_MAX_PROCESSES),
        ("max_exited", "SBX_MAX_EXITED", int, 1, DEFAULT_MAX_EXITED),
    )
    for name, var, kind, lo, default in bounds:
        given = getattr(args, name)
        if given is not None:
            value = _number(given, "--" + name.replace("_", "-"), kind, lo)
        elif env.get(var):
            value = _number(env[var], var, kind, lo)
        else:
            value = default
        setattr(args, name, value)
    host_mode_args(args, env)
    args.tunnel = args.tunnel or _flag(env.get("SBX_TUNNEL"), "SBX_TUNNEL")
    args.tunnel_config = None
    if args.tunnel:
        from .tunnel_config import tunnel_config  # only with --tunnel, as the tunnel's other modules

        args.tunnel_config = tunnel_config(env)
    return args


def host_mode_args(args, env):
    """Host mode's options (host.py), read whether or not it is on, so that a mistake is reported."""
    args.host_mode = args.host_mode or _flag(env.get("SBX_HOST_MODE"), "SBX_HOST_MODE")
    args.weak_isolation = args.weak_isolation or _flag(env.get("SBX_HOST_WEAK_ISOLATION"), "SBX_HOST_WEAK_ISOLATION")
    args.host_token_acts = _flag(env.get("SBX_HOST_TOKEN_ACTS"), "SBX_HOST_TOKEN_ACTS")
    if args.capacity is not None:
        args.capacity = _number(args.capacity, "--capacity", int, 1)
    elif env.get("SBX_CAPACITY"):
        args.capacity = _number(env["SBX_CAPACITY"], "SBX_CAPACITY", int, 1)
    else:
        args.capacity = 50  # host.DEFAULT_CAPACITY, without importing host.py in dedicated mode
    args.homes_dir = args.homes_dir or env.get("SBX_HOMES_DIR") or "/sbx/homes"
    if not os.path.isabs(args.homes_dir):
        _fail("--homes-dir / SBX_HOMES_DIR needs an absolute path, got %r" % args.homes_dir)
    warm = env.get("SBX_HOST_WARM_WRAPPERS", "").strip()
    # warm.DEFAULT_STOCK when unset, without importing warm.py in dedicated mode
    args.warm_wrappers = _number(warm, "SBX_HOST_WARM_WRAPPERS", int, 0, 64) if warm else 8


def host_mode(args, token):
    """Host mode's registry (host.py, imported only then), or None; exits 2 when it cannot start."""
    if not args.host_mode:
        return None
    if token is None:
        _fail("host mode needs SBX_TOKEN: every sandbox's token derives from it")
    from .host import setup

    return setup(args, token)


def raise_open_files_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: every connection and command costs descriptors, and a
    soft limit of 1024 (a common default) would run out long before --max-connections. Commands
    inherit the raised limit (restoring it per spawn would cost the fast spawn path)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ImportError, ValueError, OSError):
        pass  # not Unix, or not allowed: the accept loop still copes with running out


# 128 bits as the shortest encoding people use for random tokens gives them: 16 bytes in hex. The
# providers send 64 hex characters (256 bits). A shorter token could be guessed by whoever reaches
# the port (any local user; anyone on the internet with the tunnel's URL), so it is refused.
TOKEN_MIN_CHARS = 32


def take_token():
    """(token, the variable it came from), removed from our environment so no child can see it."""
    token = os.environ.pop("SBX_TOKEN", None)
    legacy = os.environ.pop("HF_SANDBOX_TOKEN", None)
    if token:
        return token, "SBX_TOKEN"
    return (legacy, "HF_SANDBOX_TOKEN") if legacy else (None, None)


def lifetime_loop(limit):
    # The backstop that the Hub's job timeout is for a job: it holds even while commands run.
    time.sleep(limit)
    request_shutdown("lifetime of %gs reached (--lifetime)" % limit)


def idle_loop(timeout, grace):
    interval = min(1.0, timeout / 4.0)
    declared = exposed.declared_ports()
    while True:
        time.sleep(interval)
        # A server in use through the Jobs proxy or its quick tunnel never sends us a request.
        # Asked only once the server has been idle a while: requests already keep it active.
        if STATE.contacted and STATE.idle_for() >= interval and exposed.in_use(declared | tunnelled_ports()):
            STATE.touch()
        # Before any client has reached us, the sandbox is still being started
        # (a quick tunnel, the client finding its URL): not idle, unless that
        # takes longer than the client itself waits (--start-grace).
        if not STATE.contacted and grace > timeout:
            if STATE.idle_for() >= grace:
                request_shutdown("no client reached the server within %gs (--start-grace)" % grace)
                return
        elif STATE.idle_for() >= timeout:
            request_shutdown("idle for %gs with no request in flight (--idle-timeout)" % timeout)
            return


def port_tunnels():
    """ports.PORT_TUNNELS, imported at its first use, not at the start (the port routes use it)."""
    from .ports import PORT_TUNNELS

    return PORT_TUNNELS


def loaded_ports():
    """ports.py if something loaded it, else None: then no port tunnel can run (not imported to learn that)."""
    return sys.modules.get(__package__ + ".ports")


def tunnelled_ports():
    """The ports whose tunnel runs."""
    ports = loaded_ports()
    return set() if ports is None else ports.PORT_TUNNELS.ports()


def stopped_port_tunnels():
    """At shutdown: the ports' tunnels told to stop (ports.PORT_TUNNELS.stop_all()).
    A failure here is logged: it must not keep kill_everything() from running."""
    ports = loaded_ports()
    if ports is None:
        return []
    try:
        return ports.PORT_TUNNELS.stop_all()
    except Exception as e:
        log("could not stop the ports' tunnels (%s)" % e)
        return []


def stdin_loop():
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
    request_shutdown("stdin closed (parent exited; --exit-on-stdin-eof)")


def apply_limits(args):
    """The limits of connections and of commands (LIMITS, PROCESS_LIMITS: read where they apply)."""
    LIMITS.max_connections, LIMITS.header_timeout, LIMITS.body_timeout = (
        args.max_connections, args.header_timeout, args.body_timeout,
    )
    PROCESS_LIMITS.max_running, PROCESS_LIMITS.max_exited = args.max_processes, args.max_exited
    PROCESS_LIMITS.exec_reattach, PROCESS_LIMITS.exec_retain = args.exec_reattach, args.exec_retain


def main(argv=None):
    args = parse_args(argv)
    apply_limits(args)
    token, token_source = take_token()
    if token is not None and len(token) < TOKEN_MIN_CHARS:
        sys.stderr.write(
            "server.py: error: refusing to start: %s is %d characters, shorter than a 128-bit token; "
            "use at least %d random characters (e.g. `openssl rand -hex 16`; hf-sandbox's providers use 64)\n"
            % (token_source, len(token), TOKEN_MIN_CHARS)
        )
        sys.stderr.flush()
        return 2
    if token is None and not args.allow_no_auth:
        sys.stderr.write(
            "server.py: error: refusing to start without a token: set SBX_TOKEN "
            "(or pass --allow-no-auth, for local development only)\n"
        )
        sys.stderr.flush()
        return 2
    STATE.host = host_mode(args, token)
    if token is None and args.tunnel:
        sys.stderr.write(
            "server.py: error: refusing --tunnel without a token: the tunnel makes the server public; set SBX_TOKEN\n"
        )
        sys.stderr.flush()
        return 2
    dir_ = args.remove_on_exit
    if dir_ is not None and (not args.supervise or not os.path.isabs(dir_) or os.path.dirname(dir_) == dir_):
        _fail("--remove-on-exit needs --supervise and an absolute path other than /")
    if args.journal is not None and not os.path.isabs(args.journal):
        _fail("--journal needs an absolute path")
    if args.supervise:
        from .supervisor import supervise  # only now: a server without --supervise never loads it

        supervise(args.remove_on_exit, args.journal)  # returns in the server process
    if args.journal is not None:
        from .transfers import JOURNAL  # only with --journal (the write routes import it anyway)

        try:
            JOURNAL.open(args.journal)
        except FileExistsError:
            _fail("--journal %s: it exists and is not a journal (give a path that does not exist)" % args.journal)
        except OSError as e:
            _fail("cannot create the journal %s: %s" % (args.journal, e.strerror or e))
    STATE.token_digest = sha256(token.encode("utf-8")).digest() if token is not None else None
    STATE.ping_interval = args.ping_interval
    raise_open_files_limit()

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda signum, _frame: request_shutdown("received signal %d" % signum))
    # The kernel may deliver a signal to any thread, and the Python-level
    # handler runs only when the main thread next executes bytecode, which
    # it does not while blocked in os.read. The wakeup fd is written by the
    # C-level handler in whichever thread caught the signal.
    try:
        signal.set_wakeup_fd(_wake_w, warn_on_full_buffer=False)
    except (ValueError, OSError, TypeError):
        pass

    cls = Server6 if ":" in args.host else Server
    try:
        server = cls((args.host, args.port), Handler)
    except OSError as e:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e))
        return 1
    host, port = server.server_address[:2]

    if os.getpid() == 1:
        from .proctree import reap_children

        reap_children()  # else at the first command (see reap_children)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    if STATE.host is not None:
        STATE.host.start_idle(args.idle_timeout)
        STATE.host.wrappers.start()
    elif args.idle_timeout > 0:
        threading.Thread(target=idle_loop, args=(args.idle_timeout, args.start_grace), name="idle", daemon=True).start()
    if args.lifetime > 0:
        threading.Thread(target=lifetime_loop, args=(args.lifetime,), name="lifetime", daemon=True).start()
    if args.exit_on_stdin_eof:
        threading.Thread(target=stdin_loop, name="stdin", daemon=True).start()

    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        log("WARNING: no token and listening on %s: anyone who can reach this port can run commands" % host)
    log(
        "started: version %s (protocol %d), Python %s, pid %d, working directory %s, listening on %s:%d"
        % (VERSION, PROTOCOL, sys.version.split()[0], os.getpid(), os.getcwd(), host, port)
    )
    sys.stdout.write(
        json.dumps(
            {
                "event": "listening",
                "host": host,
                "port": port,
                "pid": os.getpid(),
                "version": VERSION,
                "protocol": PROTOCOL,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    sys.stdout.flush()
    tunnel = None
    if args.tunnel:  # after the listening line: the marker lines follow it on stdout
        from .tunnel import Tunnel  # only now: a server without --tunnel never loads its modules
        from .tunnel_config import tunnel_origin

        tunnel = Tunnel(args.tunnel_config, tunnel_origin(host, port))
        tunnel.start()
        port_tunnels().config = args.tunnel_config  # the ports' tunnels run with the same settings
    # The routes a first command needs, loaded while the client reads the listening line and asks /health
    # (the main thread has nothing else to do): the start does without them, the first command need not wait.
    from . import routes  # noqa: F401

    if STATE.host is not None:
        STATE.host.prepare_spare()  # the first create's uid, claimed and checked ahead (host.py)

    while True:  # the main thread only waits; request_shutdown() and signals wake it
        try:
            woke = os.read(_wake_r, 1)
        except InterruptedError:
            continue
        if woke:
            break
    if woke != b"x" and not _shutdown_reason:  # a byte from the wakeup fd is the signal number
        _shutdown_reason.append("received signal %d" % woke[0])
    log("shutting down: %s" % (_shutdown_reason[0] if _shutdown_reason else "requested"))
    try:
        from .proctree import kill_everything

        if tunnel is not None:
            tunnel.stop.set()  # before the kill: the supervisor must not restart cloudflared
        stopped = stopped_port_tunnels()  # the same for the ports' tunnels
        kill_everything()
        if STATE.host is not None:
            STATE.host.delete_all()  # their homes (their processes are gone with everything else)
        if tunnel is not None:
            tunnel.cleanup()
        for port_tunnel in stopped:
            port_tunnel.cleanup()
        if args.journal is not None:
            from .transfers import replay_journal

            replay_journal(args.journal)  # the transfers cut short by the shutdown
    finally:
        log("stopped: exit status %d" % _exit_status[0])
        try:
            sys.stderr.flush()
        except Exception:
            pass
        # Daemon threads may be blocked in socket or process calls; a normal
        # interpreter shutdown could wait on them. Nothing is left to flush.
        os._exit(_exit_status[0])
