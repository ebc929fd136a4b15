"""The Nova lab's processes: how each control-plane service and nova-compute is started,
recorded (``pids/NAME.pid``; every service leads its own session, so pid = process group)
and found again.

A recorded pid counts as the lab's only while a process with that pid and the recorded
start time is alive (a pid reused by another program is never signalled).  Every service
runs with its HOME and working directory under the lab's state directory, and so does
whatever it forks: that finds a process whose pid file was lost (``lab_pids``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from planner.lab.nova_config import PORTS, ComputeSpec, NovaLabSpec
from planner.lab.process import (
    LabError,
    environ,
    pid_alive,
    reap,
    start_session,
    start_time,
    tail,
)

# Debian's python for the OpenStack services' own tools (a pyenv shim on PATH is not it)
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# the control plane, in start order (stopped in reverse); computes come after
CONTROL = ("mariadb", "epmd", "rabbitmq", "keystone", "glance-api", "placement",
           "neutron-server", "nova-api", "nova-conductor", "nova-scheduler")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    address: str | None  # where it listens, when it does
    log: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "running": self.running,
                "address": self.address, "log": self.log}


def _uwsgi(s: NovaLabSpec, port: int, wsgi: str, threads: int) -> list[str]:
    # --add-header "Connection: close": uwsgi's --http-socket closes connections without
    # saying so; keystoneauth reuses them and then fails with ConnectionResetError (placement
    # answers 503 "Keystone service is temporarily unavailable", server create fails).
    return ["/usr/bin/uwsgi", "--plugins", "python3", "--http-socket", f"{s.control}:{port}",
            "--wsgi-file", wsgi, "--master", "--processes", "1", "--threads", str(threads),
            "--enable-threads", "--lazy-apps", "--die-on-term", "--buffer-size", "65535",
            "--need-app", "--add-header", "Connection: close",
            # uwsgi's own state stays in the lab (its pid/cmdline must name the state dir)
            "--safe-pidfile", str(s.root / "run" / f"uwsgi-{port}.pid")]


def command(s: NovaLabSpec, name: str) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment of control-plane service ``name``."""
    etc, run = s.etc, s.root / "run"
    if name == "mariadb":
        return (["/usr/sbin/mariadbd", "--no-defaults", "--user=root",
                 f"--datadir={s.root / 'mysql'}", f"--socket={run / 'mysqld.sock'}",
                 f"--pid-file={run / 'mysqld.pid'}", f"--bind-address={s.control}",
                 f"--port={PORTS['mariadb']}", "--skip-log-bin", "--skip-name-resolve",
                 "--innodb-buffer-pool-size=64M", "--max-connections=1000",
                 "--character-set-server=utf8mb4", f"--log-error={s.log('mariadb-error')}"], {})
    if name == "epmd":
        # started by the lab in the foreground, so that its pid is the lab's to stop
        return (["/usr/bin/epmd", "-address", s.control, "-port", str(s.epmd_port)], {})
    if name == "rabbitmq":
        from planner.lab.nova_config import rabbitmq_env

        return (["/usr/lib/rabbitmq/bin/rabbitmq-server"], rabbitmq_env(s))
    if name == "keystone":
        return (_uwsgi(s, PORTS["keystone"], "/usr/bin/keystone-wsgi-public", 4),
                {"OS_KEYSTONE_CONFIG_DIR": str(etc / "keystone")})
    if name == "placement":
        return (_uwsgi(s, PORTS["placement"], "/usr/bin/placement-api", 4),
                {"OS_PLACEMENT_CONFIG_DIR": str(etc / "placement")})
    if name == "glance-api":
        return (["/usr/bin/glance-api", "--config-file", str(etc / "glance" / "glance-api.conf")],
                {})
    if name == "neutron-server":
        return (["/usr/bin/neutron-server", "--config-file", str(etc / "neutron" / "neutron.conf"),
                 "--config-file", str(etc / "neutron" / "ml2_conf.ini")], {})
    if name == "nova-api":
        # --threads 1 with heartbeat_in_pthread (nova-api.conf): RPC calls from the API work
        return (_uwsgi(s, PORTS["nova-api"], "/usr/bin/nova-api-wsgi", 1),
                {"OS_NOVA_CONFIG_DIR": str(etc / "nova"),
                 "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf;nova-api.conf"})
    if name in ("nova-conductor", "nova-scheduler"):
        return ([f"/usr/bin/{name}", "--config-file", str(etc / "nova" / "nova.conf"),
                 "--log-file", str(s.log(name))], {})
    raise LabError(f"unknown Nova lab service {name!r}")


def compute_command(s: NovaLabSpec, c: ComputeSpec, libvirtd_pid: int) -> list[str]:
    """nova-compute inside its lab host's mount namespace (where the host's own disk is
    mounted over the instances path), as on a real compute host."""
    etc = s.etc / "nova"
    return ["/usr/bin/nsenter", "-t", str(libvirtd_pid), "-m", "--", "/usr/bin/nova-compute",
            "--config-file", str(etc / "nova.conf"),
            "--config-file", str(etc / f"nova-compute-{c.name}.conf"),
            "--log-file", str(s.log(f"nova-compute-{c.name}"))]


def address(s: NovaLabSpec, name: str) -> str | None:
    if name == "epmd":
        return f"{s.control}:{s.epmd_port}"
    port = PORTS.get(name)
    return f"{s.control}:{port}" if port else None


class Services:
    """Start, find and list the lab's recorded processes (``root/pids/NAME.pid``)."""

    def __init__(self, spec: NovaLabSpec) -> None:
        self.spec = spec
        self.pids = spec.root / "pids"

    def pid(self, name: str) -> int | None:
        try:
            pid, started = map(int, (self.pids / f"{name}.pid").read_text().split())
        except (OSError, ValueError):
            return None
        reap(pid)
        return pid if pid_alive(pid) and start_time(pid) == started else None

    def recorded(self) -> list[str]:
        return sorted(p.stem for p in self.pids.glob("*.pid")) if self.pids.is_dir() else []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        if self.pid(name) is not None:
            return self.pid(name) or 0
        full_env = {"PATH": PATH, "HOME": str(self.spec.root), "LANG": "C.UTF-8", **env}
        proc = start_session(argv, self.spec.log(name), env=full_env, cwd=self.spec.root)
        self.pids.mkdir(parents=True, exist_ok=True)
        (self.pids / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")
        return proc.pid

    def status(self, name: str) -> ServiceStatus:
        pid = self.pid(name)
        return ServiceStatus(name, pid, pid is not None, address(self.spec, name),
                             str(self.spec.log(name)))

    def forget(self, name: str) -> None:
        (self.pids / f"{name}.pid").unlink(missing_ok=True)

    def died(self, name: str) -> LabError:
        log = self.spec.log(name)
        return LabError(f"{name} of the Nova lab exited while starting; last lines of {log}:\n"
                        f"{tail(log)}")

    def wait_port(self, name: str, timeout: float) -> None:
        host, port = self.spec.control, PORTS[name]
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                pass
            self._check(name, deadline, timeout, f"{host}:{port}")

    def wait_http(self, name: str, timeout: float) -> None:
        url = self.spec.url(name, "/")
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (keystone-protected roots answer 401/300)
            except OSError:
                pass
            self._check(name, deadline, timeout, url)

    def _check(self, name: str, deadline: float, timeout: float, where: str) -> None:
        if self.pid(name) is None:
            raise self.died(name)
        if time.monotonic() > deadline:
            raise LabError(f"{name} of the Nova lab does not answer at {where} after "
                           f"{timeout:.0f} s (the machine may be busy: try again); last lines "
                           f"of {self.spec.log(name)}:\n{tail(self.spec.log(name))}")
        time.sleep(0.5)


def _under(path: str, root: Path) -> bool:
    r = str(root)
    return path == r or path.startswith(r + "/")


def started_in(pid: int, root: Path) -> bool:
    """Whether the process runs with its HOME or its working directory under ``root``."""
    with contextlib.suppress(OSError):
        if _under(os.readlink(f"/proc/{pid}/cwd"), root):
            return True
    return any(_under(line[5:], root) for line in environ(pid).splitlines()
               if line.startswith("HOME="))


def _ancestors() -> set[int]:
    """This process and its parents (a shell whose cwd is the lab is not the lab's)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def lab_pids(root: Path) -> list[int]:
    """Live processes started by the Nova lab in ``root`` (see above), never this process or
    one of its parents."""
    mine = _ancestors()
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) not in mine and pid_alive(int(e.name))
            and started_in(int(e.name), root)]


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
