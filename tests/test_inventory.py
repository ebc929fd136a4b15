"""planner.snapshot.read.load: fixtures, hand-made snapshots, hostile and broken input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from lxml import etree

from planner.errors import InputError
from planner.snapshot.read import load

FIXTURES = REPO / "fixtures"
FIXTURE_DIRS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
SCHEMAS = Path("/usr/share/libvirt/schemas")


def _composed(d: Path) -> bool:
    man = d / "manifest.json"
    return not man.exists() or "composed_by" in json.loads(man.read_text())


# Captured fixtures hold what real libvirt printed; libvirt 9.0's own schema
# refuses some of it (the host <cpu> of a nested guest), so only composed ones
# are checked against the schemas.
COMPOSED_DIRS = [d for d in FIXTURE_DIRS if _composed(d)]


@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=lambda p: p.name)
def test_every_fixture_loads(fixture):
    inv = load(fixture)
    assert inv.hosts
    names = [h.name for h in inv.hosts]
    assert len(set(names)) == len(names)
    for h in inv.hosts:
        assert h.arch == "x86_64" and h.cpu.model and h.cells
        assert all(d.host == h.name for d in h.domains)
        if (fixture / "manifest.json").exists():
            # modern-mixed-fleet's amd03 runs a libvirt newer than any shipped catalog:
            # composed without domcapabilities, which the snapshot records as missing
            assert (h.host_model is not None and h.usable_models) or (
                "domcapabilities.xml" in " ".join(h.missing) and h.name == "amd03")
            assert h.libvirt_version and h.qemu_version
            assert all(c.free_kib is not None for c in h.cells)


@pytest.mark.parametrize("kind, pattern", [
    ("domain", "hosts/*/domains/*.xml"), ("capability", "hosts/*/capabilities.xml"),
    ("domaincaps", "hosts/*/domcapabilities.xml"), ("storagepool", "hosts/*/pools/*.xml"),
])
def test_composed_fixtures_are_valid_libvirt_xml(kind, pattern):
    if not (SCHEMAS / f"{kind}.rng").exists():
        pytest.skip("libvirt's XML schemas are not installed")
    schema = etree.RelaxNG(etree.parse(str(SCHEMAS / f"{kind}.rng")))
    files = [f for d in COMPOSED_DIRS for f in d.glob(pattern)]
    assert files
    bad = [f"{f}: {schema.error_log.last_error}" for f in files
           if not schema.validate(etree.parse(str(f)))]
    assert not bad


def test_fixtures_are_what_the_script_builds():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_fixtures.py"), "--check"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_numa_pinned_guests_carry_pinning_numatune_and_huge_pages():
    inv = load(FIXTURES / "numa-pinned-guests")
    a = inv.host("numa-a")
    assert a is not None and len(a.cells) == 2
    page1g = {c.id: next(p for p in c.pages if p.size_kib == 1048576) for c in a.cells}
    assert (page1g[0].total, page1g[0].free) == (64, 40)
    assert (page1g[1].total, page1g[1].free) == (64, 56)
    dpdk = next(d for d in a.domains if d.name == "dpdk-router")
    assert dpdk.vcpupin == ((0, (4,)), (1, (5,)), (2, (6,)), (3, (7,)))
    assert dpdk.emulatorpin == (4, 5, 6, 7)
    assert (dpdk.numatune_mode, dpdk.numatune_nodes) == ("strict", (0,))
    assert dpdk.hugepages_kib == (1048576,)
    assert dpdk.vnuma_cells == ((0, (0, 1, 2, 3), 8388608),)
    vnuma = next(d for d in a.domains if d.name == "db-vnuma")
    assert vnuma.hugepages_kib == (2048,)
    assert vnuma.vnuma_cells == ((0, (0, 1), 2097152), (1, (2, 3), 2097152))
    assert vnuma.numatune_nodes == (0, 1)
    floating = next(d for d in a.domains if d.name == "floating")
    assert (floating.numatune_mode, floating.vcpupin) == ("preferred", ())


def test_storage_backends_disks_and_pools():
    inv = load(FIXTURES / "storage-backends")
    st = inv.host("st-01")
    assert st is not None and st.pools is not None
    assert {p.name: (p.type, p.shared) for p in st.pools} == {
        "vms": ("rbd", True), "instances-nfs": ("netfs", True),
        "nova-vg": ("logical", False), "images": ("dir", False)}
    disks = {d.name: d.disks for d in st.domains}
    ceph = disks["ceph-vm"][0]
    assert (ceph.source_type, ceph.protocol) == ("network", "rbd")
    assert ceph.source is not None and ceph.source.startswith("rbd:vms/")
    assert disks["lvm-vm"][0].source_type == "block"
    vol = disks["local-qcow2"][1]
    assert (vol.source_type, vol.pool, vol.source) == ("volume", "images",
                                                       "images/local-qcow2-data.qcow2")
    cdrom = disks["nfs-vm"][1]
    assert cdrom.device == "cdrom" and cdrom.readonly
    lun = disks["cluster-node"][1]
    assert lun.shareable and lun.protocol == "iscsi"
    states = {d.name: (d.state, d.persistent) for d in st.domains}
    assert states["stopped-local"] == ("shutoff", True)


def test_hostdev_guests():
    inv = load(FIXTURES / "hostdev-guests")
    devs = {d.name: d.hostdevs for d in inv.domains()}
    assert [(h.kind, h.address) for h in devs["ml-train"]] == [("pci", "0000:3b:00.0")]
    assert [h.kind for h in devs["vgpu-desktop"]] == ["mdev"]
    assert [(h.kind, h.address) for h in devs["license-dongle"]] == [("usb", "0x0529:0x0001")]
    assert [(h.kind, h.address) for h in devs["vnf-sriov"]] == [
        ("sriov-interface", "0000:5e:02.3"), ("sriov-interface", "0000:5e:02.4")]
    assert devs["plain"] == ()


def test_hand_made_snapshot_says_what_it_could_not_check():
    inv = load(FIXTURES / "hand-made-capabilities-only")
    assert [h.name for h in inv.hosts] == ["cn-a", "cn-b"]
    h = inv.hosts[0]
    assert h.host_model is None and h.usable_models is None and h.pools is None
    assert h.libvirt_version is None and h.cells[0].free_kib is None
    text = " ".join(h.missing)
    for what in ("domcapabilities.xml", "host.json", "storage pools", "guests"):
        assert what in text
    assert inv.collected_at is None and inv.errors == ()


def test_intel_amd_mixed_has_both_vendors():
    inv = load(FIXTURES / "intel-amd-mixed")
    assert {h.cpu.vendor for h in inv.hosts} == {"Intel", "AMD"}
    amd = inv.host("amd-03")
    assert amd is not None and "Cascadelake-Server" not in (amd.usable_models or ())
    assert "EPYC-Rome" in (amd.usable_models or ())


def _hand_made(tmp_path: Path, caps: bytes, name: str = "cn1") -> Path:
    d = tmp_path / "snap" / "hosts" / name
    d.mkdir(parents=True)
    (d / "capabilities.xml").write_bytes(caps)
    return tmp_path / "snap"


CAPS = (FIXTURES / "hand-made-capabilities-only" / "hosts" / "cn-a" / "capabilities.xml")


def test_hostile_xml_is_refused(tmp_path):
    xxe = (b"<?xml version='1.0'?>\n<!DOCTYPE c [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>\n"
           b"<capabilities><host><cpu><arch>&x;</arch></cpu></host></capabilities>")
    with pytest.raises(InputError, match="DOCTYPE/ENTITY declarations are refused"):
        load(_hand_made(tmp_path, xxe))


def test_hostile_guest_xml_in_a_collected_snapshot_is_refused(tmp_path):
    snap = tmp_path / "s"
    shutil.copytree(FIXTURES / "hostdev-guests", snap)
    (snap / "hosts" / "gpu-01" / "domains" / "plain.xml").write_bytes(
        b"<!DOCTYPE d [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]><domain>&b;</domain>")
    with pytest.raises(InputError, match="plain.xml: DOCTYPE"):
        load(snap)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"<capabilities><host>", "not well-formed XML"),
    (b"<domain type='kvm'/>", "expected <capabilities> XML, found <domain>"),
    (b"<capabilities><host/></capabilities>", r"no <host><cpu> element"),
])
def test_broken_capabilities_are_clear_errors(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load(_hand_made(tmp_path, content))


def test_missing_dir_and_empty_snapshot(tmp_path):
    with pytest.raises(InputError, match="no such snapshot directory"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no manifest.json and no hosts/"):
        load(tmp_path / "empty")
    (tmp_path / "empty" / "hosts").mkdir()
    with pytest.raises(InputError, match="the snapshot has no hosts"):
        load(tmp_path / "empty")
    d = tmp_path / "nocaps" / "hosts" / "cn1"
    d.mkdir(parents=True)
    with pytest.raises(InputError, match="no capabilities.xml"):
        load(tmp_path / "nocaps")


def test_duplicate_host_names_are_refused(tmp_path):
    snap = _hand_made(tmp_path, CAPS.read_bytes(), "cn1")
    _hand_made(tmp_path, CAPS.read_bytes(), "CN1")
    with pytest.raises(InputError, match="duplicate host names"):
        load(snap)
    snap2 = tmp_path / "s2"
    shutil.copytree(FIXTURES / "intel-amd-mixed", snap2)
    man = json.loads((snap2 / "manifest.json").read_text())
    man["hosts"][1]["name"] = man["hosts"][0]["name"]
    (snap2 / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match="duplicate host name 'intel-01'"):
        load(snap2)


def test_an_index_pointing_outside_the_snapshot_is_refused(tmp_path):
    snap = tmp_path / "s"
    shutil.copytree(FIXTURES / "hostdev-guests", snap)
    idx = snap / "hosts" / "spare-01" / "domains.json"
    idx.write_text(json.dumps([{"name": "x", "uuid": None, "state": "running",
                                "persistent": True, "file": "../../../../etc/passwd"}]))
    with pytest.raises(InputError, match="points outside"):
        load(snap)


def test_broken_manifest(tmp_path):
    snap = tmp_path / "s"
    shutil.copytree(FIXTURES / "hostdev-guests", snap)
    (snap / "manifest.json").write_text("")
    with pytest.raises(InputError, match="manifest.json: the file is empty"):
        load(snap)
    (snap / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="manifest.json: not valid JSON"):
        load(snap)


def test_guests_without_domains_json_get_state_from_the_live_xml(tmp_path):
    snap = tmp_path / "s"
    shutil.copytree(FIXTURES / "storage-backends", snap)
    (snap / "manifest.json").unlink()
    for f in (snap / "hosts").glob("*/domains.json"):
        f.unlink()
    inv = load(snap)
    st = inv.host("st-01")
    assert st is not None
    states = {d.name: (d.state, d.persistent) for d in st.domains}
    assert states["ceph-vm"] == ("running", None)
    assert states["stopped-local"] == ("shutoff", None)
    assert any("domains.json" in m for m in st.missing)
