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


def restart_compute(nl, host: str, override: str | None, wait: float = 600.0) -> str:
    """Restart ``host``'s nova-compute of the Nova lab ``nl`` -- with ``override`` (INI text)
    as its last --config-file, or on the lab's own config when None -- and wait until its
    service reports again.  Returns its log since the restart; raises AssertionError when
    it exited or did not report within ``wait`` seconds."""
    import datetime as dt
    import time

    from planner.lab.nova_services import Services, compute_command
    from planner.lab.process import stop_groups

    s = nl.spec()
    c = next(x for x in s.computes if x.name == host)
    svc = Services(s)
    name = f"nova-compute-{host}"
    pid = svc.pid(name)
    if pid is not None:
        stop_groups([pid])  # the process group this session's Nova lab started
    svc.forget(name)
    log = Path(s.log(name))
    start_at = log.stat().st_size if log.exists() else 0
    argv = compute_command(s, c, next(h.pid for h in nl.lab.status() if h.name == host))
    if override is not None:
        extra = s.etc / "nova" / f"nova-compute-{host}.test.conf"
        extra.write_text(override)
        argv += ["--config-file", str(extra)]
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    svc.start(name, argv, {})
    cloud = nl._admin(s)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[start_at:] if log.exists() else ""
        if svc.pid(name) is None:
            raise AssertionError(f"nova-compute on {host} exited:\n{text[-3000:]}")
        if any(x.host == host and x.state == "up" and (x.updated_at or "") >= since
               for x in cloud.services()):
            return text
        time.sleep(3)
    raise AssertionError(f"nova-compute on {host} did not report within {wait:.0f} s")


def dirty_boot_image(path: Path, mib_from: int = 1, mib_to: int = 121) -> Path:
    """A 1 MiB raw disk whose boot sector rewrites guest RAM from ``mib_from`` to ``mib_to``
    MiB with a changing pattern, forever: a server whose live migration has real memory to
    send again and again (the lab's `tiny` image boots nothing, its RAM stays zero pages,
    which QEMU sends for free).  Hand-assembled x86 (no assembler needed):

        cli; xor ax,ax; mov ds,ax; lgdt [desc]             ; 16-bit, at 0x7c00
        mov eax,cr0; or eax,1; mov cr0,eax; jmp 0x08:pm     ; to 32-bit protected mode
    pm: mov ax,0x10; mov ds/es/ss,ax; xor ebx,ebx
    outer: mov edi,FROM; mov ecx,(TO-FROM)/4; mov eax,ebx
    fill: mov [edi],eax; add eax,0x9e3779b9; add edi,4; dec ecx; jnz fill
          inc ebx; jmp outer
    gdt: null, code 0x00cf9a000000ffff, data 0x00cf92000000ffff; desc: dw 23, dd gdt
    """
    import struct

    org = 0x7C00
    code = bytearray(b"\xFA\x31\xC0\x8E\xD8")
    lgdt = len(code)
    code += b"\x0F\x01\x16\x00\x00" + b"\x0F\x20\xC0" + b"\x66\x83\xC8\x01" + b"\x0F\x22\xC0"
    jmp = len(code)
    code += b"\xEA\x00\x00\x08\x00"
    pm = len(code)
    code += b"\x66\xB8\x10\x00" + b"\x8E\xD8\x8E\xC0\x8E\xD0" + b"\x31\xDB"
    outer = len(code)
    code += b"\xBF" + struct.pack("<I", mib_from << 20)
    code += b"\xB9" + struct.pack("<I", ((mib_to - mib_from) << 20) // 4) + b"\x89\xD8"
    fill = len(code)
    code += b"\x89\x07" + b"\x05\xB9\x79\x37\x9E" + b"\x83\xC7\x04" + b"\x49"
    code += b"\x75" + struct.pack("<b", fill - (len(code) + 2)) + b"\x43"
    code += b"\xEB" + struct.pack("<b", outer - (len(code) + 2))
    code += b"\x90" * (-len(code) % 8)
    gdt = len(code)
    code += struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
    desc = len(code)
    code += struct.pack("<HI", 23, org + gdt)
    code[lgdt + 3:lgdt + 5] = struct.pack("<H", org + desc)
    code[jmp + 1:jmp + 3] = struct.pack("<H", org + pm)
    sector = bytes(code).ljust(510, b"\0") + b"\x55\xAA"
    path.write_bytes(sector.ljust(1 << 20, b"\0"))
    return path
