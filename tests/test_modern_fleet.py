"""The modern-mixed-fleet fixture (issue 13.4, 13.5): a cloud mid-upgrade, real CPUs --
Cascade Lake and Ice Lake hosts on libvirt 9.0, Sapphire and Emerald Rapids on 11.3, a
Milan aggregate on 11.3 and a Genoa host on a libvirt newer than 11.3 that no shipped
catalog knows.  The Genoa host is reported unknown (file, model, hint) and the rest is
planned; the oldest libvirt decides the Intel models; the what-if shows what retiring the
oldest generations gains."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_cli

from planner.adapters.catalogs import name_table

FLEET = REPO / "fixtures" / "modern-mixed-fleet"


@pytest.fixture(scope="module")
def doc():
    r = run_cli("recommend", str(FLEET), "--format", "json")
    assert r.returncode == 3, r.stderr  # planned; 3 says guests are stranded (issue 14 item 5)
    return json.loads(r.stdout)


def _rec(doc, scope):
    return next(r for r in doc["recommendations"] if r["scope"] == scope)


def test_the_host_no_catalog_knows_is_reported_and_the_rest_planned(doc):
    amd = _rec(doc, "vendor AMD")
    text = "\n".join(amd["explanation"])
    assert "amd03: hosts/amd03/capabilities.xml: CPU model EPYC-Genoa-v2 is unknown" in text
    assert "--cpu-map DIR" in text
    assert amd["cpu_mode"] == "host-passthrough" and sorted(amd["hosts"]) == ["amd01", "amd02"]
    intel = _rec(doc, "vendor Intel")
    assert sorted(intel["hosts"]) == ["cn01", "cn02", "cn03", "cn04", "cn05"]
    assert doc["catalog_libvirt_version"] == "11.3.0"


def test_the_oldest_libvirt_decides_the_intel_models(doc):
    intel = _rec(doc, "vendor Intel")
    lib9 = name_table().release_for("9.0.0")
    assert lib9 is not None
    assert intel["cpu_models"] and all(m in lib9.models for m in intel["cpu_models"])
    assert all(f[1:] in lib9.features for f in intel["cpu_model_extra_flags"])
    assert any("The hosts run libvirt 9.0.0, 11.3.0" in e for e in intel["explanation"])


def test_retiring_the_oldest_generations_gains_avx512_fp16(doc):
    intel = _rec(doc, "vendor Intel")
    last = intel["what_if"][-1]
    assert set(last["hosts"]) == {"cn01", "cn02", "cn03"}  # Cascade Lake and Ice Lake
    assert last["new_model"] == "SapphireRapids"  # every remaining host runs libvirt 11.3
    assert {"avx512-fp16", "avx512-bf16", "serialize"} <= set(last["gained"])


def test_with_libvirt_9_0s_catalog_the_libvirt_11_hosts_are_translated_not_lost():
    # the catalog forced to 9.0: the 11.3 hosts are read with 11.3's names and planned in
    # 9.0's (a domcapabilities host-model has no <arch>: it once stopped the whole report)
    r = run_cli("recommend", str(FLEET), "--format", "json", "--cpu-map", "9.0")
    assert r.returncode == 3, r.stderr  # planned, guests stranded
    d = json.loads(r.stdout)
    intel = _rec(d, "vendor Intel")
    assert sorted(intel["hosts"]) == ["cn01", "cn02", "cn03", "cn04", "cn05"]
    assert any("amd03" in e and "EPYC-Genoa-v2" in e for e in _rec(d, "vendor AMD")["explanation"])


def test_cpu_baseline_names_the_file_of_an_unknown_model():
    r = run_cli("cpu-baseline", "--cpu-map", "11.3", str(FLEET / "hosts/amd03/capabilities.xml"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Unknown CPU model EPYC-Genoa-v2" in r.stderr
    assert "hosts/amd03/capabilities.xml" in r.stderr and "--cpu-map DIR" in r.stderr


def test_the_review_frames_read_every_known_host_with_its_libvirts_names():
    from planner.review import analysis as A

    rep = A.load_report(FLEET)
    fm = A.feature_matrix(rep.inv)
    assert list(fm.index) == ["cn01", "cn02", "cn03", "cn04", "cn05", "amd01", "amd02"]
    # AMX only on Emerald Rapids (the Bronze 3408U has none), AVX-512 FP16 from Sapphire on
    assert list(fm.index[fm["amx-tile"]]) == ["cn05"]
    assert list(fm.index[fm["avx512-fp16"]]) == ["cn04", "cn05"]
    cap = A.capacity_by_model(rep.inv, rep=rep)
    assert cap.loc["Broadwell-noTSX-IBRS", "recommended"]
    assert cap.loc["Broadwell-noTSX-IBRS", "hosts"] == 5


def test_the_html_report_covers_the_fleet(tmp_path):
    r = run_cli("report", str(FLEET), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "capacity-review.html").read_text()
    assert "EPYC-Genoa-v2" in page and "SapphireRapids" in page


def test_the_demos_example_path_plans_the_fleet_shipped_in_the_package(tmp_path):
    r = run_cli("demo", "--example", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "A current fleet mid-upgrade" in r.stdout
    assert "SapphireRapids" in r.stdout and "EPYC-Genoa-v2" in r.stdout
    intel = (tmp_path / "nova-cpu.vendor-Intel.conf").read_text()
    assert "cpu_mode = custom" in intel and "Broadwell-noTSX-IBRS" in intel
    # the package's copy is the fixture (scripts/make_fixtures.py --check keeps it so)
    shipped = {p.relative_to(tmp_path / "modern-mixed-fleet"): p.read_bytes()
               for p in (tmp_path / "modern-mixed-fleet").rglob("*") if p.is_file()}
    assert shipped == {p.relative_to(FLEET): p.read_bytes()
                       for p in FLEET.rglob("*") if p.is_file()}
