"""Small behaviour tests of the CPU engine, catalog and parser: one libvirt rule each.

They run without libvirt (the differential suite checks the same rules
against libvirt itself); each name states the rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from gen_clusters import host_cpu_xml

from planner.adapters.catalogs import default_catalog, load_catalog
from planner.cpu.cpudef import CpuDef, CpuFeature
from planner.cpu.engine import _feature_score, baseline, compare, decode, expand_features
from planner.cpu.parse import parse_cpu_file
from planner.errors import CpuError
from planner.parse.xmlsafe import parse_concatenated, parse_concatenated_chunks

LIBVIRT_CPU_MAP = Path("/usr/share/libvirt/cpu_map")


@pytest.fixture(scope="module")
def cat():
    return default_catalog()


def hosts(*xmls: str) -> list[CpuDef]:
    return parse_cpu_file("".join(xmls).encode(), "test", "host")


def guest(xml: str) -> CpuDef:
    return parse_cpu_file(xml.encode(), "guest", "auto")[0]


def names(cpu: CpuDef, policy: str) -> list[str]:
    return [f.name for f in cpu.features if f.policy == policy]


# -- baseline ---------------------------------------------------------------
def test_baseline_keeps_model_name_when_all_hosts_share_it_fallback_forbid(cat):
    res = baseline(hosts(host_cpu_xml("Haswell", "Intel", ["vmx"]),
                         host_cpu_xml("Haswell", "Intel", ["vmx", "pdpe1gb"])), cat)
    assert (res.model, res.fallback) == ("Haswell", "forbid")
    assert names(res, "require") == ["vmx"]


def test_baseline_of_different_models_allows_fallback(cat):
    res = baseline(hosts(host_cpu_xml("Haswell", "Intel", []),
                         host_cpu_xml("Skylake-Client", "Intel", [])), cat)
    assert res.fallback == "allow"
    assert res.model == "Haswell"


def test_baseline_of_identical_hosts_is_their_cpu(cat):
    h = host_cpu_xml("Skylake-Client", "Intel", ["vmx", "invtsc"])
    res = baseline(hosts(*[h] * 50), cat)
    assert res.model == "Skylake-Client" and names(res, "require") == ["vmx", "invtsc"]


def test_baseline_omits_vendor_when_any_host_has_none(cat):
    res = baseline(hosts(host_cpu_xml("Haswell", "Intel", []), host_cpu_xml("Haswell", None, [])),
                   cat)
    assert res.vendor is None


def test_baseline_of_mixed_vendors_is_refused(cat):
    with pytest.raises(CpuError, match="CPU vendors do not match"):
        baseline(hosts(host_cpu_xml("Haswell", "Intel", []), host_cpu_xml("EPYC", "AMD", [])),
                 cat)


def test_first_host_vendor_is_not_checked_against_its_model_like_libvirt(cat):
    # virCPUx86Baseline checks "vendor of model differs" for hosts 2..n only.
    res = baseline(hosts(host_cpu_xml("qemu64", "AMD", []), host_cpu_xml("EPYC", "AMD", [])),
                   cat)
    assert res.vendor == "AMD"
    with pytest.raises(CpuError, match="CPU vendor AMD of model EPYC differs from vendor Intel"):
        baseline(hosts(host_cpu_xml("qemu64", "Intel", []), host_cpu_xml("EPYC", "Intel", [])),
                 cat)


def test_removed_features_are_always_listed_as_disabled(cat):
    # virCPUx86DisableRemovedFeatures: EPYC lost "monitor" in libvirt's map.
    res = baseline(hosts(host_cpu_xml("EPYC", "AMD", [])), cat)
    assert res.model == "EPYC" and names(res, "disable") == ["monitor"]
    assert "monitor" in names(expand_features(res, cat), "disable")


def test_migratable_baseline_drops_non_migratable_features(cat):
    h = hosts(host_cpu_xml("Haswell", "Intel", ["invtsc", "vmx"]))
    assert "invtsc" in names(baseline(h, cat), "require")
    assert names(baseline(h, cat, migratable=True), "require") == ["vmx"]


def test_qemu_driver_drops_features_qemu_never_takes(cat):
    h = hosts(host_cpu_xml("Haswell", "Intel", ["osxsave", "vmx"]))
    assert names(baseline(h, cat, qemu=True), "require") == ["vmx"]


def test_expanded_baseline_lists_every_feature_sorted_by_name(cat):
    res = baseline(hosts(host_cpu_xml("Haswell", "Intel", ["vmx"])), cat, expand=True)
    req = names(res, "require")
    assert req == sorted(req) and {"avx2", "vmx", "sse2"} <= set(req)


def test_hosts_without_common_features_are_incompatible(cat):
    with pytest.raises(CpuError, match="no CPUs given"):
        baseline([], cat)


# -- decode -----------------------------------------------------------------
def test_decode_penalises_disabled_features_like_libvirt():
    # virCPUx86CompareCandidateFeatureList: each disabled feature counts
    # 2, 3, 4, ... instead of 1, and the loop bound shrinks as it counts,
    # so trailing disabled features can escape the count (libvirt's quirk).
    req, dis = CpuFeature("a", "require"), CpuFeature("b", "disable")
    assert _feature_score([req, req, req], "guest") == (3, 0)
    assert _feature_score([dis, dis, req], "guest") == (1 + 2 + 3, 5)
    assert _feature_score([req, dis, dis], "guest") == (2 + 2, 2)
    assert _feature_score([dis, req], "guest") == (1 + 2, 2)
    assert _feature_score([dis, dis], "host") == (2, 0)


def test_decode_prefers_a_model_needing_one_disable_over_many_extras(cat):
    data = cat.model_by_name["Haswell-noTSX"].mask & ~cat.feature_by_name["fma"].mask
    dec = decode(data, "Intel", cat)
    assert dec.model == "Haswell-noTSX"
    assert [(f.name, f.policy) for f in dec.features] == [("fma", "disable")]


def test_host_decode_never_uses_disabled_features(cat):
    data = cat.model_by_name["Haswell-noTSX"].mask & ~cat.feature_by_name["fma"].mask
    dec = decode(data, "Intel", cat, cpu_type="host")
    assert dec.model != "Haswell-noTSX"
    assert all(f.policy is None for f in dec.features)


def test_decode_honours_a_single_preferred_model(cat):
    data = cat.model_by_name["Skylake-Client"].mask
    assert decode(data, "Intel", cat, preferred=["Haswell"]).model == "Haswell"


def test_decode_skips_models_of_another_vendor(cat):
    data = cat.model_by_name["EPYC"].mask
    assert cat.model_by_name[decode(data, "Intel", cat).model].vendor in ("Intel", None)


# -- compare ----------------------------------------------------------------
HOST = host_cpu_xml("Haswell", "Intel", ["vmx"])


def test_compare_identical_when_the_cpu_asks_exactly_what_the_host_has(cat):
    res = compare(hosts(HOST)[0], guest(HOST), cat)
    assert res.result == "identical"


def test_compare_superset_when_the_host_offers_more(cat):
    res = compare(hosts(HOST)[0], guest("<cpu><model>Haswell</model></cpu>"), cat)
    assert res.result == "superset"


def test_compare_names_the_features_the_host_lacks(cat):
    res = compare(hosts(HOST)[0], guest("<cpu><model>Skylake-Client</model></cpu>"), cat)
    assert res.result == "incompatible"
    assert res.message == "Host CPU does not provide required features: " + ", ".join(
        res.features)
    assert {"rdseed", "adx", "smap"} <= set(res.features)


def test_compare_strict_match_refuses_extra_host_features(cat):
    res = compare(hosts(HOST)[0], guest("<cpu match='strict'><model>Haswell</model></cpu>"), cat)
    assert res.result == "incompatible" and res.features == ("vmx",)


def test_compare_forbidden_feature_on_host_is_incompatible(cat):
    g = guest("<cpu><model>Haswell</model><feature policy='forbid' name='vmx'/></cpu>")
    res = compare(hosts(HOST)[0], g, cat)
    assert res.message == "Host CPU provides forbidden features: vmx"


def test_compare_optional_and_disabled_features_never_block(cat):
    g = guest("<cpu><model>Haswell</model><feature policy='optional' name='avx512f'/>"
              "<feature policy='disable' name='avx2'/></cpu>")
    assert compare(hosts(HOST)[0], g, cat).compatible


def test_compare_vendor_mismatch_is_incompatible(cat):
    g = guest("<cpu><model>Haswell</model><vendor>AMD</vendor></cpu>")
    res = compare(hosts(HOST)[0], g, cat)
    assert res.message == "host CPU vendor does not match required CPU vendor AMD"


# -- catalog ----------------------------------------------------------------
@pytest.mark.skipif(not (LIBVIRT_CPU_MAP / "index.xml").is_file(),
                    reason="libvirt's cpu_map is not installed")
def test_cpu_map_dir_loads_same_catalog_as_shipped_json(cat, tmp_path):
    direct = load_catalog(LIBVIRT_CPU_MAP).to_json()
    shipped = cat.to_json()
    for doc in (direct, shipped):
        doc.pop("source")
        doc.pop("libvirt_version")
    assert direct == shipped
    f = tmp_path / "h.xml"
    f.write_text(host_cpu_xml("EPYC", "AMD", ["svm"]) + host_cpu_xml("EPYC-IBPB", "AMD", []))
    a = run_cli("cpu-baseline", str(f), "--features")
    b = run_cli("cpu-baseline", str(f), "--features", "--cpu-map", str(LIBVIRT_CPU_MAP))
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


@pytest.mark.skipif(not (LIBVIRT_CPU_MAP / "index.xml").is_file(),
                    reason="libvirt's cpu_map is not installed")
def test_catalog_generator_is_reproducible(tmp_path):
    committed = REPO / "cpu_maps" / "x86.json"
    version = json.loads(committed.read_text())["libvirt_version"]
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_cpu_maps.py"), "--cpu-map",
                    str(LIBVIRT_CPU_MAP), "--out", str(tmp_path), "--libvirt-version", version],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / "x86.json").read_text() == committed.read_text()


# -- parsing large concatenated files ---------------------------------------
def _children(roots) -> list[bytes]:
    from lxml import etree
    return [etree.tostring(c, with_tail=False) for r in roots for c in r]


def test_chunked_parse_gives_the_same_documents_as_one_parse():
    docs = [f"<capabilities><host><uuid>{i}</uuid>{HOST}</host></capabilities>\n"
            for i in range(3000)]
    data = "".join(docs).encode()
    whole = _children([parse_concatenated(data, "f")])
    assert _children(parse_concatenated_chunks(data, "f", chunk_bytes=4096)) == whole


def test_chunked_parse_never_cuts_inside_a_comment():
    docs = [HOST, "<!-- " + "</cpu> " * 2000 + "-->", HOST] * 20
    data = "".join(docs).encode()
    whole = _children([parse_concatenated(data, "f")])
    assert _children(parse_concatenated_chunks(data, "f", chunk_bytes=1024)) == whole


def test_repeated_hosts_are_parsed_once_and_numbered_as_in_the_file(cat):
    cpus = hosts(*[HOST] * 1000, host_cpu_xml("Skylake-Client", "Intel", []), HOST)
    assert len(cpus) == 1002
    assert cpus[0] is cpus[999] is cpus[1001]
    assert cpus[1000].source == "test: CPU #1001"


def test_error_in_a_late_document_names_its_line():
    data = (HOST * 5000 + "<cpu><arch>x86_64</arch>\n<model>x</cpu>\n").encode()
    with pytest.raises(Exception, match=r"line (\d+)") as exc:
        list(parse_concatenated_chunks(data, "f", chunk_bytes=4096))
    line = int(str(exc.value).split("line ")[1].split(")")[0])
    assert line == HOST.count("\n") * 5000 + 2


def test_cpu_baseline_command_does_not_import_pandas_or_networkx(tmp_path):
    f = tmp_path / "h.xml"
    f.write_text(HOST)
    res = run_cli("cpu-baseline", str(f), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "planner" in imported  # the import log is there
    assert not imported & {"pandas", "networkx", "numpy", "libvirt"}
