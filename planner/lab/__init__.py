"""A lab of real libvirt hosts on this machine (``Lab``; templates in ``config``, processes in
``process``).

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
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planner.lab.config import (
    SASL_CONF_DIR as SASL_CONF_DIR,
)
from planner.lab.config import (
    SASL_USER as SASL_USER,
)
from planner.lab.config import (
    SHAPES as SHAPES,
)
from planner.lab.config import (
    GuestShape as GuestShape,
)
from planner.lab.config import (
    guest_xml as guest_xml,
)
from planner.lab.config import (
    libvirtd_conf as libvirtd_conf,
)
from planner.lab.config import (
    qemu_conf as qemu_conf,
)
from planner.lab.config import (
    random_host_uuid as random_host_uuid,
)
from planner.lab.config import (
    sasl_conf as sasl_conf,
)
from planner.lab.process import (
    QEMU_DRIVER_GLOB as QEMU_DRIVER_GLOB,
)
from planner.lab.process import (
    STOP_TIMEOUT as STOP_TIMEOUT,
)
from planner.lab.process import (
    TOOLS as TOOLS,
)
from planner.lab.process import (
    VIRSH_TIMEOUT as VIRSH_TIMEOUT,
)
from planner.lab.process import (
    GuestStatus as GuestStatus,
)
from planner.lab.process import (
    LabError as LabError,
)
from planner.lab.process import (
    _unescape_mountinfo as _unescape_mountinfo,
)
from planner.lab.process import (
    check_tools as check_tools,
)
from planner.lab.process import (
    cmdline as cmdline,
)
from planner.lab.process import (
    ensure_qemu_user as ensure_qemu_user,
)
from planner.lab.process import (
    fs_path as fs_path,
)
from planner.lab.process import (
    kill_and_wait as kill_and_wait,
)
from planner.lab.process import (
    kvm_usable as kvm_usable,
)
from planner.lab.process import (
    list_guests as list_guests,
)
from planner.lab.process import (
    locked as locked,
)
from planner.lab.process import (
    mount_ns as mount_ns,
)
from planner.lab.process import (
    pid_alive as pid_alive,
)
from planner.lab.process import (
    pids_seeing_mounts_from as pids_seeing_mounts_from,
)
from planner.lab.process import (
    port_free_or_raise as port_free_or_raise,
)
from planner.lab.process import (
    port_open as port_open,
)
from planner.lab.process import (
    read_int as read_int,
)
from planner.lab.process import (
    reap as reap,
)
from planner.lab.process import (
    require_root as require_root,
)
from planner.lab.process import (
    run_or_raise as run_or_raise,
)
from planner.lab.process import (
    tail as tail,
)
from planner.lab.process import (
    use_auth_file as use_auth_file,
)
from planner.lab.process import (
    virsh as virsh,
)

DEFAULT_STATE_DIR = Path("/var/tmp/migplan-lab")
STATE_DIR_ENV = "MIGPLAN_LAB_DIR"
LIBVIRTD_PORT = 16509
READY_TIMEOUT = 60.0

# Directories each host gets privately: (path on the machine, sub-directory of the host's state).
PRIVATE_DIRS = (
    ("/etc/libvirt", "etc"),
    ("/run/libvirt", "run"),
    ("/var/lib/libvirt", "lib"),
    ("/var/log/libvirt", "log"),
    ("/var/cache/libvirt", "cache"),
)

ProgressFn = Callable[[str], None]


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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


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
                 accel: str | None = None, sasl: bool | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.state_dir = self.state_dir.absolute()
        if accel not in (None, "kvm", "tcg"):
            raise LabError(f"unknown accelerator {accel!r}: use kvm or tcg")
        self._explicit = {"hosts_count": hosts, "guests": guests, "first_ip": first_ip,
                          "accel": accel, "sasl": sasl}
        self._configure(prefer_recorded=False)

    def _configure(self, prefer_recorded: bool) -> None:
        """Size and addresses: the recorded lab's, or the explicit ones, or the defaults.

        ``status``/``down`` prefer what is recorded (what really runs); ``up`` prefers what
        it was asked for (and refuses a conflict with what runs).
        """
        rec = self.recorded = self._read_state()
        defaults: dict[str, Any] = {"hosts_count": 3, "guests": 2, "first_ip": 2, "accel": None,
                                    "sasl": False}
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
        self.sasl = bool(value["sasl"])
        if self.sasl:
            for h in self.hosts:
                use_auth_file(h.uri, self.state_dir / "auth.conf")
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
        h.conf.write_text(libvirtd_conf(h.address, host_uuid, sasl=self.sasl))
        if self.sasl:
            self._sasl_setup(h)
        (h.dir / "etc" / "qemu.conf").write_text(qemu_conf(h.address))
        (h.dir / "host_uuid").write_text(host_uuid + "\n")
        script = "set -e\n"
        for i, (target, _sub) in enumerate(PRIVATE_DIRS, start=1):
            script += f'mount --bind "${i}" {target}\n'
        if self.sasl:
            # the host's own SASL application config (libvirt.conf) over the machine's
            script += f'mount --bind "{h.dir / "sasl2"}" {SASL_CONF_DIR}\n'
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

    @property
    def passwords_file(self) -> Path:
        """With ``sasl``: the lab's libvirt SASL password, as kolla-ansible's passwords.yml
        holds it (``libvirt_sasl_password``), for ``collect --libvirt-password-file``."""
        return self.state_dir / "passwords.yml"

    def _sasl_password(self) -> str:
        f = self.passwords_file
        if not f.exists():
            pw = secrets.token_hex(16)
            _write_private(f, f"libvirt_sasl_password: {pw}\n")
            # libvirt's auth.conf, for the lab's own virsh calls
            _write_private(self.state_dir / "auth.conf",
                           f"[credentials-lab]\nauthname={SASL_USER}\npassword={pw}\n\n"
                           "[auth-libvirt-default]\ncredentials=lab\n")
        return f.read_text().split(":", 1)[1].strip()

    def _sasl_setup(self, h: LabHost) -> None:
        """libvirtd's SASL (as kolla-ansible deploys it for qemu+tcp): DIGEST-MD5 (plain TCP
        needs a mechanism with encryption), user ``nova`` in the host's own sasldb."""
        if shutil.which("saslpasswd2") is None:
            raise LabError("--sasl needs saslpasswd2: apt-get install -y --no-install-recommends "
                           "sasl2-bin libsasl2-modules")
        (h.dir / "sasl2").mkdir(exist_ok=True)
        (h.dir / "sasl2" / "libvirt.conf").write_text(sasl_conf())
        Path(SASL_CONF_DIR).mkdir(parents=True, exist_ok=True)  # the mount point
        db = h.dir / "etc" / "passwd.db"  # /etc/libvirt/passwd.db inside the host
        # the realm is the server's hostname: the host's own (set in its UTS namespace)
        realm = h.name if shutil.which("hostname") else socket.gethostname()
        r = subprocess.run(["saslpasswd2", "-p", "-a", "libvirt", "-f", str(db), "-u", realm,
                            SASL_USER],
                           input=self._sasl_password() + "\n", capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise LabError(f"saslpasswd2 for {h.name} failed: {r.stderr.strip()}")

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
            "accel": self.accel, "sasl": self.sasl,
            "hosts": [{"name": h.name, "address": h.address, "uri": h.uri} for h in self.hosts],
        }
        tmp = self.state_dir / "lab.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
        tmp.replace(self.state_dir / "lab.json")
        self.recorded = data

    def _remove_state(self) -> None:
        # only what the lab created: a mistaken --state-dir must never lose other files
        hosts_dir = self.state_dir / "hosts"
        for h in self._known_hosts():
            if h.dir.exists():
                shutil.rmtree(h.dir)
        for f in ("lab.json", "lab.json.tmp", ".lock", "passwords.yml", "auth.conf"):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / f).unlink()
        for d in (hosts_dir, self.state_dir):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.recorded = {}

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.state_dir)
