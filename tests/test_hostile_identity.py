"""Identity: one host under two names, two guests under one name, host lists given twice
(issue 14 item 6).

Hosts are identified by their host UUID, as libvirt identifies them: the same host
reached twice is planned once (with a warning), and no move to a host with the
source's UUID is approved.  A guest name two hosts share needs --source (or the
guest's UUID).  The lab's hosts are found in the --state-dir `lab up` was given, and a
URI naming a lab host is that host.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"


def _snap(tmp_path: Path) -> Path:
    s = tmp_path / "snap"
    shutil.copytree(FIXTURE, s)
    return s


def _manifest(snap: Path, edit) -> None:
    man = json.loads((snap / "manifest.json").read_text())
    edit(man)
    (snap / "manifest.json").write_text(json.dumps(man))


def _listed_twice(tmp_path: Path) -> Path:
    """cn01 reached a second time under its address (as two URIs would give)."""
    snap = _snap(tmp_path)
    shutil.copytree(snap / "hosts" / "cn01", snap / "hosts" / "10.0.0.1")

    def edit(man):
        entry = dict(man["hosts"][0], name="10.0.0.1", dir="hosts/10.0.0.1",
                     uri="qemu+ssh://root@10.0.0.1/system")
        man["hosts"].append(entry)
    _manifest(snap, edit)
    return snap


def test_a_host_reached_twice_is_planned_once_with_a_warning(tmp_path):
    snap = _listed_twice(tmp_path)
    r = run_cli("recommend", str(snap), "--format", "json")
    doc = json.loads(r.stdout)
    assert [h["name"] for h in doc["hosts"]] == ["cn01", "cn02", "cn03", "cn04", "cn05"]
    assert any("10.0.0.1 and cn01 are one host" in w for w in doc["warnings"])
    assert "Warning: 10.0.0.1 and cn01 are one host" in r.stderr
    assert len(doc["guests"]) == 17  # cn01's guests once


def test_check_never_approves_a_move_to_the_guests_own_host(tmp_path):
    snap = _listed_twice(tmp_path)
    r = run_cli("check", "cn01-web", "10.0.0.1", "--snapshot", str(snap), "--format", "json")
    assert r.returncode == 3, r.stdout
    doc = json.loads(r.stdout)
    assert doc["reasons"][0]["code"] == "destination.same-host"


def test_two_machines_with_one_uuid_stay_two_and_moves_between_them_are_refused(tmp_path):
    """Firmware that gives every board the same SMBIOS UUID: libvirt refuses to migrate
    between two such hosts, so migplan refuses too, and says why."""
    snap = _snap(tmp_path)
    uuid = None
    for h in ("cn01", "cn02"):
        caps = snap / "hosts" / h / "capabilities.xml"
        text = caps.read_text()
        start = text.index("<uuid>") + 6
        uuid = uuid or text[start:text.index("</uuid>")]
        caps.write_text(text[:start] + uuid + text[text.index("</uuid>"):])
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap), "--format", "json")
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    v = doc["reasons"][0]
    assert v["code"] == "destination.same-host" and "refuses" in v["message"]
    assert "report the same host UUID" in r.stderr
    rec = json.loads(run_cli("recommend", str(snap), "--format", "json").stdout)
    assert len(rec["hosts"]) == 5
    web = next(g for g in rec["guests"] if g["guest"] == "cn01-web")
    assert "cn02" not in web["destinations"]


def _same_name_on_two_hosts(tmp_path: Path) -> Path:
    snap = _snap(tmp_path)
    src = snap / "hosts" / "cn03" / "domains"
    xml = (snap / "hosts" / "cn01" / "domains" / "cn01-web.xml").read_text()
    xml = xml.replace("02bce97f-2944-5b8b-aa60-f04f56daf872",
                      "aaaaaaaa-2944-5b8b-aa60-f04f56daf872")
    (src / "cn01-web.xml").write_text(xml)
    index = json.loads((snap / "hosts" / "cn03" / "domains.json").read_text())
    index.append({"name": "cn01-web", "uuid": "aaaaaaaa-2944-5b8b-aa60-f04f56daf872",
                  "state": "running", "persistent": True, "file": "domains/cn01-web.xml"})
    (snap / "hosts" / "cn03" / "domains.json").write_text(json.dumps(index))
    return snap


def test_a_guest_name_on_two_hosts_needs_source_or_a_uuid(tmp_path):
    snap = _same_name_on_two_hosts(tmp_path)
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap))
    assert r.returncode == 2
    assert "on several hosts" in r.stderr and "cn01" in r.stderr and "cn03" in r.stderr
    assert "--source" in r.stderr
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap), "--source", "cn03",
                "--format", "json")
    assert json.loads(r.stdout)["source"] == "cn03"
    r = run_cli("check", "02bce97f-2944-5b8b-aa60-f04f56daf872", "cn02", "--snapshot",
                str(snap), "--format", "json")
    assert json.loads(r.stdout)["source"] == "cn01"
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap), "--source", "cn02")
    assert r.returncode == 2 and "not on cn02" in r.stderr


@pytest.mark.parametrize("cmd", [
    ("migrate", "vm", "h2", "--lab", "--snapshot", "SNAP", "--dry-run"),
    ("drain", "h1", "--lab", "--snapshot", "SNAP"),
])
def test_lab_and_snapshot_together_is_a_usage_error(tmp_path, cmd):
    snap = _snap(tmp_path)
    r = run_cli(*[str(snap) if a == "SNAP" else a for a in cmd])
    assert r.returncode == 2, r.stderr
    assert "--lab and --snapshot" in r.stderr


def test_state_dir_without_lab_is_a_usage_error(tmp_path):
    r = run_cli("collect", "test:///default", "--state-dir", str(tmp_path),
                "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "--state-dir" in r.stderr


def test_uri_spellings_of_one_daemon_are_one_host():
    from planner.collect.sources import Target, dedupe, same_uri

    assert same_uri("qemu+tcp://127.0.0.41/system", "qemu+tcp://127.0.0.41:16509/system")
    assert same_uri("qemu+ssh://root@CN1/system", "qemu+ssh://cn1:22/system")
    assert same_uri("qemu://cn1/system", "qemu+tls://cn1:16514/system")
    assert not same_uri("qemu+tcp://127.0.0.41/system", "qemu+tcp://127.0.0.42/system")
    assert not same_uri("qemu+tcp://cn1/system", "qemu+ssh://cn1/system")
    assert len(dedupe([Target("qemu+tcp://127.0.0.41/system"),
                       Target("qemu+tcp://127.0.0.41:16509/system/")])) == 1


# ---- the lab ---------------------------------------------------------------------------------


def _elsewhere(tmp_path: Path) -> dict[str, str]:
    """$MIGPLAN_LAB_DIR pointing at an empty directory: only --state-dir finds the lab."""
    (tmp_path / "no-lab").mkdir()
    return {"MIGPLAN_LAB_DIR": str(tmp_path / "no-lab")}


@pytest.mark.lab
def test_collect_migrate_and_drain_find_the_lab_in_its_state_dir(lab, tmp_path):
    env = _elsewhere(tmp_path)
    sd = str(lab.state_dir)
    r = run_cli("collect", "--lab", "--state-dir", sd, "--out", str(tmp_path / "s"), env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("migrate", "lab1-vm1", "lab2", "--lab", "--state-dir", sd, "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("drain", "lab1", "--lab", "--state-dir", sd, "--format", "json", env=env,
                timeout=300)
    assert r.returncode in (0, 3), r.stderr
    assert json.loads(r.stdout)["plan"]["host"] == "lab1"
    r = run_cli("migrate", "lab1-vm1", "lab2", "--lab", "--dry-run", env=env)
    assert r.returncode == 2 and "no lab in" in r.stderr


@pytest.mark.lab
def test_a_uri_that_names_a_lab_host_is_that_host(lab, tmp_path):
    env = {"MIGPLAN_LAB_DIR": str(lab.state_dir)}
    spelled = f"qemu+tcp://{lab.host('lab2').address}:16509/system"  # libvirtd's port spelled
    # the guest runs on lab2: naming lab2 by another spelling is its own host
    r = run_cli("migrate", "lab2-vm1", spelled, "--lab", "--dry-run", env=env)
    assert r.returncode == 2, r.stderr
    assert "already runs on lab2" in r.stderr and "several hosts" not in r.stderr
    # and as a destination it is lab2, with the lab's URI
    r = run_cli("migrate", "lab1-vm1", spelled, "--lab", "--dry-run", "--format", "json",
                env=env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["destination"] == {"host": "lab2", "uri": lab.uris()["lab2"]}
    # two names for lab2 (its lab name, its address in a snapshot manifest): still one
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "manifest.json").write_text(json.dumps({"hosts": [
        *({"name": n, "uri": u, "status": "ok"} for n, u in lab.uris().items()),
        {"name": "lab2-again", "uri": spelled, "status": "ok"}]}))
    r = run_cli("migrate", "lab2-vm1", "lab3", "--snapshot", str(snap), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "several hosts" not in r.stderr
