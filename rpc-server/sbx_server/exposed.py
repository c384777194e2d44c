"""Traffic to the sandbox's exposed ports, as activity for --idle-timeout. A server reached through
the HF Jobs proxy host of a declared port, or through a port's own quick tunnel, is used without a
request ever reaching this server: the idle clock would end a sandbox whose UI is in use. So the idle
loop also counts an established TCP connection to an exposed port (the declared ones, SBX_EXPOSED_PORTS,
and those with a quick tunnel) as activity, read from /proc/net/tcp and tcp6 (Linux; elsewhere nothing
counts). Only exposed ports count: a sandbox's processes talking to each other keep nothing alive."""

import os

ESTABLISHED = "01"


def declared_ports():
    """The ports the job declared (SBX_EXPOSED_PORTS: comma-separated), ignoring anything malformed."""
    ports = set()
    for part in os.environ.get("SBX_EXPOSED_PORTS", "").split(","):
        part = part.strip()
        if part.isdigit() and 0 < int(part) < 65536:
            ports.add(int(part))
    return ports


def _local_ports_established(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return set()
    ports = set()
    for line in lines:
        fields = line.split()
        # sl local_address rem_address st ...: the local address is HEXIP:HEXPORT.
        if len(fields) > 3 and fields[3] == ESTABLISHED:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def in_use(ports):
    """Whether a connection to one of `ports` is established now (a client of a server listening there)."""
    if not ports:
        return False
    here = _local_ports_established("/proc/net/tcp") | _local_ports_established("/proc/net/tcp6")
    return not here.isdisjoint(ports)
