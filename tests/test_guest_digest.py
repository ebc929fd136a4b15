"""Guest digests in domains.json: what a guest's XML parses to, used by load only
while the XML's SHA-256 matches; anything else falls back to parsing the XML.

The loaded inventory must be the same with and without digests; an edited XML,
a digest of another version, a wrong shape or wrong types must all end in the
XML being parsed; hostile bytes are refused as they are without a digest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from planner.errors import InputError
from planner.parse.digest import DIGEST_VERSION, domain_digest, domain_from_digest
from planner.parse.guest import parse_domain
from planner.snapshot import read as inventory
from planner.snapshot.read import load
from planner.snapshot.write import domains_json

# Written by scripts/make_fixtures.py through collect's writer.  lab-3-hosts was
# captured from the lab by a collect that wrote no digests yet: kept so, as
# such snapshots exist (every guest parsed; test_load_equivalence covers it).
FIXTURES = sorted(p for p in (REPO / "fixtures").iterdir()
                  if p.is_dir() and p.name != "lab-3-hosts"
                  and any(p.glob("hosts/*/domains.json")))


def _strip(snap: Path) -> None:
    for f in snap.glob("hosts/*/domains.json"):
        index = json.loads(f.read_bytes())
        for e in index:
            e.pop("digest", None)
        f.write_bytes(domains_json(index))


def _sources(inv: inventory.Inventory) -> list[str]:
    return [d.cpu.source for h in inv.hosts for d in h.domains if d.cpu is not None]


def _count_parses(monkeypatch) -> list[str]:
    parsed: list[str] = []
    real = inventory.parse_domain

    def counting(xml, source, **kw):
        parsed.append(source)
        return real(xml, source, **kw)

    monkeypatch.setattr(inventory, "parse_domain", counting)
    return parsed


def test_the_fixtures_carry_digests_as_collect_writes_them():
    assert FIXTURES
    for snap in FIXTURES:
        for f in snap.glob("hosts/*/domains.json"):
            for e in json.loads(f.read_bytes()):
                xml = (f.parent / e["file"]).read_bytes()
                assert e["digest"]["v"] == DIGEST_VERSION
                assert e["digest"]["sha256"] == hashlib.sha256(xml).hexdigest()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_load_with_digests_equals_load_parsing_every_xml(fixture, tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    shutil.copytree(fixture, plain)
    _strip(plain)
    parsed = _count_parses(monkeypatch)
    with_digests = load(fixture)
    assert parsed == []  # every guest came from its digest
    without = load(plain)
    assert len(parsed) == sum(len(h.domains) for h in without.hosts) > 0
    assert with_digests.hosts == without.hosts
    # messages name the right guest (the snapshot's own path aside)
    assert [x.replace(str(fixture), "SNAP") for x in _sources(with_digests)] == \
        [x.replace(str(plain), "SNAP") for x in _sources(without)]


def _one_guest(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    snap = tmp_path / "snap"
    shutil.copytree(REPO / "fixtures" / "numa-pinned-guests", snap)
    index_file = next(snap.glob("hosts/*/domains.json"))
    index = json.loads(index_file.read_bytes())
    # a guest with pinning, NUMA cells and huge pages: every kind of field
    entry = max(index, key=lambda e: len(json.dumps(e["digest"])))
    return snap, index_file, index_file.parent / entry["file"], entry


def test_an_edited_xml_is_parsed_not_taken_from_its_stale_digest(tmp_path, monkeypatch):
    snap, _, xml_file, entry = _one_guest(tmp_path)
    before = next(d for h in load(snap).hosts for d in h.domains if d.name == entry["name"])
    xml = xml_file.read_bytes()
    old = f">{before.vcpus}</vcpu>".encode()
    assert old in xml
    xml_file.write_bytes(xml.replace(old, f">{before.vcpus + 3}</vcpu>".encode(), 1))
    parsed = _count_parses(monkeypatch)
    after = next(d for h in load(snap).hosts for d in h.domains if d.name == entry["name"])
    assert after.vcpus == before.vcpus + 3
    assert parsed == [f"{snap}/hosts/{xml_file.parent.parent.name}/{entry['file']}"]


def _mutations(d: dict) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("not an object", [1, 2]), ("no version", {})]
    for k, v in (("v", DIGEST_VERSION + 1), ("v", str(DIGEST_VERSION)), ("sha256", "0" * 64),
                 ("sha256", None), ("d", None), ("d", d["d"][:-1]), ("d", [*d["d"], 1])):
        m = copy.deepcopy(d)
        m[k] = v
        out.append((f"{k}={v!r:.20}", m))
    bad_fields = {0: [None, 5, ""], 1: [7], 2: [None], 3: [-1, "8", True, 1.5], 4: [None, -2],
                  5: [3, "<cpu", "<!DOCTYPE x><cpu/>", "<cpu><model>Nope</model></cpu>"],
                  9: [[[0]], [["0", [1]]], "x"], 10: [[-1], ["1"]], 12: [[True]],
                  13: [[[0, [0]]]], 14: [[0.5]], 15: [[["vda"]], [[1, "disk", "file", None, None,
                                                                  None, False, False]]],
                  16: [[["pci"]], [[None, None]]], 17: ["1"],
                  18: [None, "x", [1]],
                  19: [{}, ["x"], [1] * 16, ["n", "f", "128"] + [None] * 13]}
    for i, values in bad_fields.items():
        for v in values:
            m = copy.deepcopy(d)
            m["d"][i] = v
            out.append((f"d[{i}]={v!r:.20}", m))
    return out


def test_a_digest_that_cannot_stand_for_the_xml_is_ignored(tmp_path):
    snap, _, xml_file, entry = _one_guest(tmp_path)
    xml = xml_file.read_bytes()
    truth = parse_domain(xml, "g.xml", host="h", meta=entry)
    assert domain_from_digest(entry["digest"], xml, "g.xml", host="h", meta=entry) == truth
    for what, bad in _mutations(entry["digest"]):
        got = domain_from_digest(bad, xml, "g.xml", host="h", meta=entry)
        # None: the loader parses the XML.  (A mutated CPU model still parses:
        # libvirt's model names are checked later, by the engine.)
        assert got is None or (what.startswith("d[5]") and got.cpu != truth.cpu), what


def test_mangled_digests_in_a_snapshot_load_as_the_xml_says(tmp_path):
    snap, index_file, _, _ = _one_guest(tmp_path)
    truth = load(snap)
    index = json.loads(index_file.read_bytes())
    for n, e in enumerate(index):
        e["digest"] = _mutations(e["digest"])[n % 9][1]  # the non-field mutations
    index_file.write_bytes(domains_json(index))
    assert load(snap).hosts == truth.hosts


@pytest.mark.parametrize("hostile", [b"", b"  \n", b"<!DOCTYPE domain [<!ENTITY x 'y'>]><domain/>",
                                     b"<domain>\x00</domain>"])
def test_hostile_bytes_are_refused_even_with_a_matching_digest(tmp_path, hostile):
    snap, index_file, xml_file, entry = _one_guest(tmp_path)
    index = json.loads(index_file.read_bytes())
    for e in index:
        if e["name"] == entry["name"]:
            e["digest"]["sha256"] = hashlib.sha256(hostile).hexdigest()
    index_file.write_bytes(domains_json(index))
    xml_file.write_bytes(hostile)
    with pytest.raises(InputError) as err:
        load(snap)
    _strip(snap)
    with pytest.raises(InputError) as plain:
        load(snap)
    assert str(err.value) == str(plain.value)


def test_a_guest_that_does_not_parse_gets_no_digest():
    assert domain_digest(b"<domain><name>x</name>") is None
    assert domain_digest(b"<domain><name>x</name></domain>") is None  # no <memory>
    d = domain_digest(b"<domain type='kvm'><name>x</name><memory>1024</memory></domain>")
    assert d is not None and d["d"][:5] == ["x", None, "shutoff", 1024, 1]


def test_the_digest_covers_every_field_the_parser_fills():
    """A new field in Domain, Disk or HostDev needs a new digest format (and
    DIGEST_VERSION bumped), or loads from digests would lack it."""
    from dataclasses import fields

    from planner.model import Disk, Domain, HostDev, NovaInstance

    # from domains.json / the loader: persistent, host, size_bytes (domains.json "disks")
    assert [f.name for f in fields(Domain)] == [
        "name", "uuid", "state", "persistent", "memory_kib", "vcpus", "cpu", "machine", "arch",
        "domain_type", "vcpupin", "emulatorpin", "numatune_mode", "numatune_nodes",
        "vnuma_cells", "hugepages_kib", "disks", "hostdevs", "tsc_frequency", "host",
        "networks", "nova"]
    # uuid: the domain's
    assert [f.name for f in fields(NovaInstance)] == [
        "uuid", "name", "flavor", "flavor_memory_mib", "flavor_vcpus", "flavor_disk_gb",
        "project_id", "project_name", "root_type", "namespace", "package", "creation_time",
        "flavor_swap_mib", "flavor_ephemeral_gb", "user_id", "user_name", "root_id"]
    assert [f.name for f in fields(Disk)] == [
        "target", "device", "source_type", "source", "protocol", "pool", "readonly",
        "shareable", "size_bytes"]
    assert [f.name for f in fields(HostDev)] == ["kind", "address"]
    assert DIGEST_VERSION == 3  # 2: networks (issue 14), 3: the Nova metadata (issue 12)


def test_networks_and_disk_sizes_survive_the_digest():
    """(issue 14 item 11) a guest's networks (from its XML) and disk sizes (from
    domains.json) come out of a digest as out of parsing the XML."""
    xml = (b"<domain type='kvm'><name>n</name><memory>1024</memory><devices>"
           b"<disk type='file' device='disk'><source file='/i/n.qcow2'/><target dev='vda'/>"
           b"</disk><interface type='network'><source network='sriov-net'/></interface>"
           b"<interface type='network'><source network='default'/></interface>"
           b"<interface type='bridge'><source bridge='br0'/></interface></devices></domain>")
    meta = {"state": "running", "persistent": True,
            "disks": {"vda": {"capacity": 10, "allocation": 7, "physical": 7}}}
    parsed = parse_domain(xml, "n.xml", host="h", meta=meta)
    assert parsed.networks == ("sriov-net", "default")
    assert parsed.disks[0].size_bytes == 7
    digested = domain_from_digest(domain_digest(xml), xml, "n.xml", host="h", meta=meta)
    assert digested == parsed
