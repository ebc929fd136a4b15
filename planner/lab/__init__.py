"""A lab of real libvirt hosts on this machine (see ../shared/LAB.md).

Each host is one ``libvirtd --listen`` in its own mount (and UTS) namespace,
with private ``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``,
``/var/log/libvirt`` and ``/var/cache/libvirt`` bind-mounted from the lab's
state directory, listening on ``qemu+tcp://127.0.0.N/system``.  Every host
starts small diskless QEMU guests of varied shape.

Guests are driven through ``virsh`` subprocesses: only ``planner.adapters.libvirt`` may
import libvirt.  Everything the lab owns lives under one state directory;
``down()`` stops what ``up()`` started and removes that state.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import MigplanError

DEFAULT_STATE_DIR = Path("/var/tmp/migplan-lab")
STATE_DIR_ENV = "MIGPLAN_LAB_DIR"
LIBVIRTD_PORT = 16509
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
VIRSH_TIMEOUT = 60.0

# Directories each host gets privately: (path on the machine, sub-directory of the host's state).
PRIVATE_DIRS = (
    ("/etc/libvirt", "etc"),
    ("/run/libvirt", "run"),
    ("/var/lib/libvirt", "lib"),
    ("/var/log/libvirt", "log"),
    ("/var/cache/libvirt", "cache"),
)

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


ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class GuestShape:
    """One guest's shape; the lab cycles through SHAPES so every host differs."""

    memory_mib: int
    vcpus: int
    cpu: str  # "host-model" or a named CPU model (custom mode)
    pinned: bool
    persistent: bool
    machine: str = "pc"


SHAPES = (
    GuestShape(memory_mib=128, vcpus=1, cpu="host-model", pinned=False, persistent=True),
    GuestShape(memory_mib=256, vcpus=2, cpu="kvm64", pinned=False, persistent=False),
    GuestShape(memory_mib=192, vcpus=2, cpu="host-model", pinned=True, persistent=True),
    GuestShape(memory_mib=160, vcpus=1, cpu="kvm64", pinned=True, persistent=False, machine="q35"),
)


@dataclass(frozen=True)
class GuestStatus:
    name: str
    state: str  # as virsh says it: "running", "shut off", "paused"...
    persistent: bool


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    uri: str
    pid: int | None
    running: bool
    guests: tuple[GuestStatus, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabHost:
    """A planned host: its name, loopback address and where its state lives."""

    index: int  # 1-based
    name: str
    address: str
    dir: Path

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "libvirtd.conf"

    @property
    def daemon_log(self) -> Path:
        return self.dir / "daemon.log"


def default_state_dir() -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else DEFAULT_STATE_DIR


class Lab:
    """N real libvirt hosts on 127.0.0.first_ip … 127.0.0.(first_ip+hosts-1).

    ``up()`` starts what is not running (idempotent), ``status()`` reports,
    ``down()`` stops everything the lab started and removes its state.  The lab is
    recorded in ``state_dir/lab.json``: ``status()`` and ``down()`` follow that record
    (so ``Lab(state_dir)`` alone reaches a running lab), ``up()`` starts what it was
    asked for, defaulting to the record, then to 3 hosts x 2 guests from 127.0.0.2.
    ``uris()`` maps host names (lab1, lab2, ...) to ``qemu+tcp://127.0.0.N/system``.
    """

    def __init__(self, state_dir: Path | str | None = None, hosts: int | None = None,
                 guests: int | None = None, first_ip: int | None = None,
                 accel: str | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.state_dir = self.state_dir.absolute()
        if accel not in (None, "kvm", "tcg"):
            raise LabError(f"unknown accelerator {accel!r}: use kvm or tcg")
        self._explicit = {"hosts_count": hosts, "guests": guests, "first_ip": first_ip,
                          "accel": accel}
        self._configure(prefer_recorded=False)

    def _configure(self, prefer_recorded: bool) -> None:
        """Size and addresses: the recorded lab's, or the explicit ones, or the defaults.

        ``status``/``down`` prefer what is recorded (what really runs); ``up`` prefers what
        it was asked for (and refuses a conflict with what runs).
        """
        rec = self.recorded = self._read_state()
        defaults: dict[str, Any] = {"hosts_count": 3, "guests": 2, "first_ip": 2, "accel": None}
        value: dict[str, Any] = {}
        for key, default in defaults.items():
            explicit = self._explicit[key]
            if (prefer_recorded or explicit is None) and rec.get(key) is not None:
                value[key] = rec[key]
            else:
                value[key] = explicit if explicit is not None else default
        self.n_hosts = int(value["hosts_count"])
        self.n_guests = int(value["guests"])
        self.first_ip = int(value["first_ip"])
        self._accel = value["accel"]
        if self.n_hosts < 1:
            raise LabError("a lab needs at least 1 host")
        if self.n_guests < 0:
            raise LabError("the number of guests per host cannot be negative")
        last = self.first_ip + self.n_hosts - 1
        if self.first_ip < 1 or last > 254:
            raise LabError(f"addresses 127.0.0.{self.first_ip}–127.0.0.{last} are outside "
                           "127.0.0.1–127.0.0.254: lower --hosts or --first-ip")

    # ---- naming -------------------------------------------------------------------------

    @property
    def hosts(self) -> list[LabHost]:
        return [
            LabHost(index=i, name=f"lab{i}", address=f"127.0.0.{self.first_ip + i - 1}",
                    dir=self.state_dir / "hosts" / f"lab{i}")
            for i in range(1, self.n_hosts + 1)
        ]

    def uris(self) -> dict[str, str]:
        """Host name -> libvirt URI, e.g. {"lab1": "qemu+tcp://127.0.0.2/system"}."""
        return {h.name: h.uri for h in self.hosts}

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r} (hosts: {', '.join(self.uris())})")

    @property
    def accel(self) -> str:
        if self._accel is None:
            self._accel = "kvm" if kvm_usable() else "tcg"
        return str(self._accel)

    def guest_names(self, host: LabHost) -> list[str]:
        return [f"{host.name}-vm{j}" for j in range(1, self.n_guests + 1)]

    def shape(self, host: LabHost, j: int) -> GuestShape:
        """Shapes cycle over the whole lab, so 3 hosts x 2 guests show every shape."""
        return SHAPES[((host.index - 1) * self.n_guests + (j - 1)) % len(SHAPES)]

    # ---- public operations ------------------------------------------------------------------

    def up(self, progress: ProgressFn | None = None) -> list[HostStatus]:
        """Start every host that is not running, with its guests; keep running ones."""
        say = progress or (lambda _msg: None)
        require_root("start the lab")
        check_tools()
        with self._locked():
            self._configure(prefer_recorded=False)
            self._check_size_against_running()
            started: list[LabHost] = []
            try:
                procs: dict[str, subprocess.Popen[bytes]] = {}
                for h in self.hosts:
                    if self._running_pid(h) is not None:
                        say(f"{h.name} {h.address}: already running")
                        continue
                    say(f"{h.name} {h.address}: starting libvirtd")
                    procs[h.name] = self._start_daemon(h)
                    started.append(h)
                    self._save_state()
                # one worker per host: the first call to a fresh libvirtd probes QEMU (seconds)
                # and guests start on the daemon's side, so hosts come up side by side
                with ThreadPoolExecutor(max_workers=min(8, max(1, len(started)))) as pool:
                    futures = [pool.submit(self._bring_up, h, procs[h.name], say) for h in started]
                    for f in futures:
                        f.result()
            except BaseException:
                for h in started:
                    self._stop_host(h)
                self._save_state()
                raise
            self._save_state()
        return self.status()

    def _bring_up(self, h: LabHost, proc: subprocess.Popen[bytes], say: ProgressFn) -> None:
        t0 = time.monotonic()
        self._wait_ready(h, proc)
        say(f"{h.name} {h.address}: libvirtd ready in {time.monotonic() - t0:.1f} s")
        names = self._start_guests(h)
        if names:
            say(f"{h.name} {h.address}: guests {', '.join(names)} running")

    def status(self) -> list[HostStatus]:
        """Each host: name, address, URI, libvirtd pid, whether it runs, its guests.

        Empty when no lab was ever brought up in the state directory (or after down()).
        """
        self._configure(prefer_recorded=True)  # another process may have brought it up or down
        if not self.recorded:
            return []
        out = []
        for h in self.hosts:
            pid = self._running_pid(h)
            guests: tuple[GuestStatus, ...] = ()
            if pid is not None:
                guests = tuple(list_guests(h.uri))
            out.append(HostStatus(name=h.name, address=h.address, uri=h.uri, pid=pid,
                                  running=pid is not None, guests=guests))
        return out

    def down(self, progress: ProgressFn | None = None) -> None:
        """Destroy guests, stop daemons and any QEMU they left, remove the lab's state."""
        say = progress or (lambda _msg: None)
        require_root("stop the lab")
        with self._locked():
            self._configure(prefer_recorded=True)
            hosts = [h for h in self._known_hosts() if h.dir.exists()]
            if not hosts and not self.recorded:
                say(f"no lab in {self.state_dir}")
                return
            for h in hosts:
                if self._running_pid(h) is not None:
                    say(f"{h.name} {h.address}: stopping")
            # destroying a guest waits for QEMU to exit (about a second): hosts side by side
            with ThreadPoolExecutor(max_workers=min(8, len(hosts) or 1)) as pool:
                for f in [pool.submit(self._stop_host, h) for h in hosts]:
                    f.result()
            self._remove_state()
        say("lab is down")

    # ---- processes ------------------------------------------------------------------------------

    def _start_daemon(self, h: LabHost) -> subprocess.Popen[bytes]:
        port_free_or_raise(h.address, LIBVIRTD_PORT)
        if h.dir.exists():
            # a stopped host restarts from scratch: whatever its old daemon left goes first
            self._stop_host(h)
            shutil.rmtree(h.dir)
        for _target, sub in PRIVATE_DIRS:
            (h.dir / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("qemu", "storage"):
            (h.dir / "etc" / sub).mkdir(exist_ok=True)
        for target, _sub in PRIVATE_DIRS:
            Path(target).mkdir(parents=True, exist_ok=True)  # mount points must exist
        ensure_qemu_user()
        host_uuid = random_host_uuid()
        h.conf.write_text(libvirtd_conf(h.address, host_uuid))
        (h.dir / "etc" / "qemu.conf").write_text(qemu_conf(h.address))
        (h.dir / "host_uuid").write_text(host_uuid + "\n")
        script = "set -e\n"
        for i, (target, _sub) in enumerate(PRIVATE_DIRS, start=1):
            script += f'mount --bind "${i}" {target}\n'
        if shutil.which("hostname"):
            # a distinct hostname per host, so tools keying hosts by hostname see N hosts
            script += f'hostname "${len(PRIVATE_DIRS) + 1}"\n'
        script += f'exec libvirtd --listen --pid-file /run/libvirt/libvirtd.pid --config "${len(PRIVATE_DIRS) + 2}"\n'
        args = [str(h.dir / sub) for _t, sub in PRIVATE_DIRS] + [h.name, str(h.conf)]
        log = open(h.daemon_log, "ab")  # noqa: SIM115 - handed to the daemon
        try:
            proc = subprocess.Popen(
                ["unshare", "--mount", "--uts", "--propagation", "private", "--",
                 "/bin/sh", "-c", script, "sh", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/",
            )
        finally:
            log.close()
        (h.dir / "pid").write_text(f"{proc.pid}\n")
        return proc

    def _wait_ready(self, h: LabHost, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.1
        while True:
            if proc.poll() is not None:
                raise LabError(f"libvirtd for {h.name} ({h.address}) exited with code "
                               f"{proc.returncode} while starting; last lines of "
                               f"{h.daemon_log}:\n{tail(h.daemon_log)}")
            if port_open(h.address, LIBVIRTD_PORT):
                r = virsh(h.uri, "version", check=False, timeout=30)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise LabError(f"libvirtd for {h.name} ({h.address}) is not answering on "
                               f"{h.uri} after {READY_TIMEOUT:.0f} s; last lines of "
                               f"{h.daemon_log}:\n{tail(h.daemon_log)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        (h.dir / "mntns").write_text(f"{mount_ns(proc.pid)}\n")  # for diagnostics only

    def _running_pid(self, h: LabHost) -> int | None:
        """The host's libvirtd pid if that process is alive and is this host's libvirtd."""
        try:
            pid = int((h.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None
        reap(pid)
        if not pid_alive(pid):
            return None
        cmd = cmdline(pid)
        # until the shell execs libvirtd, the command line is unshare's or sh's: same host
        if str(h.conf) in cmd:
            return pid
        return None

    def _stop_host(self, h: LabHost) -> None:
        pid = self._running_pid(h)
        if pid is not None:
            with contextlib.suppress(LabError):
                for g in list_guests(h.uri):
                    if g.state not in ("shut off",):
                        virsh(h.uri, "destroy", g.name, check=False, timeout=30)
            kill_and_wait(pid)
        # Whatever still sees this host's private directories mounted (QEMU processes, a
        # daemon whose pid file was lost) was started by it.  Namespace inode numbers are
        # reused once freed, so the mounts themselves are the proof, not a recorded inode.
        for p in pids_seeing_mounts_from(h.dir):
            kill_and_wait(p)

    def _known_hosts(self) -> list[LabHost]:
        """Planned hosts plus any other host directory left in the state dir."""
        hosts = {h.name: h for h in self.hosts}
        hosts_dir = self.state_dir / "hosts"
        if hosts_dir.is_dir():
            for d in sorted(hosts_dir.iterdir()):
                if d.name not in hosts and d.is_dir():
                    hosts[d.name] = LabHost(index=0, name=d.name, address="?", dir=d)
        return list(hosts.values())

    def _check_size_against_running(self) -> None:
        """A running lab may grow, but not move or shrink under a plain `up`."""
        planned = {h.name for h in self.hosts}
        running = [h for h in self._known_hosts() if self._running_pid(h) is not None]
        first = int(self.recorded.get("first_ip", self.first_ip))
        if running and (first != self.first_ip or any(h.name not in planned for h in running)):
            raise LabError(
                f"the lab in {self.state_dir} already runs {len(running)} host(s) from "
                f"127.0.0.{first}; run `migplan lab down` first to change its size or "
                "addresses, or use another --state-dir")

    # ---- guests -------------------------------------------------------------------------------

    def _start_guests(self, h: LabHost) -> list[str]:
        names = []
        for j, name in enumerate(self.guest_names(h), start=1):
            shape = self.shape(h, j)
            xml = guest_xml(name, shape, kvm=self.accel == "kvm")
            path = h.dir / f"{name}.xml"
            path.write_text(xml)
            if shape.persistent:
                self._virsh_guest(h, name, "define", str(path))
                self._virsh_guest(h, name, "start", name)
            else:
                self._virsh_guest(h, name, "create", str(path))
            names.append(name)
        return names

    def _virsh_guest(self, h: LabHost, name: str, *args: str) -> None:
        r = virsh(h.uri, *args, check=False)
        if r.returncode != 0:
            qlog = h.dir / "log" / "qemu" / f"{name}.log"
            raise LabError(f"guest {name} on {h.name}: `virsh {' '.join(args)}` failed: "
                           f"{r.stderr.strip()}\nlast lines of {qlog}:\n{tail(qlog)}")

    # ---- state ------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / "lab.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "hosts_count": self.n_hosts, "guests": self.n_guests, "first_ip": self.first_ip,
            "accel": self.accel,
            "hosts": [{"name": h.name, "address": h.address, "uri": h.uri} for h in self.hosts],
        }
        tmp = self.state_dir / "lab.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.state_dir / "lab.json")
        self.recorded = data

    def _remove_state(self) -> None:
        # only what the lab created: a mistaken --state-dir must never lose other files
        hosts_dir = self.state_dir / "hosts"
        for h in self._known_hosts():
            if h.dir.exists():
                shutil.rmtree(h.dir)
        for f in ("lab.json", "lab.json.tmp", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / f).unlink()
        for d in (hosts_dir, self.state_dir):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.recorded = {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise LabError(f"another migplan lab command is working on {self.state_dir}; "
                               "wait for it to finish") from None
            yield


# ---- configuration ---------------------------------------------------------------------------


def random_host_uuid() -> str:
    # libvirt rejects host UUIDs whose digits are all the same; uuid4 never is
    return str(uuid.uuid4())


def libvirtd_conf(address: str, host_uuid: str) -> str:
    return (
        "# written by migplan lab\n"
        "listen_tcp = 1\n"
        "listen_tls = 0\n"
        'auth_tcp = "none"\n'
        f'listen_addr = "{address}"\n'
        f'host_uuid = "{host_uuid}"\n'
        'log_outputs = "3:stderr"\n'
    )


def qemu_conf(address: str) -> str:
    return (
        "# written by migplan lab\n"
        'user = "root"\n'
        'group = "root"\n'
        'security_driver = "none"\n'
        # no virtlogd in the lab: QEMU writes its log file itself
        'stdio_handler = "file"\n'
        f'migration_address = "{address}"\n'
        f'migration_host = "{address}"\n'
        # QEMU stays in the host's mount namespace (so down() finds it there) and out of
        # cgroups shared with the other hosts and the machine; pinning still applies
        # through sched_setaffinity
        "namespaces = [ ]\n"
        "cgroup_controllers = [ ]\n"
        "remember_owner = 0\n"
    )


def guest_xml(name: str, shape: GuestShape, kvm: bool, ncpus: int | None = None) -> str:
    ncpus = ncpus or os.cpu_count() or 1
    if shape.cpu == "host-model":
        # Under nested KVM, QEMU cannot set the arch-capabilities MSR (0x10a) that host-model
        # asks for, and invtsc would block migration: the lab's host-model leaves both out.
        # TCG has no host-model; qemu64 is its own default model.
        cpu = ("  <cpu mode='host-model' check='partial'>\n"
               "    <feature policy='disable' name='arch-capabilities'/>\n"
               "    <feature policy='disable' name='invtsc'/>\n"
               "  </cpu>\n") if kvm else \
            "  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>\n"
    else:
        cpu = (f"  <cpu mode='custom' match='exact' check='partial'>\n"
               f"    <model fallback='forbid'>{shape.cpu}</model>\n  </cpu>\n")
    tune = ""
    if shape.pinned:
        pins = "".join(f"    <vcpupin vcpu='{v}' cpuset='{v % ncpus}'/>\n" for v in range(shape.vcpus))
        tune = f"  <cputune>\n{pins}  </cputune>\n"
    return (
        f"<domain type='{'kvm' if kvm else 'qemu'}'>\n"
        f"  <name>{name}</name>\n"
        f"  <memory unit='MiB'>{shape.memory_mib}</memory>\n"
        f"  <currentMemory unit='MiB'>{shape.memory_mib}</currentMemory>\n"
        f"  <vcpu placement='static'>{shape.vcpus}</vcpu>\n"
        f"{tune}"
        "  <os>\n"
        f"    <type arch='x86_64' machine='{shape.machine}'>hvm</type>\n"
        "    <boot dev='network'/>\n"
        "  </os>\n"
        "  <features><acpi/></features>\n"
        f"{cpu}"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        "    <serial type='pty'><target port='0'/></serial>\n"
        "    <console type='pty'><target type='serial' port='0'/></console>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n"
    )


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


def virsh(uri: str, *args: str, check: bool = True,
          timeout: float = VIRSH_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
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
