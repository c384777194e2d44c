"""Resource samples of the sandbox, in the field names of the HF Jobs metrics stream
(`cpu_usage_pct`, `cpu_millicores`, `memory_used_bytes`, `memory_total_bytes`, `rx_bps`, `tx_bps`,
`gpus` keyed by GPU id), so that a client reads the server's samples and the Hub's alike.

What "the sandbox" is depends on where the server runs. In a container with its own cgroup (an HF job:
/proc/self/cgroup is `0::/`), it is that cgroup: CPU time from cpu.stat, the allotment from cpu.max,
memory from memory.current (less the reclaimable file cache, as `docker stats` counts it) and
memory.max. Elsewhere (the local provider), it is the server's process family: its own and every
descendant's CPU time (with that of descendants already reaped) and resident memory, against this
machine's CPUs and memory. Network rates are the network namespace's (/proc/net/dev, loopback left
out): the container's own in a job, the whole machine's locally. GPUs come from `nvidia-smi` when there
is one. A sample is a rate between two readings; the first reading is taken when a request starts."""

import os
import shutil
import subprocess
import time

from .proctree import descendants, scan_proc

CGROUP = "/sys/fs/cgroup"
GPU_QUERY = "--query-gpu=uuid,utilization.gpu,memory.used,memory.total"
GPU_TIMEOUT = 5.0
MIB = 1024 * 1024


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def _own_cgroup():
    """Whether this process sees its own cgroup (v2) at the root of /sys/fs/cgroup: a container's."""
    text = _read("/proc/self/cgroup")
    return text is not None and text.strip() == "0::/" and _read(CGROUP + "/cpu.stat") is not None


def _cpus_here():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _meminfo(key):
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _cgroup_allotment():
    """CPUs the cgroup may use (cpu.max `quota period`; `max`: every CPU here)."""
    parts = (_read(CGROUP + "/cpu.max") or "max").split()
    if parts and parts[0] != "max" and len(parts) == 2:
        try:
            return max(0.001, int(parts[0]) / float(int(parts[1])))
        except (ValueError, ZeroDivisionError):
            pass
    return float(_cpus_here())


def _cgroup_reading():
    usage_usec = 0
    for line in (_read(CGROUP + "/cpu.stat") or "").splitlines():
        if line.startswith("usage_usec "):
            usage_usec = int(line.split()[1])
    current = int((_read(CGROUP + "/memory.current") or "0").strip() or 0)
    for line in (_read(CGROUP + "/memory.stat") or "").splitlines():
        if line.startswith("inactive_file "):
            current = max(0, current - int(line.split()[1]))
    limit = (_read(CGROUP + "/memory.max") or "max").strip()
    total = _meminfo("MemTotal")
    if limit.isdigit():
        total = min(int(limit), total) if total else int(limit)
    return usage_usec / 1e6, current, total


def _family_reading():
    """CPU seconds and resident bytes of this server and everything below it."""
    ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    me = os.getpid()
    cpu, rss = 0.0, 0
    for pid in [me] + descendants(scan_proc(), me):
        stat = _read("/proc/%d/stat" % pid)
        statm = _read("/proc/%d/statm" % pid)
        if stat is None or statm is None:
            continue
        try:
            fields = stat[stat.rindex(")") + 2 :].split()
            # utime, stime, and the times of its children it has reaped (cutime, cstime).
            cpu += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
            rss += int(statm.split()[1]) * page
        except (ValueError, IndexError):
            continue
    return cpu, rss, _meminfo("MemTotal")


def _network():
    """Bytes received and sent so far on every interface but loopback."""
    rx = tx = 0
    for line in (_read("/proc/net/dev") or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        try:
            rx += int(fields[0])
            tx += int(fields[8])
        except ValueError:
            continue
    return rx, tx


def _number(text):
    try:
        return float(text.strip())
    except ValueError:  # "[N/A]", "[Not Supported]"
        return 0.0


def gpus(nvidia_smi):
    """GPU id -> {utilization, memory_used_bytes, memory_total_bytes}; {} without nvidia-smi."""
    if nvidia_smi is None:
        return {}
    try:
        out = subprocess.run(
            [nvidia_smi, GPU_QUERY, "--format=csv,noheader,nounits"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=GPU_TIMEOUT,
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            continue
        uuid = cells[0]
        # The Hub keys GPUs by a short hex id: the start of the UUID after its "GPU-" prefix.
        gpu_id = uuid[4:12] if uuid.startswith("GPU-") else uuid
        found[gpu_id] = {
            "utilization": int(_number(cells[1])),
            "memory_used_bytes": int(_number(cells[2]) * MIB),
            "memory_total_bytes": int(_number(cells[3]) * MIB),
        }
    return found


class Meter(object):
    """Readings of the sandbox and the sample between two of them."""

    def __init__(self):
        self.cgroup = _own_cgroup()
        self.nvidia_smi = shutil.which("nvidia-smi")
        self.last = self.reading()

    def reading(self):
        if self.cgroup:
            cpu, used, total = _cgroup_reading()
            allotment = _cgroup_allotment()
        else:
            cpu, used, total = _family_reading()
            allotment = float(_cpus_here())
        rx, tx = _network()
        return {"at": time.monotonic(), "cpu": cpu, "allotment": allotment, "used": used, "total": total, "rx": rx, "tx": tx}

    def sample(self):
        """The sample from the previous reading to now."""
        now = self.reading()
        last, self.last = self.last, now
        seconds = max(1e-3, now["at"] - last["at"])
        busy = max(0.0, now["cpu"] - last["cpu"]) / seconds
        return {
            "cpu_usage_pct": min(100, int(round(100.0 * busy / now["allotment"]))),
            "cpu_millicores": int(round(now["allotment"] * 1000)),
            "memory_used_bytes": now["used"],
            "memory_total_bytes": now["total"],
            "rx_bps": int(max(0, now["rx"] - last["rx"]) / seconds),
            "tx_bps": int(max(0, now["tx"] - last["tx"]) / seconds),
            "gpus": gpus(self.nvidia_smi),
        }
