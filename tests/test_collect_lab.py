"""`migplan collect` from the lab's real libvirt daemons, checked against virsh."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from planner.snapshot.read import load

pytestmark = pytest.mark.lab

UNREACHABLE = "qemu+tcp://127.0.0.250/system"  # nothing listens there


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def same(printed: str, stored: Path) -> bool:
    """virsh prints libvirt's document plus a newline or two of its own."""
    text = stored.read_text()
    return printed.startswith(text) and not printed[len(text):].strip()


def _assert_host_equals_virsh(host_dir: Path, uri: str) -> None:
    assert same(virsh(uri, "capabilities"), host_dir / "capabilities.xml")
    assert same(virsh(uri, "domcapabilities", "--virttype", "kvm"),
                host_dir / "domcapabilities.xml")
    assert same(virsh(uri, "domcapabilities", "--virttype", "qemu"),
                host_dir / "domcapabilities-qemu.xml")
    names = sorted(n for n in virsh(uri, "list", "--all", "--name").splitlines() if n)
    index = json.loads((host_dir / "domains.json").read_text())
    assert sorted(g["name"] for g in index) == names
    persistent = {n for n in virsh(uri, "list", "--all", "--persistent", "--name").splitlines()
                  if n}
    for g in index:
        assert same(virsh(uri, "dumpxml", g["name"]), host_dir / g["file"])
        assert g["persistent"] == (g["name"] in persistent)
        assert g["state"] == virsh(uri, "domstate", g["name"]).strip().replace(" ", "")
    facts = json.loads((host_dir / "host.json").read_text())
    assert facts["hostname"] == virsh(uri, "hostname").strip()
    assert facts["errors"] == {}


def test_collect_from_3_lab_hosts_equals_what_virsh_reports(lab, tmp_path):
    out = tmp_path / "snap"
    r = run_cli("collect", "--lab", "--out", str(out), env={"MIGPLAN_LAB_DIR": str(lab.state_dir)})
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    uris = lab.uris()
    assert {h["name"]: h["uri"] for h in man["hosts"]} == uris
    for name, uri in uris.items():
        _assert_host_equals_virsh(out / "hosts" / name, uri)
    inv = load(out)
    assert [h.name for h in inv.hosts] == list(uris)
    for h in inv.hosts:
        assert h.hypervisor == "kvm" or h.hypervisor == "qemu"
        assert h.host_model is not None and h.usable_models
        assert h.missing == ()
        assert len(h.domains) == 2


def test_one_unreachable_uri_among_lab_hosts_exits_5_and_the_others_are_intact(lab, tmp_path):
    out = tmp_path / "snap"
    uris = list(lab.uris().values())
    r = run_cli("collect", *uris, UNREACHABLE, "--out", str(out), "--timeout", "60")
    assert r.returncode == 5, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    status = {h["uri"]: h for h in man["hosts"]}
    assert status[UNREACHABLE]["status"] == "failed"
    assert status[UNREACHABLE]["error_kind"] == "unreachable"
    for uri in uris:
        assert status[uri]["status"] == "ok"
        _assert_host_equals_virsh(out / status[uri]["dir"], uri)
