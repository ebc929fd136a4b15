"""A real OpenStack Nova (Zed, Debian 12's packages) beside the lab's libvirt hosts.

``NovaLab(state_dir).up()`` installs what is missing (``nova_packages``), starts the lab's
libvirt hosts (``planner.lab.Lab``, no plain guests), then MariaDB, RabbitMQ, keystone,
glance, placement, neutron-server, nova-api/conductor/scheduler on the control address
(default 127.0.0.1, every service bound there only) and one nova-compute per lab host,
whose ``[DEFAULT] host`` is the lab host's name (lab1, lab2, ...).  It uploads a tiny image,
creates flavor ``m1.lab``, boots the servers, and writes ``clouds.yaml`` (cloud
``migplan-lab``, with the lab's host -> libvirt URI mapping under ``migplan:``).

Storage: one ``instances_path`` for every compute (Nova writes it into the domain XML and
never rewrites it on migration), but each host has its own disk behind it: in labN's
libvirtd mount namespace the instances path is a bind mount of ``hostdisk/labN``, and
nova-compute-labN runs in that same namespace (``nsenter -m``), as on a real host.  Nova's
shared-storage probe then says "not shared" and live migrations are block migrations
(libvirt 9.0 refuses a plain live migration of a local file disk as unsafe).

Everything lives in ``state_dir/nova``; ``down()`` stops every process it started by its
process group, destroys Nova's guests, and removes that directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from planner.lab import Lab, LabError, kvm_usable, virsh
from planner.lab import nova_config as cfg
from planner.lab.nova_packages import install_missing
from planner.lab.nova_services import (
    CONTROL,
    PATH,
    Services,
    ServiceStatus,
    command,
    compute_command,
    lab_pids,
    write_if_changed,
)
from planner.lab.process import locked, stop_groups, tail

CLOUD = "migplan-lab"
FLAVOR = ("m1.lab", 128, 1, 1)  # name, MiB, vCPUs, GB
IMAGE = "tiny"
READY_TIMEOUT = 300.0  # per service; the machine is shared, Nova's Python starts slowly
COMPUTE_TIMEOUT = 600.0
BOOT_TIMEOUT = 600.0
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ComputeStatus:
    host: str  # lab1
    pid: int | None
    running: bool
    state: str | None  # Nova's view: up | down (None: Nova not asked or not answering)
    status: str | None  # enabled | disabled

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "pid": self.pid, "running": self.running,
                "state": self.state, "status": self.status}


def _check_loopback(address: str) -> str:
    parts = address.split(".")
    if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() and int(p) < 256
                                                       for p in parts):
        raise LabError(f"control address {address!r}: the Nova lab uses loopback addresses "
                       "only (127.0.0.0/8), e.g. 127.0.0.1")
    return address


class NovaLab:
    """The Nova control plane and computes of the lab in ``state_dir`` (see the module doc)."""

    def __init__(self, state_dir: Path | str | None = None, hosts: int | None = None,
                 guests: int | None = None, first_ip: int | None = None,
                 accel: str | None = None, control: str | None = None) -> None:
        self.lab = Lab(state_dir, hosts=hosts, guests=0, first_ip=first_ip, accel=accel)
        self.root = self.lab.state_dir / "nova"
        rec = self.recorded = self._read_record()
        self.control = _check_loopback(control or rec.get("control") or "127.0.0.1")
        self.n_servers = guests if guests is not None else int(rec.get("servers_per_host", 1))
        self._password = rec.get("password")

    # ---- naming -----------------------------------------------------------------------------

    @property
    def clouds_yaml(self) -> Path:
        """In the lab's state directory itself (beside lab.json), where operators look."""
        return self.lab.state_dir / "clouds.yaml"

    def spec(self) -> cfg.NovaLabSpec:
        virt = "kvm" if self.lab.accel == "kvm" and kvm_usable() else "qemu"
        computes = tuple(cfg.ComputeSpec(h.name, h.address, h.uri) for h in self.lab.hosts)
        if any(c.address == self.control for c in computes):
            raise LabError(f"control address {self.control} is also a lab host's address: "
                           "choose another --control-ip or --first-ip")
        return cfg.NovaLabSpec(self.root, self.control, self._password or "", virt, computes)

    def server_names(self, host: str) -> list[str]:
        return [f"{host}-vm{j}" for j in range(1, self.n_servers + 1)]

    # ---- up ---------------------------------------------------------------------------------

    def up(self, progress: ProgressFn | None = None) -> list[ServiceStatus]:
        say = progress or (lambda _m: None)
        t0 = time.monotonic()

        def step(msg: str) -> None:
            say(f"[{time.monotonic() - t0:5.1f} s] {msg}")

        installed = install_missing(self.root / "log" / "apt.log", step)
        if installed:
            step(f"installed {len(installed)} Debian packages")
        self.lab.up(progress=step)
        with self._locked():
            if not self._password:
                self._password = secrets.token_urlsafe(18)
            spec = self.spec()
            self._save_record(spec)
            svc = Services(spec)
            self._write_configs(spec)
            self._start_databases(spec, svc, step)
            self._start_identity(spec, svc, step)
            self._start_apis(spec, svc, step)
            self._start_computes(spec, svc, step)
            self._seed(spec, step)
            self._write_clouds_yaml(spec)
            step(f"Nova lab up; clouds.yaml: {self.clouds_yaml}")
        return self.services()

    def _write_configs(self, s: cfg.NovaLabSpec) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)  # passwords in the service configs
        for d in ("pids", "log", "run", "state/glance/images", "state/glance/staging",
                  "state/glance/tasks", "state/nova", "state/neutron", "instances"):
            (s.root / d).mkdir(parents=True, exist_ok=True)
        files: dict[str, cfg.Sections] = {
            "keystone/keystone.conf": cfg.keystone_conf(s),
            "placement/placement.conf": cfg.placement_conf(s),
            "glance/glance-api.conf": cfg.glance_conf(s),
            "neutron/neutron.conf": cfg.neutron_conf(s), "neutron/ml2_conf.ini": cfg.ml2_conf(s),
            "nova/nova.conf": cfg.nova_conf(s), "nova/nova-api.conf": cfg.nova_api_conf(s)}
        for c in s.computes:
            files[f"nova/nova-compute-{c.name}.conf"] = cfg.compute_conf(s, c)
            (s.root / "state" / f"nova-{c.name}").mkdir(parents=True, exist_ok=True)
            (s.root / "hostdisk" / c.name).mkdir(parents=True, exist_ok=True)
        for rel, sections in files.items():
            write_if_changed(s.etc / rel, cfg.render(sections))
        # the packages' own paste pipelines, unchanged
        for src, rel in (("/etc/glance/glance-api-paste.ini", "glance/glance-api-paste.ini"),
                         ("/etc/neutron/api-paste.ini", "neutron/api-paste.ini"),
                         ("/etc/nova/api-paste.ini", "nova/api-paste.ini")):
            shutil.copyfile(src, s.etc / rel)
        r = s.root / "rabbitmq"
        (r / "mnesia").mkdir(parents=True, exist_ok=True)
        cookie = r / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        write_if_changed(r / "enabled_plugins", "[].\n")
        write_if_changed(r / "rabbitmq.conf", cfg.rabbitmq_conf(s))

    def _run(self, argv: list[str], what: str, timeout: float = 900.0) -> str:
        """A setup tool (db sync, keystone-manage...), its output in log/setup.log."""
        log = self.root / "log" / "setup.log"
        env = {"PATH": PATH, "HOME": str(self.root), "LANG": "C.UTF-8"}
        try:
            r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                               cwd=self.root, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LabError(f"{what}: `{' '.join(argv[:3])} ...` did not finish in "
                           f"{timeout:.0f} s; see {log}") from None
        with open(log, "a") as f:
            f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}")
        if r.returncode != 0:
            raise LabError(f"{what} failed (exit {r.returncode}); last lines of {log}:\n"
                           f"{tail(log)}")
        return r.stdout

    def _once(self, marker: str, fn: Callable[[], Any]) -> None:
        done = self.root / "state" / f".{marker}.done"
        if not done.exists():
            fn()
            done.write_text("")

    def _start(self, svc: Services, name: str) -> None:
        argv, env = command(svc.spec, name)
        svc.start(name, argv, env)

    def _start_databases(self, s: cfg.NovaLabSpec, svc: Services, step: ProgressFn) -> None:
        if not (s.root / "mysql" / "mysql").is_dir():
            (s.root / "mysql").mkdir(exist_ok=True)
            self._run(["mariadb-install-db", "--no-defaults", "--user=root",
                       f"--datadir={s.root / 'mysql'}",
                       "--auth-root-authentication-method=socket"], "mariadb-install-db")
        self._start(svc, "mariadb")
        svc.wait_port("mariadb", READY_TIMEOUT)
        sql = "".join(f"CREATE DATABASE IF NOT EXISTS {db};" for db in cfg.DATABASES)
        sql += (f"CREATE USER IF NOT EXISTS 'openstack'@'%' IDENTIFIED BY '{s.password}';"
                "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%'; FLUSH PRIVILEGES;")
        self._run(["mariadb", "--no-defaults", "-uroot",
                   f"--socket={s.root / 'run' / 'mysqld.sock'}", "-e", sql], "create databases")
        step(f"mariadb ready on {s.control}:{cfg.PORTS['mariadb']}")
        self._start(svc, "epmd")
        self._start(svc, "rabbitmq")
        svc.wait_port("rabbitmq", READY_TIMEOUT)
        step(f"rabbitmq ready on {s.control}:{cfg.PORTS['rabbitmq']} (epmd {s.epmd_port})")

    def _start_identity(self, s: cfg.NovaLabSpec, svc: Services, step: ProgressFn) -> None:
        km = ["keystone-manage", "--config-file", str(s.etc / "keystone" / "keystone.conf")]
        url = s.url("keystone", "/v3/")

        def bootstrap() -> None:
            self._run([*km, "db_sync"], "keystone db_sync")
            for what in ("fernet_setup", "credential_setup"):
                self._run([*km, what, "--keystone-user", "root", "--keystone-group", "root"],
                          f"keystone {what}")
            self._run([*km, "bootstrap", "--bootstrap-password", s.password,
                       "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
                       "--bootstrap-public-url", url, "--bootstrap-region-id", cfg.REGION],
                      "keystone bootstrap")

        self._once("keystone", bootstrap)
        self._start(svc, "keystone")
        svc.wait_http("keystone", READY_TIMEOUT)
        step(f"keystone ready at {s.url('keystone', '/v3')}")
        endpoints = [("nova", "compute", s.url("nova-api", "/v2.1")),
                     ("placement", "placement", s.url("placement")),
                     ("glance", "image", s.url("glance-api")),
                     ("neutron", "network", s.url("neutron-server"))]
        self._once("registered", lambda: self._admin(s).register_services(
            s.password, cfg.SERVICE_USERS, endpoints, cfg.REGION))

    def _admin(self, s: cfg.NovaLabSpec) -> Any:
        from planner.adapters.nova import admin_cloud  # the one module importing the SDK

        return admin_cloud(s.url("keystone", "/v3"), s.password, cfg.REGION)

    def _start_apis(self, s: cfg.NovaLabSpec, svc: Services, step: ProgressFn) -> None:
        g = ["--config-file", str(s.etc / "glance" / "glance-api.conf")]
        self._once("glance", lambda: self._run(["glance-manage", *g, "db_sync"],
                                               "glance db_sync"))
        p = ["--config-file", str(s.etc / "placement" / "placement.conf")]
        self._once("placement", lambda: self._run(["placement-manage", *p, "db", "sync"],
                                                  "placement db sync"))
        n = ["--config-file", str(s.etc / "neutron" / "neutron.conf"),
             "--config-file", str(s.etc / "neutron" / "ml2_conf.ini")]
        self._once("neutron", lambda: self._run(["neutron-db-manage", *n, "upgrade", "heads"],
                                                "neutron-db-manage upgrade"))
        nm = ["nova-manage", "--config-file", str(s.etc / "nova" / "nova.conf")]

        def nova_db() -> None:
            self._run([*nm, "api_db", "sync"], "nova-manage api_db sync")
            self._run([*nm, "cell_v2", "map_cell0"], "nova-manage cell_v2 map_cell0")
            if " cell1 " not in self._run([*nm, "cell_v2", "list_cells"], "list cells"):
                self._run([*nm, "cell_v2", "create_cell", "--name=cell1"], "create cell1")
            self._run([*nm, "db", "sync"], "nova-manage db sync")

        self._once("nova", nova_db)
        for name in ("glance-api", "placement", "neutron-server", "nova-api", "nova-conductor",
                     "nova-scheduler"):
            self._start(svc, name)
        for name in ("glance-api", "placement", "neutron-server", "nova-api"):
            svc.wait_http(name, READY_TIMEOUT)
            step(f"{name} ready at {s.url(name)}")
        # Neutron 21.0.0: the first GET /v2.0/ports of a fresh API worker answers 500
        # (AttributeError Port.port_forwardings) until another query has configured the
        # SQLAlchemy mappers; Nova's GET /servers/{id} asks for ports.
        self._admin(s).list_networks()

    def _start_computes(self, s: cfg.NovaLabSpec, svc: Services, step: ProgressFn) -> None:
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        pids = {h.name: h.pid for h in self.lab.status()}
        for c in s.computes:
            lpid = pids.get(c.name)
            if lpid is None:
                raise LabError(f"lab host {c.name} is not running: cannot start its nova-compute")
            name = f"nova-compute-{c.name}"
            if svc.pid(name) is not None:
                continue
            # the host's own disk over the shared instances path, in its namespace only
            self._run(["nsenter", "-t", str(lpid), "-m", "--", "sh", "-c",
                       f"mountpoint -q '{s.instances}' || "
                       f"mount --bind '{s.root / 'hostdisk' / c.name}' '{s.instances}'"],
                      f"mount {c.name}'s instances")
            svc.start(name, compute_command(s, c, lpid), {})
        self._wait_computes(s, svc, since)
        nm = ["nova-manage", "--config-file", str(s.etc / "nova" / "nova.conf")]
        self._run([*nm, "cell_v2", "discover_hosts", "--verbose"], "discover hosts")
        step(f"nova-compute up on {', '.join(c.name for c in s.computes)}")

    def _wait_computes(self, s: cfg.NovaLabSpec, svc: Services, since: str) -> None:
        """Up = every process alive and its service reporting after this start (Nova shows a
        dead compute "up" for about a minute)."""
        cloud = self._admin(s)
        deadline = time.monotonic() + COMPUTE_TIMEOUT
        want = {c.name for c in s.computes}
        while True:
            for c in s.computes:
                if svc.pid(f"nova-compute-{c.name}") is None:
                    raise svc.died(f"nova-compute-{c.name}")
            up = {x.host for x in cloud.services()
                  if x.state == "up" and (x.updated_at or "") >= since}
            if want <= up:
                return
            if time.monotonic() > deadline:
                raise LabError(f"nova-compute not up after {COMPUTE_TIMEOUT:.0f} s on "
                               f"{', '.join(sorted(want - up))}; see {s.root / 'log'}")
            time.sleep(3)

    def _seed(self, s: cfg.NovaLabSpec, step: ProgressFn) -> None:
        cloud = self._admin(s)
        flavor = cloud.ensure_flavor(*FLAVOR)
        raw = s.root / "run" / "tiny.raw"
        if not raw.exists():
            with open(raw, "wb") as f:
                f.truncate(1 << 20)  # 1 MiB of zeros: a disk the diskless guests never read
        image = cloud.ensure_image(IMAGE, str(raw))
        ids = [cloud.boot(n, flavor, image, c.name) for c in s.computes
               for n in self.server_names(c.name)]
        if ids:
            done = cloud.wait_active(ids, BOOT_TIMEOUT)
            step(f"servers ACTIVE: {', '.join(f'{x.name} on {x.host}' for x in done)}")

    def _write_clouds_yaml(self, s: cfg.NovaLabSpec) -> None:
        doc = {"clouds": {CLOUD: {
            "auth": {"auth_url": s.url("keystone", "/v3"), "username": "admin",
                     "password": s.password, "project_name": "admin",
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": cfg.REGION, "identity_api_version": 3, "interface": "public",
            # migplan's own key: how `collect --os-cloud` reaches each compute's libvirt
            "migplan": {"libvirt_uris": {c.name: c.uri for c in s.computes}},
        }}}
        tmp = self.clouds_yaml.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        tmp.replace(self.clouds_yaml)

    # ---- status -----------------------------------------------------------------------------

    def running(self) -> bool:
        return bool(self.recorded)

    def services(self) -> list[ServiceStatus]:
        """Every control-plane service and nova-compute of the lab: pid, running or not."""
        if not self.recorded:
            return []
        svc = Services(self.spec())
        names = [*CONTROL, *(f"nova-compute-{h.name}" for h in self.lab.hosts)]
        return [svc.status(n) for n in names]

    def computes(self) -> list[ComputeStatus]:
        """Each nova-compute's process and what Nova says of its service (when it answers)."""
        if not self.recorded:
            return []
        s = self.spec()
        svc = Services(s)
        nova: dict[str, Any] = {}
        if svc.pid("keystone") is not None and svc.pid("nova-api") is not None:
            with contextlib.suppress(Exception):  # status reports; it never fails on Nova
                nova = {x.host: x for x in self._admin(s).services()}
        out = []
        for c in s.computes:
            pid = svc.pid(f"nova-compute-{c.name}")
            n = nova.get(c.name)
            out.append(ComputeStatus(c.name, pid, pid is not None, n.state if n else None,
                                     n.status if n else None))
        return out

    # ---- down -------------------------------------------------------------------------------

    def down(self, progress: ProgressFn | None = None) -> None:
        """Stop computes, destroy Nova's guests, stop the control plane, the lab's hosts, and
        remove the Nova lab's state; then check that no process of it is left."""
        say = progress or (lambda _m: None)
        if self.root.exists():
            with self._locked():
                spec = self.spec()
                svc = Services(spec)
                computes = [f"nova-compute-{c.name}" for c in spec.computes]
                self._stop(svc, [n for n in svc.recorded() if n.startswith("nova-compute-")]
                           + computes, say)
                self._destroy_guests(spec, say)
                self._stop(svc, [n for n in reversed(CONTROL)], say)
                self._stop(svc, svc.recorded(), say)  # anything else recorded
        self.lab.down(progress=say)
        self._sweep()
        if self.root.exists():
            shutil.rmtree(self.root)
        self.clouds_yaml.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.lab.state_dir.rmdir()  # the lab removed its own files before
        self.recorded = {}

    def _stop(self, svc: Services, names: list[str], say: ProgressFn) -> None:
        pids = {n: svc.pid(n) for n in names}
        groups = [p for p in pids.values() if p is not None]
        if groups:
            stop_groups(groups)
            say(f"stopped {', '.join(f'{n} ({p})' for n, p in pids.items() if p)}")
        for n in names:
            svc.forget(n)

    def _destroy_guests(self, s: cfg.NovaLabSpec, say: ProgressFn) -> None:
        for h in self.lab.status():
            if not h.running:
                continue
            for g in h.guests:
                if g.name.startswith("instance-"):
                    virsh(h.uri, "destroy", g.name, check=False, timeout=60)
                    virsh(h.uri, "undefine", "--nvram", g.name, check=False, timeout=60)
                    say(f"destroyed Nova guest {g.name} on {h.name}")
            if h.pid is not None:
                subprocess.run(["nsenter", "-t", str(h.pid), "-m", "--", "umount", "-l",
                                str(s.instances)], capture_output=True, timeout=60)

    def _sweep(self) -> None:
        """Whatever still runs with its HOME or working directory in the Nova lab's state
        directory (a process whose pid file was lost) was started by it: stop it too."""
        groups = set()
        for p in lab_pids(self.root):
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(p))
        if groups:
            stop_groups(sorted(groups))

    # ---- record -----------------------------------------------------------------------------

    def _read_record(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "nova-lab.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_record(self, s: cfg.NovaLabSpec) -> None:
        data = {"control": s.control, "password": s.password, "virt_type": s.virt_type,
                "servers_per_host": self.n_servers, "epmd_port": s.epmd_port,
                "computes": [{"host": c.name, "address": c.address, "uri": c.uri}
                             for c in s.computes]}
        tmp = self.root / "nova-lab.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        tmp.replace(self.root / "nova-lab.json")
        self.recorded = data

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        return locked(self.root)

