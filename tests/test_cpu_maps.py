"""Every libvirt cpu_map from 7.0 to 11.3 (issue 13.2): the real x86 cpu_maps of the
releases (tests/data/cpu_maps, origin in its README) load with --cpu-map DIR, 9.0's and
11.3's equal the shipped catalogs, the per-release name table is what the generator
makes of them, and the loader follows libvirt's rules for each construct."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from planner.adapters.catalogs import load_catalog, load_cpu_map_archive, name_table
from planner.cpu.catalog import Catalog
from planner.cpu.versions import decider
from planner.errors import InputError

MAPS = REPO / "tests" / "data" / "cpu_maps"
ARCHIVES = sorted(MAPS.glob("libvirt-*-x86.tar.xz"))
RELEASES = [a.name.split("-")[1] for a in ARCHIVES]


def _unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_the_archives_cover_libvirt_7_to_11():
    assert {"7.0.0", "8.1.0", "9.0.0", "9.8.0", "10.4.0", "10.7.0", "11.3.0"} <= set(RELEASES)


@pytest.mark.parametrize("archive", ARCHIVES, ids=RELEASES)
def test_a_hosts_own_cpu_map_directory_of_any_release_loads(archive, tmp_path):
    d = _unpack(archive, tmp_path / "cpu_map")
    r = run_cli("cpu-models", "--cpu-map", str(d), "--format", "json")
    assert r.returncode == 0, r.stderr
    models = [m["model"] for m in json.loads(r.stdout)["models"]]
    assert "Skylake-Server" in models and "EPYC" in models
    cat = load_catalog(d)
    assert cat.to_json()["models"] == load_cpu_map_archive(archive).to_json()["models"]


@pytest.mark.parametrize("release, shipped", [("9.0.0", "x86.json"), ("11.3.0", "x86-11.3.json")])
def test_the_shipped_catalogs_are_the_releases_cpu_maps(release, shipped):
    got = load_cpu_map_archive(MAPS / f"libvirt-{release}-x86.tar.xz").to_json()
    want = json.loads((REPO / "cpu_maps" / shipped).read_text())
    for key in ("vendors", "features", "models"):
        assert got[key] == want[key], key
    assert want["libvirt_version"] == release


def test_the_name_table_is_what_the_generator_makes_of_the_archives():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gen_cpu_maps
    finally:
        sys.path.pop(0)
    shipped = json.loads((REPO / "cpu_maps" / "libvirt-names.json").read_text())
    assert gen_cpu_maps.names_table(ARCHIVES) == shipped


def test_the_name_table_knows_what_each_release_knows():
    t = name_table()
    by = {r.name: r for r in t.releases}
    for ver, archive in zip(RELEASES, ARCHIVES, strict=True):
        cat = load_cpu_map_archive(archive)
        r = t.release_for(ver)
        assert r is not None
        assert r.models == frozenset(cat.model_by_name)
        assert r.features == frozenset(cat.feature_by_name)
    assert "SapphireRapids" not in by["9.0"].models and "SapphireRapids" in by["9.8"].models
    assert "Icelake-Server-v2" in by["11.3"].models and "Icelake-Server-v2" not in by["10.7"].models
    # no libvirt from 7.0 to 11.3 dropped or renamed a name
    assert t.renamed == {}
    for older, newer in zip(t.releases, t.releases[1:], strict=False):
        assert older.models <= newer.models and older.features <= newer.features


def test_a_host_between_two_releases_is_judged_by_the_older_one():
    t = name_table()
    assert t.release_for("8.0.0").name == "7.0"  # 8.0's own cpu_map is not in the table
    assert t.release_for("9.0.0").name == "9.0"
    assert t.release_for("10.0.0").name == "9.8"
    assert t.release_for("12.1.0").name == "11.3"  # newer libvirt keeps every name
    assert t.release_for(None) is None and t.release_for("garbage") is None
    d = decider(t, {"cn01": "11.3.0", "cn07": "9.0.0", "cn09": None})
    assert d is not None and d.unversioned == ("cn09",)
    assert not d.knows_model("SapphireRapids") and d.knows_model("Cascadelake-Server")
    assert d.who_lacks_model("SapphireRapids") == "libvirt 9.0.0 on cn07"
    d8 = decider(t, {"cn01": "11.3.0", "cn07": "8.0.0"})
    assert d8 is not None and d8.who_lacks_model("SapphireRapids") == "libvirt 8.0.0 on cn07"
    assert d8.who_lacks_model("EPYC-Milan") == (
        "libvirt 8.0.0 on cn07 (libvirt 7.0 lacks it, 8.1 has it: check that host's cpu_map)")
    assert not d.knows_feature("amx-fp16") and d.knows_feature("amx-tile")


# -- the loader's rules, each on a minimal map built from the real one's pieces --------

INDEX = """<cpus><arch name='x86'>
<include filename='x86_vendors.xml'/><include filename='x86_features.xml'/>
{body}</arch></cpus>"""
FEATURES = """<cpus>
<feature name='fpu'><cpuid eax_in='0x01' edx='0x00000001'/></feature>
<feature name='vme'><cpuid eax_in='0x01' edx='0x00000002'/></feature>
<feature name='mpx'><cpuid eax_in='0x07' ecx_in='0x00' ebx='0x00004000'/></feature>
<feature name='vmx-x'><msr index='0x0000048d' edx='0x00000001' eax='0x00000000'/></feature>
</cpus>"""
VENDORS = "<cpus><vendor name='Intel' string='GenuineIntel'/></cpus>"


def _map(models: str, body: str | None = None) -> Catalog:
    files = {"index.xml": INDEX.format(body=body if body is not None
                                       else "<include filename='m.xml'/>").encode(),
             "x86_vendors.xml": VENDORS.encode(), "x86_features.xml": FEATURES.encode(),
             "m.xml": f"<cpus>{models}</cpus>".encode()}
    return Catalog.from_libvirt_cpu_map(lambda n: files[n], "test-map")


def test_added_features_are_not_part_of_a_models_data():
    # libvirt >= 10.10 (x86ModelParseFeatures): added='yes' features are remembered only
    cat = _map("<model name='A'><decode host='on' guest='on'/><vendor name='Intel'/>"
               "<feature name='fpu'/><feature name='vmx-x' added='yes'/></model>")
    a = cat.model_by_name["A"]
    assert a.features == ("fpu",) and a.added == ("vmx-x",)
    assert a.mask == cat.feature_by_name["fpu"].mask


def test_a_model_inherits_its_ancestors_data_less_the_ancestors_removed_features():
    cat = _map("<model name='A'><decode host='on' guest='on'/><feature name='fpu'/>"
               "<feature name='mpx'/></model>"
               "<model name='B'><decode host='on' guest='on'/><model name='A'/>"
               "<feature name='mpx' removed='yes'/><feature name='vme'/></model>"
               "<model name='C'><decode host='on' guest='off'/><model name='B'/>"
               "<feature name='vme'/></model>")
    assert cat.model_by_name["B"].features == ("fpu", "vme", "mpx")  # libvirt keeps it in B
    assert cat.model_by_name["C"].features == ("fpu", "vme")  # ... and drops it below B


def test_an_unchanged_descendant_is_its_ancestors_canonical_name():
    cat = _map("<model name='A-noTSX'><decode host='on' guest='on'/><feature name='fpu'/></model>"
               "<model name='A-v2'><decode host='on' guest='off'/><model name='A-noTSX'/></model>")
    assert cat.model_by_name["A-noTSX"].canonical == "A-v2"
    assert cat.model_by_name["A-v2"].features == ("fpu",) and not cat.model_by_name["A-v2"].decode_guest
    with pytest.raises(InputError, match="already an alias of 'A-v2'"):
        _map("<model name='A'><decode host='on' guest='on'/><feature name='fpu'/></model>"
             "<model name='A-v2'><decode host='on' guest='off'/><model name='A'/></model>"
             "<model name='A-v3'><decode host='on' guest='off'/><model name='A'/></model>")


def test_check_partial_must_be_compat():
    cat = _map("<model name='A'><check partial='compat'/><decode host='on' guest='on'/>"
               "<feature name='fpu'/></model>")
    assert cat.model_by_name["A"].compat_check
    with pytest.raises(InputError, match="Invalid check/@partial value 'full' in CPU model A"):
        _map("<model name='A'><check partial='full'/><decode host='on' guest='on'/></model>")


def test_includes_are_read_in_named_groups_one_level_down_only():
    model = "<model name='A'><decode host='on' guest='on'/><feature name='fpu'/></model>"
    cat = _map(model, "<group name='Intel CPU models'><include filename='m.xml'/></group>")
    assert "A" in cat.model_by_name
    # cpu_map.c reads include|group[@name]/include: a group without a name, or a
    # group in a group, is not read (and a map without models is refused)
    for body in ("<group><include filename='m.xml'/></group>",
                 "<group name='a'><group name='b'><include filename='m.xml'/></group></group>"):
        with pytest.raises(InputError, match="no x86 CPU models found"):
            _map(model, body)


def test_a_libvirt_11_model_names_the_plain_model_it_stands_for():
    cat = load_catalog("11.3")
    assert cat.model_by_name["Icelake-Server-noTSX"].canonical == "Icelake-Server-v2"
    assert cat.model_by_name["Cascadelake-Server-noTSX"].canonical == "Cascadelake-Server-v3"
    assert cat.model_by_name["Icelake-Server-v2"].ancestor == "Icelake-Server-noTSX"
    assert "vmx-pause-exit" in cat.model_by_name["Cascadelake-Server"].added
