"""Moves through Nova, proven on a real Nova (the session's Nova lab: OpenStack Zed, 2 hosts).

`migplan migrate ... --os-cloud` and `migplan drain ... --os-cloud` run as processes; what
happened is always read independently of migplan: Nova's API through openstacksdk (the
server's host, status and task, its migration records) and both hosts' libvirt through
virsh.  Every test leaves the lab as it found it: servers on their home hosts, computes
enabled and on their own config, Nova and libvirt agreeing.

A migration that lasts (for the abort tests) needs a server with real memory to send and a
slow stream: `dirty-vm` boots an image whose boot sector rewrites its RAM forever
(tests/nova_lab.py ``dirty_boot_image``), and once Nova's migration job runs on the source
the test slows it to 1 MiB/s with libvirt's own `virsh migrate-setspeed`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli
from nova_lab import dirty_boot_image, restart_compute

pytestmark = [pytest.mark.lab, pytest.mark.nova]

CLOUD = "migplan-lab"
WAIT = 600.0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def conn(nova_lab):
    """Nova's API as an operator's tools see it (openstacksdk, the lab's clouds.yaml)."""
    import openstack

    region = openstack.config.OpenStackConfig(
        config_files=[str(nova_lab.clouds_yaml)]).get_one(cloud=CLOUD)
    c = openstack.connection.Connection(config=region)
    yield c
    c.close()


def env(nl) -> dict[str, str]:
    return {"OS_CLIENT_CONFIG_FILE": str(nl.clouds_yaml), "MIGPLAN_LAB_DIR": str(nl.lab.state_dir)}


def migplan(nl, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    r = run_cli(*args, env=env(nl), timeout=timeout)
    password = nl.recorded.get("password") or "?"
    assert password not in r.stdout + r.stderr, "the lab's password appears in migplan's output"
    return r


def virsh(uri: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 or not check, r.stderr
    return r


def libvirt_where(nl, instance: str) -> dict[str, tuple[str, bool]]:
    """host -> (state, persistent) for every lab host whose libvirt has ``instance``."""
    out = {}
    for name, uri in nl.lab.uris().items():
        r = virsh(uri, "dominfo", instance, check=False)
        if r.returncode == 0:
            info = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
            out[name] = (info["State"].strip(), info["Persistent"].strip() == "yes")
    return out


def server(conn, name: str):
    return conn.compute.find_server(name, ignore_missing=False, details=True, all_projects=True)


def assert_on(conn, nl, name: str, host: str) -> None:
    """Nova: ACTIVE on ``host``, no task; libvirt: running, persistent there and only there."""
    s = server(conn, name)
    assert (s.compute_host, s.status, s.task_state) == (host, "ACTIVE", None), \
        (name, s.compute_host, s.status, s.task_state)
    assert libvirt_where(nl, s.instance_name) == {host: ("running", True)}, name


def last_migration(conn, name: str) -> dict:
    s = server(conn, name)
    migs = conn.compute.get(f"/os-migrations?instance_uuid={s.id}",
                            microversion="2.80").json()["migrations"]
    return max((m for m in migs if m["migration_type"] == "live-migration"),
               key=lambda m: m["id"])


def wait_settled(conn, name: str) -> None:
    deadline = time.monotonic() + WAIT
    while server(conn, name).task_state:
        assert time.monotonic() < deadline, f"{name} still busy after {WAIT:.0f} s"
        time.sleep(2)


def nova_live_migrate(conn, name: str, dest: str) -> None:
    """Move a server with Nova's API directly (not migplan), and wait for the end."""
    s = server(conn, name)
    conn.compute.post(f"/servers/{s.id}/action", microversion="2.80",
                      json={"os-migrateLive": {"host": dest, "block_migration": "auto"}})
    deadline = time.monotonic() + WAIT
    while True:
        s = server(conn, name)
        if s.compute_host == dest and not s.task_state:
            return
        assert time.monotonic() < deadline, f"{name} not on {dest} after {WAIT:.0f} s"
        time.sleep(2)


def home(conn, nl, name: str, host: str) -> None:
    """Put a server back on its home host (through Nova's API) if a test moved it."""
    wait_settled(conn, name)
    if server(conn, name).compute_host != host:
        nova_live_migrate(conn, name, host)
    assert_on(conn, nl, name, host)


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- a feasible move --------------------------------------------------------------------------


def test_a_feasible_move_goes_through_nova_and_nova_and_libvirt_agree_after_it(nova_lab, conn):
    before = last_migration(conn, "lab1-vm1")["id"] if _has_migrations(conn, "lab1-vm1") else 0
    plan = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", CLOUD, "--dry-run",
                   "--format", "json")
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)["plan"]
    assert doc["via"] == "nova" and doc["nova"]["request"] == {
        "os-migrateLive": {"host": "lab2", "block_migration": "auto"}}
    try:
        r = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", CLOUD)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("migrated: server lab1-vm1")
        assert_on(conn, nova_lab, "lab1-vm1", "lab2")
        m = last_migration(conn, "lab1-vm1")
        assert m["id"] > before and (m["status"], m["dest_compute"]) == ("completed", "lab2")
        # back home by the server's UUID, then by its libvirt name
        uuid, instance = server(conn, "lab1-vm1").id, server(conn, "lab1-vm1").instance_name
        r = migplan(nova_lab, "migrate", uuid, "lab1", "--os-cloud", CLOUD, "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["outcome"]["hosts"]["nova"]["host"] == "lab1"
        assert_on(conn, nova_lab, "lab1-vm1", "lab1")
        r = migplan(nova_lab, "migrate", instance, "lab2", "--os-cloud", CLOUD)
        assert r.returncode == 0, r.stderr
        assert_on(conn, nova_lab, "lab1-vm1", "lab2")
    finally:
        home(conn, nova_lab, "lab1-vm1", "lab1")


def _has_migrations(conn, name: str) -> bool:
    s = server(conn, name)
    return bool(conn.compute.get(f"/os-migrations?instance_uuid={s.id}",
                                 microversion="2.80").json()["migrations"])


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, code, message", [
    (("migrate", "no-such-server", "lab2"), 2, "unknown server 'no-such-server' in cloud"),
    (("migrate", "lab1-vm1", "lab9"), 2, "unknown destination 'lab9'"),
    (("migrate", "lab1-vm1", "lab1"), 2, "already is on lab1"),
    (("migrate", "lab1-vm1", "lab2", "--bandwidth", "10"), 2, "--bandwidth: not for a move "
                                                               "through Nova"),
    (("drain", "lab9"), 2, "unknown host 'lab9'"),
])
def test_bad_input_is_one_error_line_with_its_exit_code_and_nothing_moves(nova_lab, conn, args,
                                                                          code, message):
    r = migplan(nova_lab, *args, "--os-cloud", CLOUD)
    assert r.returncode == code and message in one_line_error(r), r.stderr
    assert_on(conn, nova_lab, "lab1-vm1", "lab1")


def test_an_unknown_cloud_is_a_usage_error(nova_lab):
    r = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", "no-such-cloud")
    assert r.returncode == 2 and "--os-cloud no-such-cloud" in one_line_error(r)


# ---- Nova refusing -----------------------------------------------------------------------------


def test_a_disabled_destination_is_refused_by_migplan_and_when_forced_by_nova(nova_lab, conn):
    svc = next(s for s in conn.compute.services(binary="nova-compute") if s.host == "lab2")
    conn.compute.disable_service(svc, host="lab2", binary="nova-compute",
                                 disabled_reason="test: maintenance")
    try:
        r = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", CLOUD)
        assert r.returncode == 3
        assert "[nova-service.disabled] nova-compute on lab2 is disabled (test: maintenance)" \
            in one_line_error(r)
        r = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", CLOUD, "--force")
        # Nova answered 202, then its scheduler refused: the record says error, the action why
        assert r.returncode == 3, r.stdout + r.stderr
        assert "Nova said: " in r.stdout and "No valid host was found" in one_line_error(r)
        assert last_migration(conn, "lab1-vm1")["status"] == "error"
        assert_on(conn, nova_lab, "lab1-vm1", "lab1")
    finally:
        conn.compute.enable_service(svc, host="lab2", binary="nova-compute")


@pytest.fixture
def tcg_server(nova_lab, conn):
    """NOVA-LAB's "failed pre-check": lab1's nova-compute on virt_type qemu with the custom
    CPU model EPYC (which the KVM host lab2 cannot run), and a server booted there."""
    restart_compute(nova_lab, "lab1", "[libvirt]\nvirt_type = qemu\ncpu_mode = custom\n"
                                      "cpu_models = EPYC\ncpu_model_extra_flags =\n")
    s = None
    try:
        s = _boot(conn, "tcg-vm", "tiny", "lab1")
        yield s
    finally:
        if s is not None:
            conn.compute.delete_server(s)
            conn.compute.wait_for_delete(s, wait=WAIT)
        restart_compute(nova_lab, "lab1", None)


def _boot(conn, name: str, image: str, host: str):
    img = conn.image.find_image(image, ignore_missing=False)
    flavor = conn.compute.find_flavor("m1.lab", ignore_missing=False)
    s = conn.compute.create_server(name=name, flavor_id=flavor.id, image_id=img.id,
                                   networks="none", availability_zone=f"nova:{host}")
    return conn.compute.wait_for_server(s, wait=WAIT)


def test_a_move_nova_s_pre_check_refuses_is_reported_with_nova_s_reason(nova_lab, conn,
                                                                        tcg_server):
    # migplan predicts it: lab2 cannot run the guest's EPYC CPU
    r = migplan(nova_lab, "migrate", "tcg-vm", "lab2", "--os-cloud", CLOUD)
    assert r.returncode == 3 and "cpu-features.missing" in one_line_error(r)
    # forced past migplan's pre-flight, Nova refuses it after its 202, in lab2's pre-check
    r = migplan(nova_lab, "migrate", "tcg-vm", "lab2", "--os-cloud", CLOUD, "--force")
    assert r.returncode == 3, r.stdout + r.stderr
    line = one_line_error(r)
    assert line.startswith("Error: Nova refused to migrate server tcg-vm")
    assert "lab2: compute_check_can_live_migrate_destination: Migration pre-check error: " \
           "Unacceptable CPU info: CPU doesn't have compatibility" in line
    assert last_migration(conn, "tcg-vm")["status"] == "error"
    assert_on(conn, nova_lab, "tcg-vm", "lab1")


# ---- servers Nova will not move ------------------------------------------------------------


def test_a_server_in_error_is_skipped_with_its_reason(nova_lab, conn):
    s = server(conn, "lab1-vm1")
    conn.compute.reset_server_state(s, "error")
    try:
        r = migplan(nova_lab, "drain", "lab1", "--os-cloud", CLOUD)
        assert r.returncode == 3
        assert "skipped instance-" in r.stdout and "(lab1-vm1): [nova-server.error]" in r.stdout
        r = migplan(nova_lab, "migrate", "lab1-vm1", "lab2", "--os-cloud", CLOUD)
        assert r.returncode == 3 and "[nova-server.error]" in one_line_error(r)
    finally:
        conn.compute.reset_server_state(s, "active")
    assert_on(conn, nova_lab, "lab1-vm1", "lab1")


# ---- drain ------------------------------------------------------------------------------------


@pytest.fixture
def second_server(nova_lab, conn):
    """A second server on lab1 (the lab boots one per host), so that a drain has two."""
    s = _boot(conn, "lab1-vm2", "tiny", "lab1")
    yield s
    conn.compute.delete_server(s)
    conn.compute.wait_for_delete(s, wait=WAIT)


def test_drain_disables_the_service_moves_every_server_and_nova_and_libvirt_agree(
        nova_lab, conn, second_server):
    on_lab1 = sorted(s.name for s in conn.compute.servers(details=True, all_projects=True)
                     if s.compute_host == "lab1")
    assert on_lab1 == ["lab1-vm1", "lab1-vm2"]
    svc = next(s for s in conn.compute.services(binary="nova-compute") if s.host == "lab1")
    try:
        r = migplan(nova_lab, "drain", "lab1", "--os-cloud", CLOUD, "--execute",
                    "--disable-service", "--disable-reason", "test: drained by migplan")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "nova-compute on lab1 disabled: test: drained by migplan" in r.stderr
        svc = next(s for s in conn.compute.services(binary="nova-compute") if s.host == "lab1")
        assert (svc.status, svc.disabled_reason) == ("disabled", "test: drained by migplan")
        for s in conn.compute.servers(details=True, all_projects=True):
            assert_on(conn, nova_lab, s.name, "lab2")  # every server: Nova and libvirt agree
        assert f"summary: {len(on_lab1)} migrated, 0 failed" in r.stdout
    finally:
        conn.compute.enable_service(svc, host="lab1", binary="nova-compute")
        wait_settled(conn, "lab1-vm2")  # deleted by its fixture wherever it is
        home(conn, nova_lab, "lab1-vm1", "lab1")


# ---- libvirt moves of a guest Nova manages -------------------------------------------------


def test_a_libvirt_move_of_a_nova_server_is_refused_unless_force_libvirt(nova_lab, conn):
    s = server(conn, "lab2-vm1")
    r = migplan(nova_lab, "migrate", s.instance_name, "lab1", "--lab")
    assert r.returncode == 3
    line = one_line_error(r)
    assert f"{s.instance_name} is server lab2-vm1 ({s.id}) that Nova manages" in line
    assert "--os-cloud NAME" in line and "--force-libvirt" in line
    for name in ("lab2-vm1", s.id):  # the server's name and UUID find the same domain
        r = migplan(nova_lab, "migrate", name, "lab1", "--lab")
        assert r.returncode == 3 and "that Nova manages" in one_line_error(r)
    assert_on(conn, nova_lab, "lab2-vm1", "lab2")
    r = migplan(nova_lab, "drain", "lab2", "--lab")
    assert r.returncode == 3 and "[libvirt-direct.nova-managed]" in r.stdout
    # Forced: what Nova's pre_live_migration would have made on lab1 (the instance's
    # directory, its disk over the image cached in _base), then libvirt moves it
    _precreate_disk(nova_lab, s, "lab2", "lab1")
    try:
        r = migplan(nova_lab, "migrate", s.instance_name, "lab1", "--lab", "--force-libvirt")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Nova was not told" in r.stderr
        assert libvirt_where(nova_lab, s.instance_name) == {"lab1": ("running", True)}
        assert server(conn, "lab2-vm1").compute_host == "lab2"  # Nova was not told indeed
    finally:
        r = migplan(nova_lab, "migrate", s.instance_name, "lab2", "--lab", "--force-libvirt")
        _remove_instance_dir(nova_lab, s, "lab1")
    assert r.returncode == 0, r.stderr
    assert_on(conn, nova_lab, "lab2-vm1", "lab2")


def _in_host(nl, host: str, script: str) -> None:
    pid = next(h.pid for h in nl.lab.status() if h.name == host)
    subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "sh", "-c", script], check=True,
                   timeout=120)


def _precreate_disk(nl, s, src: str, dst: str) -> None:
    inst = nl.spec().instances
    r = virsh(nl.lab.uris()[src], "dumpxml", s.instance_name)
    base = re.search(r"<backingStore type='file'[^>]*>\s*<format type='raw'/>\s*"
                     r"<source file='([^']+)'", r.stdout)
    assert base, "no backing file in the domain XML"
    disk = Path(inst) / s.id / "disk"
    _in_host(nl, dst, f"mkdir -p '{disk.parent}' && test -e '{base.group(1)}' && "
                      f"qemu-img create -q -f qcow2 -F raw -b '{base.group(1)}' '{disk}' 1G")


def _remove_instance_dir(nl, s, host: str) -> None:
    _in_host(nl, host, f"rm -rf '{Path(nl.spec().instances) / s.id}'")


# ---- aborts: Ctrl-C and --timeout ------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty(nova_lab, conn, tmp_path_factory):
    """Server dirty-vm on lab1, rewriting its RAM forever (removed after the module)."""
    raw = dirty_boot_image(tmp_path_factory.mktemp("dirty") / "dirty.raw")
    img = conn.image.create_image(name="dirty", filename=str(raw), disk_format="raw",
                                  container_format="bare", visibility="public", wait=True)
    s = None
    try:
        s = _boot(conn, "dirty-vm", "dirty", "lab1")
        _wait_memory_touched(nova_lab.lab.uris()["lab1"], s.instance_name, 100 * 1024)
        yield s
    finally:
        if s is not None:
            conn.compute.delete_server(s)
            conn.compute.wait_for_delete(s, wait=WAIT)
        conn.image.delete_image(img)


def _wait_memory_touched(uri: str, instance: str, kib: int) -> None:
    """Until QEMU's resident memory says the guest wrote ``kib`` of its RAM (its boot
    sector has run: before that its pages are zero, which QEMU sends for nothing)."""
    deadline = time.monotonic() + WAIT
    while True:
        stats = dict(line.split() for line in virsh(uri, "dommemstat", instance).stdout
                     .splitlines() if len(line.split()) == 2)
        if int(stats.get("rss", 0)) >= kib:
            return
        assert time.monotonic() < deadline, f"{instance} never touched its memory: {stats}"
        time.sleep(1)


class Throttle(threading.Thread):
    """As soon as ``instance`` has a migration job on ``uri`` (Nova's), slow it to 1 MiB/s
    with libvirt's virsh migrate-setspeed, so that it lasts."""

    def __init__(self, uri: str, instance: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.instance = uri, instance
        self.done = threading.Event()
        self.quit = threading.Event()

    def run(self) -> None:
        while not self.quit.is_set():
            r = virsh(self.uri, "domjobinfo", self.instance, check=False)
            if "Unbounded" in r.stdout:
                virsh(self.uri, "migrate-setspeed", self.instance, "--bandwidth", "1")
                self.done.set()
                return
            time.sleep(0.1)

    def wait(self, timeout: float = WAIT) -> None:
        assert self.done.wait(timeout), "Nova's migration job never started on the source"


def throttled(nl, instance: str, host: str) -> Throttle:
    t = Throttle(nl.lab.uris()[host], instance)
    t.start()
    return t


def test_timeout_aborts_nova_s_migration_and_the_server_stays_on_its_source(nova_lab, conn,
                                                                            dirty):
    t = throttled(nova_lab, dirty.instance_name, "lab1")
    try:
        r = migplan(nova_lab, "migrate", "dirty-vm", "lab2", "--os-cloud", CLOUD,
                    "--timeout", "30")
    finally:
        t.quit.set()
    assert t.done.is_set(), "the migration ended before it could be slowed"
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stdout.startswith("aborted: server dirty-vm") and "no completion within 30 s" \
        in r.stdout
    assert last_migration(conn, "dirty-vm")["status"] == "cancelled"
    assert_on(conn, nova_lab, "dirty-vm", "lab1")


def test_ctrl_c_aborts_nova_s_migration_and_the_server_stays_on_its_source(nova_lab, conn,
                                                                          dirty):
    t = throttled(nova_lab, dirty.instance_name, "lab1")
    # SIGINT at its default, so the child gets KeyboardInterrupt like at a terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner", "migrate", "dirty-vm", "lab2", "--os-cloud", CLOUD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, **env(nova_lab), "PYTHONPATH": str(REPO)}, cwd=str(REPO))
    try:
        t.wait()
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        t.quit.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, out + err
    assert out.startswith("aborted: server dirty-vm") and "aborted (Ctrl-C)" in out
    assert last_migration(conn, "dirty-vm")["status"] == "cancelled"
    assert_on(conn, nova_lab, "dirty-vm", "lab1")


def test_a_server_already_migrating_is_skipped_with_its_reason(nova_lab, conn, dirty):
    t = throttled(nova_lab, dirty.instance_name, "lab1")
    s = server(conn, "dirty-vm")
    conn.compute.post(f"/servers/{s.id}/action", microversion="2.80",
                      json={"os-migrateLive": {"host": "lab2", "block_migration": "auto"}})
    try:
        t.wait()
        r = migplan(nova_lab, "migrate", "dirty-vm", "lab2", "--os-cloud", CLOUD)
        assert r.returncode == 3 and "[nova-server.busy] server dirty-vm is migrating" \
            in one_line_error(r)
        r = migplan(nova_lab, "drain", "lab1", "--os-cloud", CLOUD)
        assert r.returncode == 3 and "(dirty-vm): [nova-server.busy]" in r.stdout
    finally:
        t.quit.set()
        m = last_migration(conn, "dirty-vm")
        conn.compute.delete(f"/servers/{s.id}/migrations/{m['id']}", microversion="2.80")
        wait_settled(conn, "dirty-vm")
    assert last_migration(conn, "dirty-vm")["status"] == "cancelled"
    assert_on(conn, nova_lab, "dirty-vm", "lab1")
