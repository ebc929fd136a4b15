"""Interrupted and concurrent runs: every output file whole or not at all, and an output
directory that never mixes two runs (issue 14 item 3).

Real processes, real signals: ``migplan recommend --out`` is interrupted with Ctrl-C
(SIGINT) and killed (SIGKILL) in the middle of writing a report of tens of MB; two
``migplan collect`` runs into one ``--out`` race for real (libvirt's own test driver
and a TCP endpoint that accepts and never answers, so both runs are still collecting
when the other publishes); a collect is killed and the next run finds what it left.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _tree(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def _staging(out: Path, command: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{command}-*"))


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """30 hosts x 10 guests: `recommend --detail full --out` writes ~20 MB for seconds."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_inventory_load

    root = tmp_path_factory.mktemp("big") / "snap"
    bench_inventory_load.build(root, 30, 10)
    return root


def _start_recommend(snap: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "planner", "recommend", str(snap), "--detail", "full",
         "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_writing(proc: subprocess.Popen[str], out: Path, timeout: float = 120) -> None:
    """Until the run is writing its report.json (some MB of it) into its staging dir."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "recommend ended before it could be interrupted"
        for d in _staging(out, "recommend"):
            f = d / "report.json"
            if f.exists() and f.stat().st_size > 1_000_000:
                return
        time.sleep(0.01)
    raise AssertionError("recommend never started writing")


@pytest.fixture
def previous_run(tmp_path) -> Path:
    """An --out directory holding a complete earlier run (of another snapshot)."""
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    return out


def test_ctrl_c_while_writing_leaves_the_previous_run_whole(big, previous_run):
    before = _tree(previous_run)
    proc = _start_recommend(big, previous_run)
    _wait_writing(proc, previous_run)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _tree(previous_run) == before  # not one byte of the new run, nothing torn
    assert _staging(previous_run, "recommend") == []  # and nothing left beside it
    json.loads((previous_run / "report.json").read_text())


def test_sigterm_while_writing_unwinds_like_ctrl_c(big, previous_run):
    before = _tree(previous_run)
    proc = _start_recommend(big, previous_run)
    _wait_writing(proc, previous_run)
    proc.terminate()
    proc.communicate(timeout=60)
    assert _tree(previous_run) == before
    assert _staging(previous_run, "recommend") == []


def test_sigkill_while_writing_leaves_the_previous_run_and_the_next_run_cleans_up(
        big, previous_run):
    before = _tree(previous_run)
    proc = _start_recommend(big, previous_run)
    _wait_writing(proc, previous_run)
    proc.kill()
    proc.wait(timeout=60)
    assert _tree(previous_run) == before
    left = _staging(previous_run, "recommend")
    assert len(left) == 1
    r = run_cli("recommend", str(FIXTURE), "--out", str(previous_run))
    assert r.returncode in (0, 3), r.stderr
    assert f"removed {left[0]}" in r.stderr and "interrupted" in r.stderr
    assert _staging(previous_run, "recommend") == []


def test_a_second_run_replaces_the_whole_set(tmp_path, previous_run):
    groups = tmp_path / "groups.yaml"
    groups.write_text("old: [cn01, cn02]\nnew: [cn03, cn04, cn05]\n")
    r = run_cli("recommend", str(FIXTURE), "--groups", str(groups), "--out", str(previous_run))
    assert r.returncode in (0, 3), r.stderr
    names = sorted(p.name for p in previous_run.iterdir())
    # no nova-cpu.conf of the earlier, ungrouped run beside this run's per-aggregate files
    assert names == ["matrix.csv", "migplan-run.json", "nova-cpu.new.conf", "nova-cpu.new.yml",
                     "nova-cpu.old.conf", "nova-cpu.old.yml", "report.json"]
    run = json.loads((previous_run / "migplan-run.json").read_text())
    assert run["command"] == "recommend" and sorted(run["files"]) == \
        [n for n in names if n != "migplan-run.json"]


def test_a_directory_with_other_files_is_refused_not_emptied(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = run_cli("recommend", str(FIXTURE), "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("Error: --out ") and "notes.txt" in r.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_report_html_replaces_its_file_whole(tmp_path):
    out = tmp_path / "review"
    out.mkdir()
    (out / "capacity-review.html").write_text("old")
    r = run_cli("report", str(FIXTURE), "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["capacity-review.html"]
    assert (out / "capacity-review.html").read_text().startswith("<!DOCTYPE html>")


# ---- collect -----------------------------------------------------------------------------------


class SilentEndpoint:
    """A TCP endpoint that accepts connections and never answers: a host that hangs.

    Not a fake libvirt: the real libvirt client waits on it as it would on a stuck
    daemon, so a collect is still running when another one publishes.
    """

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.uri = f"qemu+tcp://{address}:{self.port}/system"
        self.conns: list[socket.socket] = []
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def silent():
    from conftest import LAB_FIRST_IP

    ep = SilentEndpoint(f"127.0.0.{min(250, LAB_FIRST_IP + 20)}")
    yield ep
    ep.close()


def _start_collect(out: Path, *uris: str, timeout: str = "4") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "planner", "collect", *uris, "--out", str(out),
         "--timeout", timeout], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=ENV)


def test_a_second_collect_into_the_same_out_refuses_clearly(tmp_path, silent):
    out = tmp_path / "snap"
    first = _start_collect(out, "test:///default", silent.uri, timeout="3")
    deadline = time.monotonic() + 60
    while not _staging(out, "collect"):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = _start_collect(out, "test:///default", silent.uri, timeout="3")
    o2, e2 = second.communicate(timeout=120)
    o1, e1 = first.communicate(timeout=120)
    assert second.returncode == 2, e2
    assert "is writing it now" in e2 and "internal error" not in e2
    assert first.returncode == 5, e1  # the silent host: partial
    assert json.loads((out / "manifest.json").read_text())["hosts"][0]["status"] == "ok"
    assert _staging(out, "collect") == []
    # and a collect into a now complete snapshot refuses before connecting anywhere
    r = run_cli("collect", "test:///default", "--out", str(out))
    assert r.returncode == 2 and "never overwritten" in r.stderr


def test_two_collects_that_start_together_publish_one_snapshot(tmp_path):
    """Both passed the --out check before either had a staging directory: the second to
    finish finds the first's snapshot in place, keeps its hands off it and says so."""
    from planner.errors import UsageError
    from planner.snapshot.write import publish

    out = tmp_path / "snap"
    for i in (1, 2):
        (tmp_path / f"stage{i}").mkdir()
        (tmp_path / f"stage{i}" / "hosts").mkdir()
    publish(tmp_path / "stage1", out, {"run": 1})
    with pytest.raises(UsageError, match="another snapshot was written there"):
        publish(tmp_path / "stage2", out, {"run": 2})
    assert json.loads((out / "manifest.json").read_text()) == {"run": 1}


def test_a_killed_collect_leaves_a_staging_dir_the_next_collect_removes(tmp_path, silent):
    out = tmp_path / "snap"
    proc = _start_collect(out, "test:///default", silent.uri, timeout="30")
    deadline = time.monotonic() + 60
    while not _staging(out, "collect"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=30)
    left = _staging(out, "collect")
    assert len(left) == 1 and not out.exists()
    r = run_cli("collect", "test:///default", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"removed {left[0]}" in r.stderr
    assert _staging(out, "collect") == [] and (out / "manifest.json").exists()


def test_a_collect_running_beside_refuses_to_remove_its_staging_dir(tmp_path, silent):
    out = tmp_path / "snap"
    proc = _start_collect(out, "test:///default", silent.uri, timeout="6")
    try:
        deadline = time.monotonic() + 60
        while not _staging(out, "collect"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        r = run_cli("collect", "test:///default", "--out", str(out))
        assert r.returncode == 2 and "is writing it now" in r.stderr, r.stderr
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 5


def test_an_out_dir_written_before_run_manifests_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("report.json", "matrix.csv", "nova-cpu.old.conf", "nova-cpu.old.yml"):
        (out / name).write_text("from an earlier migplan")
    r = run_cli("recommend", str(FIXTURE), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    assert not (out / "nova-cpu.old.conf").exists() and (out / "migplan-run.json").exists()
    link = tmp_path / "link"
    link.symlink_to(out)
    r = run_cli("recommend", str(FIXTURE), "--out", str(link))
    assert r.returncode == 2 and "symbolic link" in r.stderr
