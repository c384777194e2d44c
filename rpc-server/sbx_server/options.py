"""The command line's options: one table, read by a scan of the words the providers and the job
pass (known options, each value its own word) and by argparse, whose parser is built only where the
scan cannot be sure to read the words as argparse would (--help, a mistake, an abbreviation,
`--option=value`, a value that starts with "-"): argparse then answers, prints and exits as always.
argparse, with gettext and locale, would otherwise cost every start some milliseconds."""

import os
import sys

from .common import DEFAULT_MAX_EXITED, DEFAULT_MAX_PROCESSES, DEFAULT_PORT, PROTOCOL, VERSION
from .connections import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS

FLAG = "flag"  # an option without a value (argparse's store_true)

# (option, its metavar: FLAG, or None for argparse's own, help), in the order --help lists them.
OPTIONS = (
    (
        "--host",
        None,
        "address to bind (default: $SBX_HOST or 127.0.0.1)",
    ),
    (
        "--port",
        None,
        "port to bind; 0 picks a free one (default: $SBX_PORT or %d)" % DEFAULT_PORT,
    ),
    (
        "--idle-timeout",
        "SECONDS",
        "exit after this long without requests; 0 = never (default: $SBX_IDLE_TIMEOUT or 0)",
    ),
    (
        "--start-grace",
        "SECONDS",
        "with --idle-timeout: until a client has made an authorized request, wait at least this long before "
        "stopping as idle (a client still starting the sandbox is not idle); default 0",
    ),
    (
        "--lifetime",
        "SECONDS",
        "exit after this long whatever is running; 0 = no limit (default: $SBX_LIFETIME or 0)",
    ),
    (
        "--allow-no-auth",
        FLAG,
        "start without SBX_TOKEN (local development only)",
    ),
    (
        "--exit-on-stdin-eof",
        FLAG,
        "shut down when stdin reaches EOF (the parent died)",
    ),
    (
        "--supervise",
        FLAG,
        "Linux: run the server under a supervisor process that kills everything left when the server "
        "ends, however it ends (even SIGKILL)",
    ),
    (
        "--remove-on-exit",
        "DIR",
        "with --supervise: the supervisor removes this directory (and its marker DIR.owner) after the server and "
        "all its processes are gone",
    ),
    (
        "--journal",
        "DIR",
        "record the temporary files of writes in progress in this directory (created; it must not be inside "
        "a directory the sandbox's commands can remove), so that what a killed server leaves is removed: by its "
        "supervisor, or by the next server started with the same journal",
    ),
    (
        "--max-connections",
        "N",
        "connections served at once; more are answered 503 too_many_connections "
        "(default: $SBX_MAX_CONNECTIONS or %d)" % DEFAULT_MAX_CONNECTIONS,
    ),
    (
        "--header-timeout",
        "SECONDS",
        "a request's line and headers must arrive within this long, and a connection that has made no "
        "authorized request is closed after this long idle (default: $SBX_HEADER_TIMEOUT or %g)" % DEFAULT_HEADER_TIMEOUT,
    ),
    (
        "--body-timeout",
        "SECONDS",
        "a request body that sends nothing for this long is dropped; a slow body that keeps moving is not "
        "(default: $SBX_BODY_TIMEOUT or %g)" % DEFAULT_BODY_TIMEOUT,
    ),
    (
        "--max-processes",
        "N",
        "background processes and execs running at once; more are answered 503 too_many_processes "
        "(default: $SBX_MAX_PROCESSES or %d)" % DEFAULT_MAX_PROCESSES,
    ),
    (
        "--max-exited",
        "N",
        "exited background processes kept listed with their output; the oldest are forgotten "
        "(default: $SBX_MAX_EXITED or %d)" % DEFAULT_MAX_EXITED,
    ),
    (
        "--tunnel",
        FLAG,
        "expose the server through a Cloudflare quick tunnel and announce its URL on stdout "
        "(default: $SBX_TUNNEL); see below",
    ),
    (
        "--host-mode",
        FLAG,
        "host mode: serve many sandboxes (POST /v1/sandboxes), each with its own uid, home and token; "
        "--idle-timeout is then how long the host may stay without any sandbox (default: $SBX_HOST_MODE)",
    ),
    (
        "--capacity",
        "N",
        "host mode: sandboxes at most at once (default: $SBX_CAPACITY or 50)",
    ),
    (
        "--homes-dir",
        "DIR",
        "host mode: where the sandboxes' homes are made (default: $SBX_HOMES_DIR or /sbx/homes)",
    ),
    (
        "--weak-isolation",
        FLAG,
        "host mode: start even without root or Landlock, with what isolation there is (GET /health says "
        "which); default: $SBX_HOST_WEAK_ISOLATION, else refuse",
    ),
)


class Options(object):
    """What argparse's Namespace holds for OPTIONS before any is given."""

    def __init__(self):
        for name, metavar, _help in OPTIONS:
            setattr(self, dest(name), False if metavar is FLAG else None)


def dest(name):
    return name[2:].replace("-", "_")


def scan(argv):
    """The options in `argv` (None: sys.argv[1:]) as argparse reads them, or None where only argparse
    can tell (see the module)."""
    words = iter(sys.argv[1:] if argv is None else argv)
    takes_value = dict((name, metavar is not FLAG) for name, metavar, _help in OPTIONS)
    options = Options()
    for word in words:
        if word not in takes_value:
            return None
        if not takes_value[word]:
            setattr(options, dest(word), True)
            continue
        value = next(words, None)
        if value is None or value.startswith("-"):
            return None
        setattr(options, dest(word), value)  # a repeated option: the last one, as argparse
    return options


def parse(argv):
    """scan(argv), else argparse's reading of it (which exits on --help and on a mistake)."""
    options = scan(argv)
    return options if options is not None else parser().parse_args(argv)


def parser():
    import argparse

    from .tunnel_config import TUNNEL_HELP

    class HelpFormatter(argparse.RawDescriptionHelpFormatter):
        """argparse's, given the width it would ask shutil for (the parser makes one per option it adds)."""

        def __init__(self, prog, *args, **kwargs):
            if len(args) < 3 and kwargs.get("width") is None:
                kwargs["width"] = help_columns() - 2  # as argparse takes it off shutil's
            argparse.RawDescriptionHelpFormatter.__init__(self, prog, *args, **kwargs)

    p = argparse.ArgumentParser(
        prog="server.py",
        description="hf-sandbox in-sandbox RPC server (protocol %d, version %s)" % (PROTOCOL, VERSION),
        epilog=TUNNEL_HELP,
        formatter_class=HelpFormatter,
    )
    for name, metavar, text in OPTIONS:
        if metavar is FLAG:
            p.add_argument(name, action="store_true", help=text)
        else:
            p.add_argument(name, metavar=metavar, help=text)
    return p


def help_columns():
    """shutil.get_terminal_size().columns, without importing shutil (with its archive modules, some
    milliseconds): $COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80
