"""`migplan collect` against real libvirt: the test driver (in-process, no daemon) here;
the lab's daemons in test_collect_lab.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest
from conftest import REPO, run_cli

from planner.collect import run as collect_mod
from planner.collect.run import collect
from planner.collect.sources import Target
from planner.errors import HostError, UsageError
from planner.snapshot.read import load

TESTNODE = REPO / "tests" / "data" / "testnode.xml"
TESTNODE_URI = f"test://{TESTNODE}"
UNREACHABLE = "qemu+tcp://127.0.0.250/system"  # nothing listens there


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections (the kernel does) and never answers:
    a libvirt host that hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"qemu+tcp://127.0.0.1:{s.getsockname()[1]}/system"
    s.close()


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_collect_stores_exactly_what_libvirt_returns(tmp_path):
    out = tmp_path / "snap"
    res = collect([Target("test:///default")], out)
    assert [h.status for h in res.hosts] == ["ok"]
    conn = libvirt.openReadOnly("test:///default")
    try:
        host = out / "hosts" / conn.getHostname()
        assert (host / "capabilities.xml").read_bytes() == conn.getCapabilities().encode()
        for dom in conn.listAllDomains():
            assert (host / "domains" / f"{dom.name()}.xml").read_bytes() == \
                dom.XMLDesc(0).encode()
        facts = json.loads((host / "host.json").read_text())
        assert facts["hostname"] == conn.getHostname()
        assert facts["versions"]["libvirt"] == "9.0.0"
        assert facts["cpu_model_names"] == conn.getCPUModelNames("i686")
        assert [c["free_bytes"] for c in facts["cells"]] == conn.getCellsFreeMemory(0, 2)
    finally:
        conn.close()
    man = _manifest(out)
    assert man["format"] == "migplan-snapshot/1"
    assert man["hosts"][0]["status"] == "ok"
    assert man["hosts"][0]["uri"] == "test:///default"
    # The test driver has no domcapabilities: recorded, not fatal.
    assert any("domcapabilities" in w.lower() for w in man["hosts"][0]["warnings"])


def test_collect_records_guest_state_persistence_and_pools(tmp_path):
    out = tmp_path / "snap"
    collect([Target(TESTNODE_URI, "node1")], out)
    index = json.loads((out / "hosts" / "node1" / "domains.json").read_text())
    by_name = {g["name"]: g for g in index}
    assert by_name["web1"]["state"] == "running" and by_name["web1"]["persistent"]
    assert by_name["db1"]["state"] == "shutoff" and by_name["db1"]["persistent"]
    assert by_name["scratch"]["persistent"] is False
    inv = load(out)
    h = inv.host("node1")
    assert h is not None
    assert h.cpu.model is None and "host CPU model (capabilities name none)" in h.missing
    assert {d.name: d.state for d in h.domains} == {"db1": "shutoff", "scratch": "running",
                                                      "web1": "running"}
    web1 = next(d for d in h.domains if d.name == "web1")
    assert web1.vcpupin == ((0, (0,)), (1, (1,)))
    assert web1.memory_kib == 512 * 1024
    assert h.pools is not None and [(p.name, p.type, p.shared) for p in h.pools] == \
        [("shared-nfs", "netfs", True)]


def test_one_unreachable_host_exits_5_and_the_others_are_collected(tmp_path):
    out = tmp_path / "snap"
    r = run_cli("collect", TESTNODE_URI, UNREACHABLE, "--out", str(out), "--timeout", "30")
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: 1 of 2 hosts not collected")
    man = _manifest(out)
    status = {h["uri"]: h["status"] for h in man["hosts"]}
    assert status == {TESTNODE_URI: "ok", UNREACHABLE: "failed"}
    bad = next(h for h in man["hosts"] if h["uri"] == UNREACHABLE)
    assert "127.0.0.250" in bad["error"] and bad["dir"] is None
    good = next(h for h in man["hosts"] if h["status"] == "ok")
    assert (out / good["dir"] / "capabilities.xml").is_file()
    assert good["guests"] == 3
    assert "host" in r.stdout and "failed" in r.stdout  # the summary table
    inv = load(out)
    assert [h.name for h in inv.hosts] == [good["name"]]
    assert inv.errors and inv.errors[0][0] == bad["name"]


def test_a_host_that_never_answers_times_out_and_the_others_are_collected(tmp_path,
                                                                          silent_server):
    out = tmp_path / "snap"
    t0 = time.monotonic()
    r = run_cli("collect", TESTNODE_URI, silent_server, "--out", str(out), "--timeout", "2")
    assert r.returncode == 5, r.stderr
    assert time.monotonic() - t0 < 30
    status = {h["uri"]: h["status"] for h in _manifest(out)["hosts"]}
    assert status == {TESTNODE_URI: "ok", silent_server: "timeout"}


def test_killed_collect_leaves_nothing_that_looks_like_a_snapshot(tmp_path, silent_server):
    out = tmp_path / "snap"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "planner", "collect", TESTNODE_URI,
                          silent_server, "--out", str(out), "--timeout", "120"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait until the fast host is written (staged) while the other one hangs.
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".snap.collect-*/staging/*/host.json")):
            assert time.monotonic() < deadline, "the first host was never staged"
            assert p.poll() is None
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not out.exists()
    assert not list(tmp_path.rglob("manifest.json"))
    with pytest.raises(Exception, match="no such snapshot directory"):
        load(out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_collect_cleans_up_without_waiting_for_slow_hosts(tmp_path, silent_server,
                                                                        sig):
    out = tmp_path / "snap"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # SIGINT at its default: a suite started in the background (no job control) ignores it,
    # and a child inherits that (as in test_migrate)
    p = subprocess.Popen([sys.executable, "-m", "planner", "collect", TESTNODE_URI,
                          silent_server, "--out", str(out), "--timeout", "120"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".snap.collect-*/staging/*/host.json")):
            assert time.monotonic() < deadline, "the first host was never staged"
            time.sleep(0.1)
        t0 = time.monotonic()
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.monotonic() - t0 < 15
    assert p.returncode == 130 and b"Error: interrupted" in err and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_removes_the_partial_snapshot(tmp_path, monkeypatch):
    real = collect_mod.write_host
    calls = []

    def failing(d, raw, uri):  # disk full on the second host
        calls.append(uri)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(d, raw, uri)

    monkeypatch.setattr(collect_mod, "write_host", failing)
    with pytest.raises(OSError):
        collect([Target("test:///default", "a"), Target(TESTNODE_URI, "b")], tmp_path / "snap",
                workers=1)
    assert list(tmp_path.iterdir()) == []


class _Refusing:
    """Fake connect: refused authentication.  The lab's daemons run auth_tcp=none,
    so a real refusal cannot be shown here."""

    def __init__(self, uri: str) -> None:
        raise HostError(f"{uri}: authentication failed: Permission denied", "auth")


def test_refused_auth_is_recorded_and_the_password_never_stored(tmp_path):
    out = tmp_path / "snap"
    uri = "qemu+ssh://admin:s3cret@cn9/system?password=s3cret"
    res = collect([Target(uri, "cn9")], out, connect=_Refusing)
    assert res.hosts[0].status == "failed" and res.hosts[0].kind == "auth"
    text = (out / "manifest.json").read_text()
    assert "s3cret" not in text
    entry = _manifest(out)["hosts"][0]
    assert entry["uri"] == "qemu+ssh://admin:***@cn9/system?password=***"
    assert "authentication failed" in entry["error"]
    with pytest.raises(Exception, match="1 of 1 hosts not collected"):
        res.raise_if_partial()


def test_hosts_reporting_the_same_hostname_get_distinct_directories(tmp_path):
    other = f"test://{TESTNODE.parent}/../data/testnode.xml"
    res = collect([Target(TESTNODE_URI), Target(other)], tmp_path / "snap")
    names = [h.name for h in res.hosts]
    assert len(set(names)) == 2 and all(n.startswith("vm") for n in names)
    assert sorted(p.name for p in (tmp_path / "snap" / "hosts").iterdir()) == sorted(names)


def test_an_existing_snapshot_is_never_overwritten(tmp_path):
    out = tmp_path / "snap"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists"):
        collect([Target("test:///default")], out)
    r = run_cli("collect", "test:///default", "--out", str(out))
    assert r.returncode == 2 and "Error: --out" in r.stderr


def test_collect_without_hosts_is_a_usage_error(tmp_path):
    r = run_cli("collect", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.startswith("Error: no hosts")


def test_collect_help_has_an_example():
    r = run_cli("collect", "--help")
    assert r.returncode == 0 and "Example:" in r.stdout


def test_collect_from_a_hosts_file_maps_hostnames_through_the_template(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(f"# test nodes\n{TESTNODE_URI}\n\nunreachable-a   # via the template\n")
    out = tmp_path / "snap"
    r = run_cli("collect", "--hosts-file", str(hosts), "--uri-template",
                "qemu+tcp://127.0.0.250:{host}/system", "--out", str(out))
    # 'unreachable-a' as a port is not a number: libvirt refuses the URI, the host fails.
    assert r.returncode == 5, r.stderr
    names = {h["name"]: h["status"] for h in _manifest(out)["hosts"]}
    assert names["unreachable-a"] == "failed"


class _Garbage:
    """Fake connect: a host answering garbage.  A real libvirtd always returns
    well-formed capabilities, so this cannot be shown with one."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def capabilities(self) -> str:
        if "crash" in self.uri:
            raise RuntimeError("binding bug")
        return "<capabilities><host>"

    def close(self) -> None:
        pass


def test_a_host_answering_garbage_fails_alone(tmp_path):
    def connect(uri):
        return libvirt_conn(uri) if uri.startswith("test:") else _Garbage(uri)

    from planner.adapters.libvirt import connect as libvirt_conn

    res = collect([Target(TESTNODE_URI, "good"), Target("qemu+tcp://bad/system", "bad"),
                   Target("qemu+tcp://crash/system", "crash")], tmp_path / "snap",
                  connect=connect)
    by = {h.name: h for h in res.hosts}
    assert by["good"].status == "ok"
    assert by["bad"].status == "failed" and "not well-formed XML" in (by["bad"].error or "")
    assert by["crash"].status == "failed" and by["crash"].error == "RuntimeError: binding bug"
    assert load(tmp_path / "snap").errors == (("bad", by["bad"].error),
                                              ("crash", "RuntimeError: binding bug"))
