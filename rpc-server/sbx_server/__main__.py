"""hf-sandbox in-sandbox RPC server: `python3 -S rpc-server/sbx_server/__main__.py [options]` (what the
providers run), or `python3 -S rpc-server/sbx_server [options]` (the same server, through runpy).

Runs inside a sandbox (an HF Job, or a local temp dir) and lets a client run
commands and move files over HTTP. A package of a few modules, Python >= 3.8,
standard library only, so it can be dropped into any image that has a python3.

Wire protocol: docs/protocol.md (v1 streaming routes compatible with HF's
sbx-server, plus the hf-sandbox prototype's legacy /exec, /write, /read).
Operator notes: rpc-server/README.md (with the map of the modules).

Design notes (the "why"):
- One thread per connection (ThreadingHTTPServer) and no extra thread per
  exec: the handler thread multiplexes the child's pipes, its exit (pidfd)
  and the client socket with one selector. That keeps an exec of `true` close
  to the cost of the fork/exec itself.
- Every command gets its own session/process group so that a timeout, a
  dropped client or shutdown can kill everything it started, not just the
  direct child.
- Memory is bounded whatever the size of a file or of an output: bodies and
  files are streamed in fixed-size chunks; only JSON bodies (<= 16 MiB) are
  buffered.
- Keep-alive must never desynchronise: unread request bodies are drained
  (or the connection is closed), and a response that cannot deliver the
  announced Content-Length closes the connection.
- Start-up is part of every sandbox's latency: what listening does not need
  (the tunnel's modules, the supervisor's) is imported only when asked for.
"""

import sys

if sys.version_info < (3, 8):  # before any import that would fail with a worse message
    sys.stderr.write("server.py: error: Python 3.8 or newer is required (this is %s)\n" % sys.version.split()[0])
    sys.exit(2)

import os

if __package__:  # python3 -m sbx_server
    _package = __package__
else:
    # Run as a script: this file (`python3 -S rpc-server/sbx_server/__main__.py`, as the providers run it)
    # or its directory (`python3 -S rpc-server/sbx_server`, or runpy.run_path of it). Python put this
    # directory first on sys.path, where a module of ours named like one of the standard library's
    # would shadow it. The package is imported from its parent instead, under its directory's name.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        sys.path[0] = os.path.dirname(_here)
    else:
        sys.path.insert(0, os.path.dirname(_here))
    _package = os.path.basename(_here)

sys.exit(__import__(_package + ".cli", fromlist=["main"]).main())
