"""Hostile input: files that never end, never come, or lead out of the snapshot (issue 14
item 2).

A device (``/dev/zero``) where a file is expected is refused at once instead of read
without end; a FIFO nobody writes to gives up after $MIGPLAN_READ_TIMEOUT seconds
instead of waiting forever, while a pipe that is written (``<(virsh capabilities)``)
still works; a symbolic link in a snapshot -- a guest's XML, any other file, a host
directory -- is followed only when it stays inside the snapshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"


def _timed(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    t0 = time.monotonic()
    r = run_cli(*args, env=env, timeout=timeout)
    return r, time.monotonic() - t0


@pytest.mark.parametrize("cmd", [
    ("cpu-baseline", "/dev/zero"),
    ("cpu-compare", "/dev/zero", "/dev/zero"),
    ("recommend", str(FIXTURE), "--groups", "/dev/zero"),
    ("collect", "--hosts-file", "/dev/zero", "--out", "/nonexistent/x"),
])
def test_a_device_is_refused_at_once_not_read_without_end(cmd):
    r, took = _timed(*cmd)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("Error: /dev/zero: a character device"), r.stderr
    assert took < 20


def test_a_fifo_without_a_writer_gives_up_after_the_read_timeout(tmp_path):
    fifo = tmp_path / "caps.fifo"
    os.mkfifo(fifo)
    r, took = _timed("cpu-baseline", str(fifo), env={"MIGPLAN_READ_TIMEOUT": "1"})
    assert r.returncode == 1
    assert "no data for 1 s" in r.stderr and str(fifo) in r.stderr
    assert took < 20


def test_a_fifo_that_is_written_is_read_to_its_end(tmp_path):
    fifo = tmp_path / "caps.fifo"
    os.mkfifo(fifo)
    caps_file = FIXTURE / "hosts" / "cn01" / "capabilities.xml"
    data = caps_file.read_bytes()
    # a slow writer: the first bytes after a pause, the rest after another
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; d = sys.stdin.buffer.read(); time.sleep(0.5);"
        f"f = open({str(fifo)!r}, 'wb'); f.write(d[:100]); f.flush(); time.sleep(0.5);"
        "f.write(d[100:]); f.close()")], stdin=subprocess.PIPE)
    writer.stdin.write(data)
    writer.stdin.close()
    try:
        r = run_cli("cpu-baseline", str(fifo), env={"MIGPLAN_READ_TIMEOUT": "10"})
    finally:
        writer.wait(timeout=30)
    direct = run_cli("cpu-baseline", str(caps_file))
    assert r.returncode == 0, r.stderr
    assert r.stdout == direct.stdout


def test_a_regular_file_beyond_the_limit_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "sparse.xml"
    with open(big, "wb") as f:
        f.truncate(3 * 1024 ** 3)  # 3 GiB, sparse
    r, took = _timed("cpu-baseline", str(big))
    assert r.returncode == 1 and "larger than the" in r.stderr
    assert took < 20


def test_a_file_that_says_it_is_empty_is_still_read_with_a_bound():
    """/proc files report size 0; reading follows the data, not st_size."""
    from planner.adapters.files import read_user_file

    data = read_user_file("/proc/self/status", 1 << 20)
    assert b"Name:" in data
    from planner.errors import InputError

    with pytest.raises(InputError, match="larger than the 10-byte limit"):
        read_user_file("/proc/self/status", 10)


def test_reading_a_device_takes_no_memory():
    """In a process limited to 1 GiB of address space, /dev/zero is refused (not an
    out-of-memory crash): nothing is read."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
            "from planner.cli import main; main(['cpu-baseline', '/dev/zero'])")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 1 and "a character device" in r.stderr, r.stderr


# ---- snapshots -------------------------------------------------------------------------------


def _snap(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    return snap


def _secret(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.xml"
    xml = (FIXTURE / "hosts" / "cn01" / "domains" / "cn01-web.xml").read_text()
    secret.write_text(xml.replace("<name>cn01-web</name>", "<name>TOP-SECRET</name>"))
    return secret


def _relink(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("what", ["guest xml", "guest xml, relative", "capabilities",
                                  "host.json", "domains dir", "host dir"])
def test_a_link_that_leaves_the_snapshot_is_refused(tmp_path, what):
    snap = _snap(tmp_path)
    secret = _secret(tmp_path)
    host = snap / "hosts" / "cn01"
    if what == "guest xml":
        _relink(host / "domains" / "cn01-web.xml", secret)
    elif what == "guest xml, relative":
        _relink(host / "domains" / "cn01-web.xml", "../../../../outside/secret.xml")
    elif what == "capabilities":
        _relink(host / "capabilities.xml", "/etc/hostname")
    elif what == "host.json":
        _relink(host / "host.json", "/dev/zero")
    elif what == "domains dir":
        shutil.copytree(host / "domains", secret.parent / "domains")
        _relink(host / "domains", secret.parent / "domains")
    else:
        shutil.copytree(host, secret.parent / "cn01")
        _relink(host, secret.parent / "cn01")
    r = run_cli("recommend", str(snap), "--format", "json", timeout=60)
    assert r.returncode == 1, r.stdout[:300]
    assert "a link that leaves the snapshot" in r.stderr and "cn01" in r.stderr
    assert "TOP-SECRET" not in r.stdout + r.stderr


def test_links_inside_the_snapshot_and_a_linked_snapshot_are_followed(tmp_path):
    snap = _snap(tmp_path)
    # cn02's domcapabilities is cn01's file: a hand-made snapshot may share files
    dc = snap / "hosts" / "cn02" / "domcapabilities.xml"
    shutil.copy(dc, snap / "common-domcaps.xml")
    _relink(dc, "../../common-domcaps.xml")
    latest = tmp_path / "latest"
    latest.symlink_to(snap)
    r = run_cli("recommend", str(latest), "--format", "json")
    direct = run_cli("recommend", str(FIXTURE), "--format", "json")
    assert r.returncode == direct.returncode, r.stderr
    assert r.stdout.replace(str(latest), "X") == direct.stdout.replace(str(FIXTURE), "X")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_snapshot_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    snap = _snap(tmp_path)
    caps = snap / "hosts" / "cn03" / "capabilities.xml"
    caps.unlink()
    if kind == "fifo":
        os.mkfifo(caps)
    else:
        (snap / "dev").mkdir()
        os.mknod(snap / "dev" / "zero", 0o600 | 0o020000, os.makedev(1, 5)) \
            if os.geteuid() == 0 else pytest.skip("creating a device node needs root")
        caps.symlink_to("../../dev/zero")
    r, took = _timed("recommend", str(snap))
    assert r.returncode == 1
    assert "cn03/capabilities.xml: not a regular file" in r.stderr, r.stderr
    assert took < 20
