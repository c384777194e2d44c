"""--supervise (Linux): the process above the server that cleans up however the server ends."""

import json
import os
import shutil
import signal
import sys

from .common import IS_LINUX, log
from .proctree import become_subreaper, die_with_parent, kill_descendants
from .transfers import replay_journal


def supervise(remove_dir, journal=None):
    """--supervise (Linux): fork. The child returns and becomes the server; this
    process stays as its supervisor, a subreaper above it. However the server
    ends -- shutdown, a crash, SIGKILL, the OOM killer -- every process it
    started is re-parented here (the server itself is a subreaper, and
    orphans climb to the nearest one), so the supervisor kills them all,
    removes the temporary files its `journal` lists and `remove_dir`, and
    exits the way the server did (re-raising its signal), so that whoever
    started us sees the real cause. Signals that ask for a shutdown are
    passed on to the server."""
    if not IS_LINUX or not become_subreaper():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = os.getpid()
    server = os.fork()
    if server == 0:
        # A supervisor killed outright must not leave a server nobody watches: the
        # server then shuts down as on SIGTERM and kills what it started.
        die_with_parent(signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def forward(signum, _frame):
        try:
            os.kill(server, signum)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, forward)
    status = 0
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == server:
            break
    # Said at once, before the cleanup: the client reports the cause to calls failing meanwhile.
    signaled = os.WIFSIGNALED(status)
    exited = {"event": "exited", "exit_code": None if signaled else os.WEXITSTATUS(status)}
    exited["signal"] = os.WTERMSIG(status) if signaled else None
    try:
        sys.stdout.write(json.dumps(exited, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # nobody reads our stdout any more (a detached sandbox)
    how = (
        "was killed by signal %d" % exited["signal"]
        if signaled
        else "exited with status %d" % exited["exit_code"]
    )
    # At once too: the clients of a detached sandbox (no one reads our stdout) find the cause in its log.
    log("supervisor: the server %s" % how)
    left = kill_descendants(5.0)
    if left:
        log("supervisor: killed %d process(es) the server left" % left)
    if journal:
        parts = replay_journal(journal)
        if parts:
            log("supervisor: removed %d temporary file(s) of writes the server left unfinished" % parts)
    if remove_dir:
        shutil.rmtree(remove_dir, ignore_errors=True)
        # The local provider's owner marker beside it (DIR.owner) means nothing once DIR is gone.
        try:
            os.unlink(remove_dir.rstrip("/") + ".owner")
        except OSError:
            pass
    sys.stderr.flush()
    if signaled:
        sig = exited["signal"]
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset (and setting one fails)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
