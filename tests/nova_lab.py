"""The test suite's Nova lab (planner.lab.nova): addresses, the reason it cannot run here,
and what tests check about it (listening sockets, leftover processes and mounts).

The session fixture ``nova_lab`` (tests/conftest.py) starts one Nova lab of 2 hosts with one
server each, on the control address 127.0.0.$MIGPLAN_TEST_NOVA_IP (default 120) and hosts
from the next address on, and stops it at the end of the session.  The lab installs its own
Debian packages (apt, as root) the first time, so `make test` needs nothing else.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

NOVA_IP = int(os.environ.get("MIGPLAN_TEST_NOVA_IP", "120"))
NOVA_CONTROL = f"127.0.0.{NOVA_IP}"
NOVA_FIRST_HOST_IP = NOVA_IP + 1
NOVA_HOSTS = 2
NOVA_SERVERS_PER_HOST = 1


def nova_lab_unavailable_reason() -> str | None:
    """Why a Nova lab cannot run on this machine at all (before trying), or None."""
    if os.geteuid() != 0:
        return "the Nova lab needs root (libvirtd namespaces, apt, services on loopback)"
    if shutil.which("dpkg-query") is None:
        return "the Nova lab runs Debian 12's OpenStack packages: no dpkg here"
    from planner.lab.nova_packages import missing_packages

    if missing_packages() and shutil.which("apt-get") is None:
        return "the Nova lab's Debian packages are missing and apt-get is not available"
    return None


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes: dict[str, int] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            out.append((inodes[inode], _address(addr_hex, v6), int(port_hex, 16)))
    return out


def _address(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return ".".join(str(b) for b in reversed(raw))
    # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    import ipaddress

    return str(ipaddress.IPv6Address(b"".join(words)))


def processes_naming(root: Path) -> list[str]:
    """Live processes whose command line, HOME or working directory names ``root``."""
    from planner.lab.nova_services import started_in
    from planner.lab.process import cmdline, pid_alive

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmd = cmdline(pid)
        if pid_alive(pid) and (str(root) in cmd or started_in(pid, root)):
            found.append(f"{pid}: {cmd}")
    return found


def mounts_of(root: Path) -> list[str]:
    """Mounts of or onto something under ``root`` seen by any process."""
    from planner.lab.process import fs_path

    inner = fs_path(root)
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "mountinfo").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if fields[4].startswith(str(root)) or fields[3].startswith(inner):
                found.add(f"{entry.name}: {fields[4]}")
    return sorted(found)
