#!/usr/bin/env python3
"""Server resource bounds (issue 12 item 2), measured on a real rpc-server over loopback.

    python3 bench/server-bounds.py [--server PATH] [--slow 1500] [--seconds 10]

Each scenario runs against a fresh server and prints its RSS (now and peak, from /proc) and its
thread count:
- slow: N connections that each send one byte of a request line every few seconds;
- interleaved: a background process writing 1 byte alternately to stdout and stderr, then the time to
  replay its buffer (GET /v1/processes/{id}/output);
- ring: the output buffer alone, in-process, fed 2-byte chunks alternating between the streams;
- legacy-exec: POST /exec of a command printing 50 MB of binary output, one request and four at once.

To compare with an older server: git show <rev>:rpc-server/server.py > /tmp/old.py (the one-file server
of before the package), then --server /tmp/old.py. Linux only (/proc).
"""

import argparse
import http.client
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024.0,
        "peak_mb": int(fields["VmHWM"].split()[0]) / 1024.0,
        "threads": int(fields["Threads"]),
    }


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Server(object):
    def __init__(self, path, extra_env=None):
        self.token = secrets.token_hex(32)
        self.dir = tempfile.mkdtemp(prefix="sbx-bounds-")
        env = dict(os.environ, SBX_TOKEN=self.token, **(extra_env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-u", path, "--port", "0", "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.dir, env=env,
        )
        line = json.loads(self.proc.stdout.readline())
        self.port, self.pid = line["port"], line["pid"]

    def request(self, method, path, body=None, timeout=600):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"X-Sandbox-Token": self.token})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def show(label, figures, extra=""):
    print(
        "%-34s rss %7.1f MB  peak %7.1f MB  threads %5d  %s"
        % (label, figures["rss_mb"], figures["peak_mb"], figures["threads"], extra)
    )
    sys.stdout.flush()


def slow(path, n, seconds):
    s = Server(path)
    base = status(s.pid)
    socks = []
    refused = 0
    for _ in range(n):
        c = socket.socket()
        c.setblocking(True)
        try:
            c.connect(("127.0.0.1", s.port))
            c.sendall(b"G")
            socks.append(c)
        except OSError:
            refused += 1
            c.close()
    # One more byte every 3 s, as a slow client would: each connection keeps its thread busy.
    end = time.monotonic() + seconds
    rounds = 0
    peak = base
    while time.monotonic() < end:
        time.sleep(min(3.0, max(0.0, end - time.monotonic())))
        rounds += 1
        alive = []
        for c in socks:
            try:
                c.sendall(b"E")
                alive.append(c)
            except OSError:
                c.close()
        socks = alive
        now = status(s.pid)
        if now["threads"] > peak["threads"]:
            peak = now
    # How many the server still holds open: a closed one answers (503) or reads EOF.
    still = 0
    for c in socks:
        c.setblocking(False)
        try:
            if c.recv(1, socket.MSG_PEEK) == b"":
                continue
            continue  # it answered something (a 503): not held
        except BlockingIOError:
            still += 1
        except OSError:
            pass
    end_status = status(s.pid)
    for c in socks:
        c.close()
    show("idle server", base)
    show("%d slow connections (max threads)" % n, peak)
    show("  after %g s" % seconds, end_status, "held open by the server: %d of %d" % (still, n))
    s.stop()


def interleaved(path, seconds, buffer_bytes, replay_limit):
    s = Server(path)
    show("idle server", status(s.pid))
    code = "import os\nwhile True:\n    os.write(1, b'o')\n    os.write(2, b'e')\n"
    st, body = s.request("POST", "/v1/processes", {"cmd": ["python3", "-c", code], "buffer_bytes": buffer_bytes})
    assert st == 200, body
    pid = json.loads(body)["id"]
    time.sleep(seconds)
    show("interleaved writer, %g s" % seconds, status(s.pid), "buffer_bytes %d" % buffer_bytes)
    s.request("DELETE", "/v1/processes/%s" % pid)
    # The replay, read for at most `replay_limit` seconds (a quadratic one may take hours).
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=600)
    conn.request("GET", "/v1/processes/%s/output" % pid, headers={"X-Sandbox-Token": s.token})
    resp = conn.getresponse()
    t0 = time.monotonic()
    events = data = 0
    complete = False
    while time.monotonic() - t0 < replay_limit:
        line = resp.readline()
        if not line:
            complete = True
            break
        events += 1
        data += len(json.loads(line).get("data", ""))
    took = time.monotonic() - t0
    conn.close()
    how = "all" if complete else "stopped after"
    show("  replay", status(s.pid), "%s %d events, %d bytes of output in %.2f s" % (how, events, data, took))
    s.stop()


def ring(path):
    """The output buffer alone, in-process: 2-byte chunks alternating between stdout and stderr, as
    fast as they come, then what the buffer holds (tracemalloc) against its two bounds."""
    import importlib
    import importlib.util
    import tracemalloc

    if os.path.isdir(path):  # the package: BgProcess lives in its `background` module
        package = os.path.abspath(path)
        sys.path.insert(0, os.path.dirname(package))
        module = importlib.import_module(os.path.basename(package) + ".background")
    else:  # a one-file server of before the package
        spec = importlib.util.spec_from_file_location("rpc_server", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    limit = 1024 * 1024
    tracemalloc.start()
    bg = module.BgProcess(1, "x", None, limit, None, None, kind="process")
    base = tracemalloc.get_traced_memory()[0]
    for i in range(400000):
        bg.append("stdout", b"o%d" % (i % 10))
        bg.append("stderr", b"e%d" % (i % 10))
    held = tracemalloc.get_traced_memory()[0] - base
    kept = sum(bg.total[n] - bg.dropped[n] for n in ("stdout", "stderr"))
    print(
        "%-34s %.1f MB for buffer_bytes %d per stream (%.1fx), %d bytes kept"
        % ("ring, 800,000 interleaved chunks", held / 1e6, limit, held / (2.0 * limit), kept)
    )
    tracemalloc.stop()


def legacy_exec(path, parallel):
    s = Server(path)
    base = status(s.pid)
    cmd = ["head", "-c", str(50 * 1000 * 1000), "/dev/urandom"]
    sizes = []

    def one():
        st, body = s.request("POST", "/exec", {"cmd": cmd})
        sizes.append((st, len(body)))

    threads = [threading.Thread(target=one) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    show("idle server", base)
    show("legacy /exec 50 MB binary x%d" % parallel, status(s.pid), "answers %s" % sizes)
    s.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", default=os.path.join(HERE, "..", "rpc-server", "sbx_server"))
    p.add_argument("--slow", type=int, default=1500)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--buffer-bytes", type=int, default=8 * 1024 * 1024)
    p.add_argument("--replay-limit", type=float, default=120.0, help="seconds to read a replay for, at most")
    p.add_argument("--only", choices=("slow", "interleaved", "ring", "legacy"))
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("server: %s" % os.path.abspath(args.server))
    if args.only in (None, "slow"):
        slow(args.server, args.slow, args.seconds)
    if args.only in (None, "interleaved"):
        interleaved(args.server, args.seconds, args.buffer_bytes, args.replay_limit)
    if args.only in (None, "ring"):
        ring(args.server)
    if args.only in (None, "legacy"):
        legacy_exec(args.server, 1)
        legacy_exec(args.server, 4)


if __name__ == "__main__":
    main()
