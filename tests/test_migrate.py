"""`migplan migrate`: real live migrations between the lab's hosts, and their failures.

Every test leaves the lab as it found it (guests back on their hosts, dead hosts
restarted), since the lab is shared by the whole session.  Where each guest runs
is always checked with virsh on every host, never taken from migplan's output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from planner import lab as labmod

pytestmark = pytest.mark.lab

RANDOM_MIB = 64


def virsh(uri: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def where(lab, guest: str) -> dict[str, tuple[str, bool]]:
    """host -> (state, persistent) for every lab host that has ``guest``, as virsh says."""
    out = {}
    for name, uri in lab.uris().items():
        r = virsh(uri, "dominfo", guest, check=False)
        if r.returncode != 0:
            continue
        info = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
        out[name] = (info["State"].strip(), info["Persistent"].strip() == "yes")
    return out


def migplan(lab, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"MIGPLAN_LAB_DIR": str(lab.state_dir)}, timeout=timeout)


def move_back(lab, guest: str, home: str, transient: bool = False) -> None:
    """Put ``guest`` back on ``home`` (with virsh, independent of migplan).

    ``transient``: make it transient again (undefining a running guest keeps it
    running), as the lab started it, for the tests that come after.
    """
    now = where(lab, guest)
    running = [h for h, (state, _) in now.items() if state == "running"]
    assert len(running) == 1, now
    if running[0] != home:
        virsh(lab.uris()[running[0]], "migrate", "--live", "--p2p", "--persistent",
              "--undefinesource", guest, lab.uris()[home])
    if transient and where(lab, guest)[home][1]:
        virsh(lab.uris()[home], "undefine", guest)
    assert where(lab, guest) == {home: ("running", not transient)}


# ---- a guest whose memory is not zero pages, so its migration lasts --------------------------


@pytest.fixture(scope="module")
def random_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("heavy") / f"random{RANDOM_MIB}M.bin"
    p.write_bytes(os.urandom(RANDOM_MIB * 1024 * 1024))
    return p


def heavy_xml(name: str, random_file: Path, kvm: bool) -> str:
    # A diskless idle guest migrates in ~1.5 s (zero pages cost nothing); a loader
    # device puts 64 MiB of random data in guest RAM, so with a bandwidth limit the
    # migration lasts long enough to kill the destination or hit a timeout.
    return f"""<domain type='{'kvm' if kvm else 'qemu'}'
        xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>{'kvm64' if kvm else 'qemu64'}</model></cpu>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='loader,file={random_file},addr=0x1000000'/>
  </qemu:commandline>
</domain>
"""


@pytest.fixture
def heavy(lab, random_file: Path, tmp_path: Path):
    """A persistent running guest 'heavy' on lab1 with 64 MiB of random memory; removed after."""
    name = "heavy"
    xml = tmp_path / "heavy.xml"
    xml.write_text(heavy_xml(name, random_file, kvm=lab.accel == "kvm"))
    uri = lab.uris()["lab1"]
    virsh(uri, "define", str(xml))
    virsh(uri, "start", name)
    yield name
    for host_uri in lab.uris().values():
        virsh(host_uri, "destroy", name, check=False)
        virsh(host_uri, "undefine", name, check=False)


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def incoming_qemu(lab, host: str, guest: str) -> list[int]:
    d = lab.host(host).dir
    return [p for p in labmod.pids_seeing_mounts_from(d)
            if "qemu" in labmod.cmdline(p) and f"guest={guest}" in labmod.cmdline(p)]


# ---- successful migrations ------------------------------------------------------------------


def test_migrate_moves_a_running_guest_and_both_hosts_agree(lab):
    assert where(lab, "lab1-vm1") == {"lab1": ("running", True)}
    try:
        r = migplan(lab, "migrate", "lab1-vm1", "lab2", "--lab", "--format", "json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["outcome"]["status"] == "migrated" and doc["outcome"]["on"] == "lab2"
        assert "VIR_MIGRATE_PERSIST_DEST" in doc["plan"]["flags"]
        assert where(lab, "lab1-vm1") == {"lab2": ("running", True)}
    finally:
        move_back(lab, "lab1-vm1", "lab1")


def test_round_trip_makes_a_transient_guest_persistent_and_brings_it_home(lab):
    uris = lab.uris()
    assert where(lab, "lab1-vm2") == {"lab1": ("running", False)}  # transient in the lab
    try:
        r = migplan(lab, "migrate", "lab1-vm2", "lab3", "--lab")
        assert r.returncode == 0, r.stderr
        assert "migrated" in r.stdout
        assert where(lab, "lab1-vm2") == {"lab3": ("running", True)}
        # back, naming the hosts by URI this time
        r = migplan(lab, "migrate", "lab1-vm2", uris["lab1"], "--source", uris["lab3"])
        assert r.returncode == 0, r.stderr
        assert where(lab, "lab1-vm2") == {"lab1": ("running", True)}
    finally:
        move_back(lab, "lab1-vm2", "lab1", transient=True)


def test_dry_run_prints_the_plan_and_changes_nothing(lab):
    r = migplan(lab, "migrate", "lab2-vm1", "lab3", "--lab", "--dry-run", "--bandwidth", "50",
                "--max-downtime", "300", "--auto-converge", "--postcopy", "--timeout", "30",
                "--on-timeout", "postcopy", "--format", "json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["source"]["host"] == "lab2" and plan["destination"]["host"] == "lab3"
    assert {"VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_POSTCOPY",
            "VIR_MIGRATE_AUTO_CONVERGE"} <= set(plan["flags"])
    assert plan["params"] == {"bandwidth": 50, "max_downtime_ms": 300}
    assert plan["storage_to_copy"] == []
    assert plan["expected_transfer_bytes"] == plan["memory_bytes"] > 0
    assert where(lab, "lab2-vm1") == {"lab2": ("running", True)}


def test_hosts_can_come_from_a_snapshot_manifest(lab, tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "manifest.json").write_text(json.dumps(
        {"hosts": [{"name": n, "uri": u, "status": "ok"} for n, u in lab.uris().items()]}))
    r = run_cli("migrate", "lab1-vm1", "lab3", "--snapshot", str(snap), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "lab1 (qemu+tcp://" in r.stdout and "pre-flight: " in r.stdout


# ---- refusals and bad input: nothing changes ---------------------------------------------------


def test_infeasible_move_is_refused_with_its_reasons_and_nothing_changes(lab):
    # a reserve larger than any lab host's memory: the destination cannot take the guest
    r = migplan(lab, "migrate", "lab1-vm1", "lab2", "--lab", "--memory-reserve", "10000000")
    assert r.returncode == 3, r.stderr
    assert "memory.insufficient" in r.stderr and "--force" in r.stderr
    assert where(lab, "lab1-vm1") == {"lab1": ("running", True)}
    # --force overrides the refusal (the move is possible: the reserve is only policy)
    try:
        r = migplan(lab, "migrate", "lab1-vm1", "lab2", "--lab", "--memory-reserve", "10000000",
                    "--force")
        assert r.returncode == 0, r.stderr
        assert where(lab, "lab1-vm1") == {"lab2": ("running", True)}
    finally:
        move_back(lab, "lab1-vm1", "lab1")


@pytest.mark.parametrize("args, message", [
    (("nosuchguest", "lab2"), "unknown guest 'nosuchguest'"),
    (("lab1-vm1", "lab9"), "unknown host 'lab9'"),
    (("lab1-vm1", "lab1"), "already runs on lab1"),
    (("lab1-vm1", "qemu+tcp://127.0.0.250/system"), "127.0.0.250"),
    (("lab1-vm1", "lab2", "--source", "lab1", "--on-timeout", "postcopy", "--timeout", "5"),
     "needs --postcopy"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(lab, args, message):
    r = migplan(lab, "migrate", *args, "--lab")
    assert r.returncode not in (0, 4), r.stderr
    assert r.stderr.startswith("Error: ") and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert where(lab, "lab1-vm1") == {"lab1": ("running", True)}


def test_a_guest_that_is_not_running_is_refused(lab, tmp_path):
    from planner.lab import SHAPES, guest_xml

    xml = tmp_path / "off.xml"
    xml.write_text(guest_xml("off-guest", SHAPES[0], kvm=lab.accel == "kvm"))
    uri = lab.uris()["lab2"]
    virsh(uri, "define", str(xml))
    try:
        r = migplan(lab, "migrate", "off-guest", "lab3", "--lab")
        assert r.returncode == 2, r.stderr
        assert "not running" in r.stderr
        assert where(lab, "off-guest") == {"lab2": ("shut off", True)}
    finally:
        virsh(uri, "undefine", "off-guest", check=False)


# ---- failures during the migration: the guest stays on its source ------------------------------


def test_timeout_aborts_and_the_guest_stays_on_the_source(lab, heavy):
    t0 = time.monotonic()
    r = migplan(lab, "migrate", heavy, "lab2", "--lab", "--bandwidth", "2", "--timeout", "3")
    took = time.monotonic() - t0
    assert r.returncode == 4, r.stderr
    assert "still running on lab1" in r.stderr and "aborted" in r.stderr
    assert took < 60
    assert where(lab, heavy) == {"lab1": ("running", True)}


def test_timeout_can_switch_to_postcopy_and_the_guest_lands_on_the_destination(lab, heavy):
    t0 = time.monotonic()
    r = migplan(lab, "migrate", heavy, "lab2", "--lab", "--bandwidth", "4", "--postcopy",
                "--timeout", "2", "--on-timeout", "postcopy")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 15  # 64 MiB at 4 MiB/s would take 16 s in pre-copy
    assert where(lab, heavy) == {"lab2": ("running", True)}


def start_migplan(lab, *args: str) -> subprocess.Popen[str]:
    # SIGINT at its default, so the child gets KeyboardInterrupt like at a terminal
    return subprocess.Popen(
        [sys.executable, "-m", "planner", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "MIGPLAN_LAB_DIR": str(lab.state_dir),
             "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def test_ctrl_c_aborts_the_job_and_the_guest_stays_on_the_source(lab, heavy):
    proc = start_migplan(lab, "migrate", heavy, "lab2", "--lab", "--bandwidth", "4")
    try:
        wait_for(lambda: incoming_qemu(lab, "lab2", heavy), 60, "the incoming QEMU on lab2")
        time.sleep(1.0)
        assert proc.poll() is None, "the migration ended before Ctrl-C"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 4, err
    assert "still running on lab1" in err and "abort" in err
    # the job is over (not merely our wait for it) and nothing is left on lab2
    assert "None" in virsh(lab.uris()["lab1"], "domjobinfo", heavy).stdout
    wait_for(lambda: not incoming_qemu(lab, "lab2", heavy), 30, "the incoming QEMU to go")
    assert where(lab, heavy) == {"lab1": ("running", True)}


def test_destination_dying_mid_migration_leaves_the_guest_on_the_source(lab, heavy):
    proc = start_migplan(lab, "migrate", heavy, "lab3", "--lab", "--bandwidth", "4")
    try:
        wait_for(lambda: incoming_qemu(lab, "lab3", heavy), 60, "the incoming QEMU on lab3")
        time.sleep(1.0)  # let the stream run
        assert proc.poll() is None, "the migration ended before the destination died"
        # kill the destination host: its libvirtd and every QEMU it started (SIGKILL, not
        # SIGSTOP: a stopped QEMU hangs libvirt's prepare/finish phases for minutes)
        for pid in labmod.pids_seeing_mounts_from(lab.host("lab3").dir):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        lab.up()  # restart lab3 (with fresh guests) for the tests after this one
    assert proc.returncode == 4, err
    assert "still running on lab1" in err
    assert where(lab, heavy) == {"lab1": ("running", True)}


# ---- drain ------------------------------------------------------------------------------------


def test_drain_spreads_guests_one_destination_cannot_take_and_empties_the_host(lab):
    guests = ["lab1-vm1", "lab1-vm2"]  # 1 and 2 vCPUs; lab2 and lab3 run 3 vCPUs each
    assert where(lab, "lab1-vm2") == {"lab1": ("running", False)}
    assert where(lab, "lab1-vm1") == {"lab1": ("running", True)}
    # 2 CPUs x 2.5 = 5 vCPUs a host: each destination can take 2 more vCPUs, not 3,
    # so the two guests must go to different hosts
    try:
        r = migplan(lab, "drain", "lab1", "--lab", "--cpu-ratio", "2.5", "--execute",
                    "--max-parallel", "2", "--format", "json", timeout=300)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        placed = {a["guest"]: a["destination"] for w in doc["plan"]["waves"] for a in w}
        assert set(placed) == set(guests) and len(set(placed.values())) == 2
        assert [o["status"] for o in doc["results"]] == ["migrated", "migrated"]
        for g in guests:
            assert where(lab, g) == {placed[g]: ("running", True)}
    finally:
        move_back(lab, "lab1-vm1", "lab1")
        move_back(lab, "lab1-vm2", "lab1", transient=True)


def test_drain_plan_shows_guests_that_cannot_move_and_changes_nothing(lab):
    # 2 CPUs x 1.5 = 3 vCPUs a host, already used on lab2 and lab3: nothing fits
    r = migplan(lab, "drain", "lab1", "--lab", "--cpu-ratio", "1.5")
    assert r.returncode == 3, r.stderr
    assert "cannot move lab1-vm1" in r.stdout and "vcpus.overcommit" in r.stdout
    assert where(lab, "lab1-vm1") == {"lab1": ("running", True)}
    assert where(lab, "lab1-vm2") == {"lab1": ("running", False)}
