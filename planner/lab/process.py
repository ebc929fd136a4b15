"""The lab's process handling: tool checks, virsh, pids, mount namespaces, stopping by pid."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from planner.errors import MigplanError

STOP_TIMEOUT = 10.0
VIRSH_TIMEOUT = 60.0

# tool -> Debian package that provides it
TOOLS = {
    "libvirtd": "libvirt-daemon",
    "virsh": "libvirt-clients",
    "qemu-system-x86_64": "qemu-system-x86",
    "unshare": "util-linux",
    "mount": "mount",
}
QEMU_DRIVER_GLOB = "/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"


class LabError(MigplanError):
    """The lab cannot be started, inspected or stopped; the message says why and what to do."""

    exit_code = 1


@dataclass(frozen=True)
class GuestStatus:
    name: str
    state: str  # as virsh says it: "running", "shut off", "paused"...
    persistent: bool


# ---- checks ----------------------------------------------------------------------------------


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"must run as root to {what}: the lab starts libvirtd daemons in private "
                       "mount namespaces (try: sudo migplan lab ...)")


def check_tools() -> None:
    missing = [(tool, pkg) for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if shutil.which("libvirtd") is not None and not glob.glob(QEMU_DRIVER_GLOB):
        missing.append(("libvirt's QEMU driver", "libvirt-daemon-driver-qemu"))
    if missing:
        pkgs = sorted({pkg for _t, pkg in missing})
        tools = ", ".join(f"{t} (Debian package {p})" for t, p in missing)
        raise LabError(f"missing for the lab: {tools}; install with: "
                       f"apt-get install -y --no-install-recommends {' '.join(pkgs)}")


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def ensure_qemu_user() -> None:
    """libvirt's QEMU driver refuses to start without the libvirt-qemu user, even as root."""
    if subprocess.run(["id", "libvirt-qemu"], capture_output=True).returncode == 0:
        return
    for group in ("kvm", "libvirt-qemu"):
        if subprocess.run(["getent", "group", group], capture_output=True).returncode != 0:
            run_or_raise(["groupadd", "-r", group])
    run_or_raise(["useradd", "-r", "-g", "libvirt-qemu", "-G", "kvm", "-s", "/usr/sbin/nologin",
                  "-d", "/var/lib/libvirt", "-M", "libvirt-qemu"])


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` (flock, not waiting): one lab command at a time per lab."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LabError(f"another migplan lab command is working on {directory}; "
                           "wait for it to finish") from None
        yield


def run_or_raise(cmd: list[str]) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} not found: install the Debian package passwd") from None
    if r.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {r.stderr.strip()}")


def port_free_or_raise(address: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise LabError(f"{address}:{port} is already in use (another libvirtd or another "
                           "lab?): stop it, or choose other addresses with --first-ip") from None
        raise LabError(f"cannot listen on {address}:{port}: {err.strerror}") from None
    finally:
        s.close()


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


# ---- virsh -------------------------------------------------------------------------------------


# URI -> libvirt auth.conf for the lab's own virsh calls to SASL hosts (``Lab(sasl=True)``)
_AUTH_FILES: dict[str, str] = {}


def use_auth_file(uri: str, path: Path) -> None:
    """virsh to ``uri`` answers SASL's prompts from ``path`` (libvirt's auth.conf format)."""
    _AUTH_FILES[uri] = str(path)


def virsh(uri: str, *args: str, check: bool = True,
          timeout: float = VIRSH_TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIBVIRT_AUTH_FILE": _AUTH_FILES[uri]} if uri in _AUTH_FILES else None
    try:
        r = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        raise LabError(f"`virsh -c {uri} {' '.join(args)}` did not answer in {timeout:.0f} s") from None
    except FileNotFoundError:
        raise LabError("virsh not found: install the Debian package libvirt-clients") from None
    if check and r.returncode != 0:
        raise LabError(f"`virsh -c {uri} {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


def list_guests(uri: str) -> list[GuestStatus]:
    """Guests of a host with their state, through `virsh list --all`."""
    listing = virsh(uri, "list", "--all").stdout
    transient = set(virsh(uri, "list", "--all", "--transient", "--name").stdout.split())
    out = []
    for line in listing.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        _id, name, state = parts
        out.append(GuestStatus(name=name, state=state.strip(), persistent=name not in transient))
    return out


# ---- small process helpers ---------------------------------------------------------------------


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ(pid: int) -> str:
    """The environment a process started with (NUL-separated entries joined by newlines)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(
            errors="replace")
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the
    pid, what tells a recorded process from a later one that got the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state letter follows the parenthesised command name; a zombie is gone already
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def reap(pid: int) -> None:
    """Collect the exit status if the daemon is our own child (the test fixture's case)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def mount_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _unescape_mountinfo(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fs_path(path: Path) -> str:
    """``path`` as mountinfo's root field (4th) names it: relative to its own filesystem."""
    target = str(path.resolve())
    best_mnt, best_root = "", "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        root, mnt = _unescape_mountinfo(fields[3]), _unescape_mountinfo(fields[4])
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best_mnt):
            best_mnt, best_root = mnt, root
    rel = target[len(best_mnt):].lstrip("/")
    return os.path.join(best_root, rel) if rel else best_root


def pids_seeing_mounts_from(directory: Path) -> list[int]:
    """Processes (other than this one) that have a bind mount of something under directory."""
    prefix = fs_path(directory).rstrip("/") + "/"
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            mountinfo = (entry / "mountinfo").read_text()
        except OSError:
            continue
        for line in mountinfo.splitlines():
            if _unescape_mountinfo(line.split()[3]).startswith(prefix):
                if pid_alive(int(entry.name)):
                    out.append(int(entry.name))
                break
    return out


def kill_and_wait(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise LabError(f"process {pid} ({cmdline(pid).strip()}) did not stop after SIGKILL")


# ---- services in their own process groups (the Nova lab) ---------------------------------------


def start_session(argv: list[str], log: Path, env: dict[str, str] | None = None,
                  cwd: Path | str = "/") -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session (its pid is its process group id), with
    stdin from /dev/null and stdout/stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the process
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=cwd)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} not found") from None
    finally:
        out.close()


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (uwsgi workers, beam.smp, privsep helpers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # fields after the command: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def stop_groups(pgids: list[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each process group, wait up to ``timeout`` for all of them, then SIGKILL what is
    left and wait again.  Only groups whose leader was started by the lab are passed here."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [g for g in pgids if group_members(g)]
        for g in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(g, sig)
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            for g in alive:
                reap(g)
            alive = [g for g in alive if group_members(g)]
            if alive:
                time.sleep(0.2)
        if not alive:
            return
    left = {g: group_members(g) for g in pgids if group_members(g)}
    raise LabError(f"process groups did not stop after SIGKILL: {left}")
