"""The lab: real libvirtd hosts in private mount namespaces, with real QEMU guests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LAB_FIRST_IP, LAB_HOSTS, REPO, lab_unavailable_reason, run_cli
from lxml import etree

from planner import lab as labmod
from planner.lab import SHAPES, Lab, LabError, guest_xml, kvm_usable

needs_lab = pytest.mark.skipif(lab_unavailable_reason() is not None,
                               reason=lab_unavailable_reason() or "")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

# a lab of its own for the tests that stop it, right after the session lab's addresses
OWN_LAB_IP = LAB_FIRST_IP + LAB_HOSTS


def virsh(uri: str, *args: str) -> str:
    r = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def all_domains(lab: Lab) -> dict[str, tuple[str, etree._Element, bool]]:
    """guest name -> (host uri, live XML, persistent)"""
    out = {}
    for h in lab.status():
        for g in h.guests:
            out[g.name] = (h.uri, etree.fromstring(virsh(h.uri, "dumpxml", g.name).encode()),
                           g.persistent)
    return out


def lab_processes(state_dir: Path) -> list[str]:
    """Live processes naming the lab's state or seeing its private directories mounted."""
    found = []
    seeing = set(labmod.pids_seeing_mounts_from(state_dir))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmd = labmod.cmdline(pid)
        if labmod.pid_alive(pid) and (str(state_dir) in cmd or pid in seeing):
            found.append(f"{pid}: {cmd}")
    return found


# ---- guest definitions (no daemon needed) ----------------------------------------------------


def test_guest_xml_is_diskless_pinned_and_names_its_cpu_model():
    shape = next(s for s in SHAPES if s.pinned and s.cpu == "kvm64")
    dom = etree.fromstring(guest_xml("g", shape, kvm=True, ncpus=2).encode())
    assert dom.get("type") == "kvm"
    assert dom.find("devices/disk") is None
    assert dom.find("os/boot").get("dev") == "network"
    assert dom.find("devices/memballoon").get("model") == "none"
    assert dom.find("devices/serial").get("type") == "pty"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in dom.iterfind("cputune/vcpupin")] == \
        [(str(v), str(v % 2)) for v in range(shape.vcpus)]
    assert dom.find("cpu").get("mode") == "custom"
    assert dom.findtext("cpu/model") == "kvm64"


def test_guest_xml_without_kvm_uses_tcg_and_a_tcg_model():
    shape = next(s for s in SHAPES if s.cpu == "host-model")
    dom = etree.fromstring(guest_xml("g", shape, kvm=False).encode())
    assert dom.get("type") == "qemu"
    assert dom.findtext("cpu/model") == "qemu64"


def test_shapes_cycle_so_three_hosts_of_two_guests_show_every_shape(tmp_path):
    lab = Lab(tmp_path, hosts=3, guests=2, first_ip=OWN_LAB_IP)
    shapes = {lab.shape(h, j) for h in lab.hosts for j in (1, 2)}
    assert shapes == set(SHAPES)
    assert all(128 <= s.memory_mib <= 256 and 1 <= s.vcpus <= 2 for s in SHAPES)


def test_lab_addresses_must_stay_in_127_0_0_x(tmp_path):
    with pytest.raises(LabError, match="outside 127.0.0.1"):
        Lab(tmp_path, hosts=5, first_ip=252)


def test_busy_address_is_refused_with_what_to_do():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((f"127.0.0.{OWN_LAB_IP}", labmod.LIBVIRTD_PORT))
        s.listen()
        with pytest.raises(LabError, match=r"already in use .*--first-ip"):
            labmod.port_free_or_raise(f"127.0.0.{OWN_LAB_IP}", labmod.LIBVIRTD_PORT)


def test_every_lab_command_has_help_with_an_example():
    for args in (["lab"], ["lab", "up"], ["lab", "status"], ["lab", "down"]):
        r = run_cli(*args, "--help")
        assert r.returncode == 0 and "Example:" in r.stdout, args


def test_status_of_no_lab_says_so(tmp_path):
    r = run_cli("lab", "--state-dir", str(tmp_path / "none"), "status", "--format", "json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == []
    assert "no lab" in r.stderr


# ---- errors a user can act on ------------------------------------------------------------------


@needs_root
def test_up_as_non_root_is_refused_with_a_clear_message(tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    state = tmp_path / "state"
    r = subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "planner", "lab", "--state-dir", str(state), "up"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("Error: must run as root")
    assert "Traceback" not in r.stderr
    assert not state.exists()


@needs_root
def test_up_names_the_debian_packages_when_libvirt_and_qemu_are_missing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run_cli("lab", "--state-dir", str(tmp_path / "state"), "up", env={"PATH": str(empty)})
    assert r.returncode == 1
    for pkg in ("libvirt-daemon", "libvirt-clients", "qemu-system-x86", "apt-get install"):
        assert pkg in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.lab
@needs_lab
def test_up_on_a_busy_address_fails_before_starting_anything(tmp_path):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((f"127.0.0.{OWN_LAB_IP}", labmod.LIBVIRTD_PORT))
        s.listen()
        r = run_cli("lab", "--state-dir", str(tmp_path), "up", "--hosts", "1",
                    "--first-ip", str(OWN_LAB_IP))
    assert r.returncode == 1
    assert f"Error: 127.0.0.{OWN_LAB_IP}:16509 is already in use" in r.stderr
    assert lab_processes(tmp_path) == []


@pytest.mark.lab
@needs_lab
def test_a_daemon_that_fails_to_start_is_reported_with_its_log(tmp_path, monkeypatch):
    # a real libvirtd, given a config it rejects
    monkeypatch.setattr(labmod, "libvirtd_conf", lambda addr, uuid, **kw: "listen_tcp = [\n")
    lab = Lab(tmp_path, hosts=1, guests=0, first_ip=OWN_LAB_IP)
    with pytest.raises(LabError) as exc:
        lab.up()
    msg = str(exc.value)
    assert f"libvirtd for lab1 (127.0.0.{OWN_LAB_IP}) exited with code" in msg
    assert "last lines of" in msg and "libvirtd.conf" in msg
    assert lab.status()[0].running is False
    lab.down()


# ---- the session lab ---------------------------------------------------------------------------


@pytest.mark.lab
def test_up_starts_hosts_that_answer_with_distinct_uuids_and_hostnames(lab):
    uris = lab.uris()
    assert uris == {f"lab{i}": f"qemu+tcp://127.0.0.{LAB_FIRST_IP - 1 + i}/system" for i in (1, 2, 3)}
    uuids, hostnames = set(), set()
    for uri in uris.values():
        caps = etree.fromstring(virsh(uri, "capabilities").encode())
        uuids.add(caps.findtext("host/uuid"))
        hostnames.add(virsh(uri, "hostname").strip())
    assert len(uuids) == 3
    assert hostnames == set(uris)
    assert all(h.running and h.pid for h in lab.status())


@pytest.mark.lab
def test_guests_have_the_promised_shapes(lab):
    doms = all_domains(lab)
    assert len(doms) == 6
    assert all(g.state == "running" for h in lab.status() for g in h.guests)
    kinds = set()
    for name, (_uri, dom, persistent) in doms.items():
        assert dom.get("type") == ("kvm" if kvm_usable() else "qemu"), name
        mib = int(dom.findtext("memory")) // 1024  # libvirt reports KiB
        assert 128 <= mib <= 256
        assert 1 <= int(dom.findtext("vcpu")) <= 2
        assert dom.find("devices/disk") is None
        assert dom.find("os/boot").get("dev") == "network"
        assert dom.find("devices/memballoon").get("model") == "none"
        assert dom.find("devices/serial").get("type") == "pty"
        if dom.find("cputune/vcpupin") is not None:
            kinds.add("pinned")
        # Live XML shows host-model expanded to a custom model too (kvm64 + features on this
        # nested AMD host), but always with the host's <vendor>; a named model has none.
        cpu = dom.find("cpu")
        if cpu.get("mode") == "custom" and cpu.findtext("model") == "kvm64" \
                and cpu.find("vendor") is None:
            kinds.add("custom-model")
        kinds.add("persistent" if persistent else "transient")
    inactive_modes = {
        etree.fromstring(virsh(uri, "dumpxml", "--inactive", name).encode()).find("cpu").get("mode")
        for name, (uri, _dom, persistent) in doms.items() if persistent
    }
    assert "host-model" in inactive_modes
    assert kinds == {"pinned", "custom-model", "persistent", "transient"}
    assert len({int(d.findtext("memory")) for _u, d, _p in doms.values()}) >= 3


@pytest.mark.lab
def test_up_twice_keeps_running_hosts_and_guests(lab):
    before = lab.status()
    again = Lab(lab.state_dir)  # as a second `migplan lab up` would: from the recorded state
    after = again.up()
    assert [(h.name, h.pid) for h in after] == [(h.name, h.pid) for h in before]
    assert [h.guests for h in after] == [h.guests for h in before]
    r = run_cli("lab", "--state-dir", str(lab.state_dir), "up")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("already running") == 3


@pytest.mark.lab
def test_status_json_lists_hosts_and_guests(lab):
    r = run_cli("lab", "--state-dir", str(lab.state_dir), "status", "--format", "json")
    assert r.returncode == 0, r.stderr
    hosts = json.loads(r.stdout)
    assert [h["uri"] for h in hosts] == list(lab.uris().values())
    assert all(h["running"] and len(h["guests"]) == 2 for h in hosts)
    assert set(hosts[0]["guests"][0]) == {"name", "state", "persistent"}


@pytest.mark.lab
def test_a_lab_guest_live_migrates_between_two_lab_hosts(lab):
    uris = lab.uris()
    src, dst = uris["lab1"], uris["lab2"]
    guest = next(g.name for g in lab.status()[0].guests if g.persistent)

    def migrate(name: str, a: str, b: str) -> None:
        virsh(a, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", name, b)

    migrate(guest, src, dst)
    try:
        assert virsh(dst, "domstate", guest).strip() == "running"
        assert guest in virsh(dst, "list", "--persistent", "--name").split()
        assert guest not in virsh(src, "list", "--all", "--name").split()
    finally:
        migrate(guest, dst, src)  # hand the session lab back as it was
    assert virsh(src, "domstate", guest).strip() == "running"


# ---- a lab of its own, stopped by the test ----------------------------------------------------------


def qemu_pids(state: Path) -> set[int]:
    return {int(p.split(":")[0]) for p in lab_processes(state) if "qemu-system" in p}


@pytest.mark.lab
@needs_lab
def test_lab_grows_restarts_a_dead_host_and_goes_down_without_leftovers(tmp_path):
    state = tmp_path / "state"
    lab = Lab(state)

    def up(*args: str) -> None:
        r = run_cli("lab", "up", "--state-dir", str(state), "--guests", "2",
                    "--first-ip", str(OWN_LAB_IP), *args)
        assert r.returncode == 0, r.stderr

    try:
        up("--hosts", "1")
        (lab1,) = lab.status()
        up("--hosts", "2")  # grows: lab1 kept, lab2 started
        hosts = lab.status()
        assert hosts[0] == lab1
        assert [len(h.guests) for h in hosts] == [2, 2] and all(h.running for h in hosts)
        assert len(qemu_pids(state)) == 4
        assert {h.pid for h in hosts} <= set(labmod.pids_seeing_mounts_from(state))

        # lab2's daemon dies and leaves its QEMU processes behind
        os.kill(hosts[1].pid, signal.SIGKILL)
        labmod.kill_and_wait(hosts[1].pid)
        assert [h.running for h in lab.status()] == [True, False]
        orphans = qemu_pids(state)
        assert len(orphans) == 4

        up()  # restarts lab2 from scratch, sweeping its orphans; lab1 untouched
        again = lab.status()
        assert again[0] == lab1 and again[1].running and len(again[1].guests) == 2
        assert len(qemu_pids(state)) == 4 and len(qemu_pids(state) & orphans) == 2

        # and once more, so that down meets orphans too
        os.kill(again[1].pid, signal.SIGKILL)
        labmod.kill_and_wait(again[1].pid)
    finally:
        r = run_cli("lab", "down", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert not any(labmod.pid_alive(h.pid) for h in again)
    assert lab_processes(state) == []
    assert labmod.pids_seeing_mounts_from(state) == []
    assert not (state / "lab.json").exists() and not (state / "hosts").exists()
    assert Lab(state).status() == []
    for h in again:
        with socket.socket() as s:
            assert s.connect_ex((h.address, labmod.LIBVIRTD_PORT)) != 0
