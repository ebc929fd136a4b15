"""A migration's end state, with the destination's libvirtd killed before, during and after
the copy (issue 14 item 9).  Real lab hosts, real QEMU guests, real SIGKILLs.

Exit 4 ("failed, still on its source") is given only when the source confirms the
guest runs there.  When a host cannot answer, the outcome is "unknown: check before
acting" (exit 7), with what each host said and the virsh commands to check; a guest
both hosts deny is "lost" (exit 8, tested with a fake in test_migrate_plan.py: no real
daemon can be made to lose a guest).

The guest whose copy lasts seconds: 64 MiB of random data put in its RAM by a QEMU
``loader`` device (tests/test_migrate.py's ``heavy_xml``), migrated at 4 MiB/s.
Where each guest runs is always asked of every host with virsh, never taken from
migplan's output.  Each test restarts the host it killed (``lab.up()``) and removes
its own guest, so the session's lab is as it was.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_migrate import heavy_xml, incoming_qemu, start_migplan, virsh, wait_for, where

from planner.lab import SHAPES, guest_xml

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def random_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("heavy14") / "random64M.bin"
    p.write_bytes(os.urandom(64 * 1024 * 1024))
    return p


def _define(lab, name: str, xml: str, tmp_path: Path) -> None:
    f = tmp_path / f"{name}.xml"
    f.write_text(xml)
    uri = lab.uris()["lab1"]
    virsh(uri, "define", str(f))
    virsh(uri, "start", name)


def _remove(lab, name: str) -> None:
    for uri in lab.uris().values():
        virsh(uri, "destroy", name, check=False)
        virsh(uri, "undefine", name, check=False)


@pytest.fixture
def heavy(lab, random_file: Path, tmp_path: Path):
    name = "heavy14"
    _define(lab, name, heavy_xml(name, random_file, kvm=lab.accel == "kvm"), tmp_path)
    yield name
    lab.up()  # the killed host comes back (with fresh guests of its own)
    _remove(lab, name)


@pytest.fixture
def idle(lab, tmp_path: Path):
    name = "idle14"
    _define(lab, name, guest_xml(name, SHAPES[0], kvm=lab.accel == "kvm"), tmp_path)
    yield name
    lab.up()
    _remove(lab, name)


def _kill_libvirtd(lab, host: str) -> None:
    """SIGKILL the host's libvirtd only (its QEMU processes live on, as after a crash)."""
    pid = lab._running_pid(lab.host(host))
    assert pid is not None, f"{host}'s libvirtd is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: lab._running_pid(lab.host(host)) is None, 30, f"{host}'s libvirtd to die")


def _migplan(lab, *args: str, timeout: float = 180):
    return run_cli(*args, env={"MIGPLAN_LAB_DIR": str(lab.state_dir)}, timeout=timeout)


def test_destination_dead_before_migplan_starts_changes_nothing(lab, idle):
    _kill_libvirtd(lab, "lab3")
    r = _migplan(lab, "migrate", idle, "lab3", "--lab")
    assert r.returncode == 1, r.stderr
    assert "cannot read lab1 and lab3 before migrating" in r.stderr
    assert where(lab, idle) == {"lab1": ("running", True)}


def test_destination_killed_before_the_copy_is_a_failure_the_source_confirms(lab, heavy):
    proc = start_migplan(lab, "migrate", heavy, "lab3", "--lab", "--bandwidth", "4")
    try:
        # the pre-flight is done when migplan says it migrates; the copy has not begun
        # (the destination has not even started the incoming QEMU yet)
        line = ""
        while "migrating" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "migplan ended before migrating"
        _kill_libvirtd(lab, "lab3")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 4, err
    assert f"{heavy} is still running on lab1" in err
    assert where(lab, heavy) == {"lab1": ("running", True)}


def test_destination_killed_during_the_copy_is_a_failure_the_source_confirms(lab, heavy):
    proc = start_migplan(lab, "migrate", heavy, "lab3", "--lab", "--bandwidth", "4",
                         "--format", "json")
    try:
        wait_for(lambda: incoming_qemu(lab, "lab3", heavy), 60, "the incoming QEMU on lab3")
        time.sleep(1.5)  # the stream runs: ~6 of the 64 MiB are over
        assert proc.poll() is None, "the migration ended before the destination died"
        _kill_libvirtd(lab, "lab3")  # its incoming QEMU lives on
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 4, err
    assert f"{heavy} is still running on lab1" in err
    # the source confirmed; lab3 could not be asked, and the message says so
    assert "lab3 did not answer" in err and "domstate heavy14" in err
    assert '"answered": false' in out
    assert where(lab, heavy) == {"lab1": ("running", True)}


def test_destination_killed_after_the_copy_is_unknown_with_the_evidence(lab, idle, monkeypatch,
                                                                          capsys):
    """The copy completed, then the destination's libvirtd died before migplan asked where
    the guest is.  The real CLI, real daemons; only the moment of the kill is hooked (a
    subclass of the real driver kills lab3's libvirtd when the job has returned), as no
    outside process can hit that instant reliably."""
    import planner.adapters.libvirt as adapter
    from planner.cli import main

    class KillDestinationAfterTheJob(adapter.LibvirtMigrationDriver):
        def run(self, plan, on_progress, stop):
            error = super().run(plan, on_progress, stop)
            assert error is None, error  # the migration itself completed
            _kill_libvirtd(lab, "lab3")
            return error

    monkeypatch.setattr(adapter, "LibvirtMigrationDriver", KillDestinationAfterTheJob)
    monkeypatch.setenv("MIGPLAN_LAB_DIR", str(lab.state_dir))
    with pytest.raises(SystemExit) as done:
        main(["migrate", idle, "lab3", "--lab"])
    err = capsys.readouterr().err
    assert done.value.code == 7, err
    assert "unknown, check before acting" in err
    assert f"lab1 has no guest {idle}" in err and "lab3 did not answer" in err
    assert f"virsh -c {lab.uris()['lab3']} domstate {idle}" in err
    assert f"virsh -c {lab.uris()['lab1']} domstate {idle}" in err
    # and that was the truth: lab1 no longer has it; lab3's QEMU still runs it
    assert idle not in virsh(lab.uris()["lab1"], "list", "--all", "--name").stdout
    assert incoming_qemu(lab, "lab3", idle)
