"""Devices a snapshot must see to plan right (issue 14 item 11): the bytes a block
migration copies (each local disk's allocation, collected with virDomainGetBlockInfo),
and SR-IOV VFs handed out by a libvirt network (``<interface type='network'>`` on a
network with ``<forward mode='hostdev'>``: a PCI device assigned to the guest, which
no live migration can move).

The lab parts are real: a guest with a real disk image and a real hostdev network
defined on a lab host, collected, compared with what virsh says.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_migrate import virsh

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"

SRIOV_NET = """<network>
  <name>sriov-net</name>
  <forward mode='hostdev' managed='yes'>
    <pf dev='enp59s0f0'/>
  </forward>
</network>
"""
BRIDGE_NET = """<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0'/>
</network>
"""
NIC = ("    <interface type='network'>\n      <source network='{net}'/>\n"
       "      <model type='virtio'/>\n    </interface>\n")


def _with_nic(tmp_path: Path, networks: list[str] | None, net: str = "sriov-net") -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    host = snap / "hosts" / "cn01"
    xml = host / "domains" / "cn01-web.xml"
    text = xml.read_text()
    xml.write_text(text.replace("</devices>", NIC.format(net=net) + "  </devices>", 1))
    if networks is not None:
        (host / "networks").mkdir()
        index = []
        for doc in networks:
            name = doc.split("<name>")[1].split("</name>")[0]
            (host / "networks" / f"{name}.xml").write_text(doc)
            index.append({"name": name, "file": f"networks/{name}.xml", "active": True,
                          "persistent": True})
        (host / "networks.json").write_text(json.dumps(index))
    return snap


def _hostdev(snap: Path) -> dict:
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap), "--format", "json")
    return next(v for v in json.loads(r.stdout)["reasons"] if v["rule"] == "hostdev")


def test_an_interface_on_a_hostdev_network_is_an_assigned_device(tmp_path):
    v = _hostdev(_with_nic(tmp_path, [SRIOV_NET, BRIDGE_NET]))
    assert v["verdict"] == "blocked" and v["code"] == "hostdev.assigned"
    assert "SR-IOV VF of network sriov-net" in v["message"]


def test_an_interface_on_another_network_is_no_device(tmp_path):
    v = _hostdev(_with_nic(tmp_path, [SRIOV_NET, BRIDGE_NET], net="default"))
    assert v["verdict"] == "ok"


def test_without_the_hosts_networks_the_answer_says_it_cannot_tell(tmp_path):
    v = _hostdev(_with_nic(tmp_path, None))
    assert v["verdict"] == "warn" and v["code"] == "hostdev.networks-unknown"


def test_disk_sizes_in_domains_json_are_the_bytes_a_block_migration_copies(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    f = snap / "hosts" / "cn01" / "domains.json"
    index = json.loads(f.read_text())
    index[0]["disks"] = {"vda": {"capacity": 21474836480, "allocation": 3221225472,
                                 "physical": 3221225472}}
    f.write_text(json.dumps(index))
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(snap), "--format", "json")
    v = next(v for v in json.loads(r.stdout)["reasons"] if v["rule"] == "local-storage")
    assert "block migration copies 3221225472 bytes" in v["message"], v


# ---- the lab ------------------------------------------------------------------------------------


@pytest.fixture
def devices_on_lab1(lab, tmp_path):
    """On lab1: a running guest with a 16 MiB raw disk holding 2 MiB of data, a hostdev
    network (defined: a network of VFs of a PF this machine does not have) and a shut-off
    guest with an interface on it."""
    from planner.lab import SHAPES, guest_xml

    uri = lab.uris()["lab1"]
    image = tmp_path / "disk.raw"
    with open(image, "wb") as f:
        f.write(b"\x5a" * (2 << 20))
        f.truncate(16 << 20)
    disk = (f"    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
            f"      <source file='{image}'/>\n      <target dev='vdb' bus='virtio'/>\n"
            "    </disk>\n")
    kvm = lab.accel == "kvm"
    files = {
        "disked14": guest_xml("disked14", SHAPES[0], kvm).replace("<serial", disk + "    <serial", 1),
        "vf14": guest_xml("vf14", SHAPES[0], kvm).replace(
            "<serial", NIC.format(net="sriov14").lstrip() + "    <serial", 1),
    }
    net = tmp_path / "sriov14.xml"
    net.write_text(SRIOV_NET.replace("sriov-net", "sriov14"))
    virsh(uri, "net-define", str(net))
    for name, xml in files.items():
        p = tmp_path / f"{name}.xml"
        p.write_text(xml)
        virsh(uri, "define", str(p))
    virsh(uri, "start", "disked14")
    yield uri
    for name in files:
        virsh(uri, "destroy", name, check=False)
        virsh(uri, "undefine", name, check=False)
    virsh(uri, "net-undefine", "sriov14", check=False)


def _blkinfo(uri: str, guest: str, target: str) -> dict[str, int]:
    out = virsh(uri, "domblkinfo", guest, target).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip().lower(): int(v.strip().split()[0]) for k, v in info.items()}


@pytest.mark.lab
def test_collect_stores_disk_sizes_and_networks_and_the_plan_uses_them(lab, devices_on_lab1,
                                                                     tmp_path):
    env = {"MIGPLAN_LAB_DIR": str(lab.state_dir)}
    out = tmp_path / "snap"
    r = run_cli("collect", "--lab", "--out", str(out), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    host = out / "hosts" / "lab1"
    entry = next(e for e in json.loads((host / "domains.json").read_text())
                 if e["name"] == "disked14")
    want = _blkinfo(devices_on_lab1, "disked14", "vdb")  # libvirt's own answer
    assert entry["disks"]["vdb"] == {"capacity": want["capacity"],
                                     "allocation": want["allocation"],
                                     "physical": want["physical"]}
    assert want["capacity"] == 16 << 20 and 0 < want["allocation"] < want["capacity"]
    nets = json.loads((host / "networks.json").read_text())
    assert "sriov14" in {n["name"] for n in nets}
    # the snapshot's answers
    r = run_cli("check", "vf14", "lab2", "--snapshot", str(out), "--format", "json")
    v = next(v for v in json.loads(r.stdout)["reasons"] if v["rule"] == "hostdev")
    assert v["code"] == "hostdev.assigned" and "sriov14" in v["message"]
    r = run_cli("check", "disked14", "lab2", "--snapshot", str(out), "--format", "json")
    v = next(v for v in json.loads(r.stdout)["reasons"] if v["rule"] == "local-storage")
    assert f"copies {want['allocation']} bytes" in v["message"], v
    # and migrate's plan, on fresh state: the same bytes to copy
    r = run_cli("migrate", "disked14", "lab2", "--lab", "--dry-run", "--format", "json",
                env=env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["storage_to_copy"] == [{"disk": "vdb", "source": str(tmp_path / "disk.raw"),
                                        "bytes": want["allocation"]}]
    assert plan["expected_transfer_bytes"] == plan["memory_bytes"] + want["allocation"]
