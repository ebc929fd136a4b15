"""Pure parsing of host and guest XML (no libvirt, no files)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from planner.errors import InputError
from planner.parse.guest import parse_domain
from planner.parse.host import caps_summary, parse_pool
from planner.parse.units import parse_cpuset


def test_cpusets_follow_libvirt_syntax():
    assert parse_cpuset("0-3,^2,8") == (0, 1, 3, 8)
    assert parse_cpuset(" 4 ") == (4,)
    assert parse_cpuset("") == ()
    with pytest.raises(InputError, match="invalid CPU set"):
        parse_cpuset("3-1")
    with pytest.raises(InputError, match="invalid CPU set"):
        parse_cpuset("a-b")


@pytest.mark.parametrize("ptype, shared", [
    ("netfs", True), ("rbd", True), ("gluster", True), ("iscsi", True),
    ("dir", False), ("logical", False), ("fs", False), ("disk", False), ("zfs", False),
    ("mystery", None),
])
def test_pool_sharing_follows_the_pool_type(ptype, shared):
    xml = f"<pool type='{ptype}'><name>p</name><target><path>/x</path></target></pool>"
    assert parse_pool(xml.encode(), "p.xml", True).shared is shared


def test_memory_units_and_defaults():
    xml = b"""<domain type='kvm'><name>g</name><memory unit='GiB'>4</memory>
      <vcpu current='2'>8</vcpu><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
      <memoryBacking><hugepages/></memoryBacking>
      <clock offset='utc'><timer name='tsc' frequency='2500000000'/></clock></domain>"""
    d = parse_domain(xml, "g.xml", host="h1")
    assert (d.memory_kib, d.vcpus, d.machine, d.arch) == (4 * 1024 * 1024, 8, "pc-q35-7.2",
                                                          "x86_64")
    assert d.state == "shutoff" and d.persistent is None  # no id, no domains.json
    assert d.hugepages_kib == (0,)  # <hugepages/>: the host's default size
    assert d.tsc_frequency == 2500000000 and d.cpu is None and d.host == "h1"


def test_guest_cpu_goes_through_the_cpu_parser():
    xml = b"""<domain type='kvm' id='4'><name>g</name><memory>1024</memory>
      <cpu mode='custom' match='exact'><model>Haswell-noTSX</model>
      <feature policy='disable' name='pcid'/></cpu></domain>"""
    d = parse_domain(xml, "g.xml")
    assert d.state == "running"
    assert d.cpu is not None and d.cpu.model == "Haswell-noTSX"
    assert d.cpu.feature_names("disable") == ["pcid"]
    bad = xml.replace(b"policy='disable'", b"policy='sometimes'")
    with pytest.raises(InputError, match="Invalid CPU feature policy"):
        parse_domain(bad, "g.xml")


def test_wrong_documents_are_named():
    with pytest.raises(InputError, match="expected <domain> XML, found <capabilities>"):
        parse_domain(b"<capabilities/>", "g.xml")
    with pytest.raises(InputError, match="without <name>"):
        parse_domain(b"<domain><memory>1</memory></domain>", "g.xml")
    with pytest.raises(InputError, match="unknown unit"):
        parse_domain(b"<domain><name>x</name><memory unit='parsecs'>1</memory></domain>", "g")


def test_caps_summary_for_the_test_driver():
    caps = (REPO / "fixtures" / "lab-3-hosts" / "hosts" / "lab1" / "capabilities.xml")
    s = caps_summary(caps.read_bytes())
    assert s.arch == "x86_64" and s.cell_ids == (0,)
    assert 4 in s.page_sizes_kib and "kvm" in s.domain_types


def test_only_virt_imports_libvirt_and_the_core_runs_without_it():
    importers = [p.relative_to(REPO).as_posix() for p in (REPO / "planner").rglob("*.py")
                 if any(line.strip() in ("import libvirt", "from libvirt import")
                        or line.strip().startswith("from libvirt ")
                        for line in p.read_text().splitlines())]
    assert importers == ["planner/adapters/libvirt.py"]
    # Load a snapshot in an interpreter where libvirt cannot be imported.
    code = ("import sys; sys.modules['libvirt'] = None\n"
            "from planner.snapshot.read import load\n"
            "import planner.collect.run, planner.collect.sources, planner.parse.host\n"
            "print(len(load('fixtures/storage-backends').hosts))\n"
            "assert 'click' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2"
