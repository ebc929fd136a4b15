"""The Nova CPU recommendation, validated against libvirt's own baseline (test:///default)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from builders import cpus, host, with_signature
from conftest import CORPUS

from planner.adapters.catalogs import default_catalog
from planner.assess.rules import Policy
from planner.cpu.cpudef import CpuFeature
from planner.cpu.engine import compare, cpu_mask
from planner.cpu.parse import parse_cpu_file
from planner.cpu.render import cpu_to_xml
from planner.errors import CpuError, InputError
from planner.recommend.cpu_config import guest_cpu_for, recommend, recommend_groups

CAT = default_catalog()
GENS = ("broadwell", "skylake", "cascadelake", "icelake")

libvirt = pytest.importorskip("libvirt")


@pytest.fixture(scope="module")
def conn():
    c = libvirt.open("test:///default")
    yield c
    c.close()


def libvirt_baseline_model(conn, hosts) -> str:
    xml = conn.baselineCPU([cpu_to_xml(h.cpu) for h in hosts], 0)
    return parse_cpu_file(xml.encode(), "libvirt", "guest")[0].model


def corpus_cpus():
    return {p.name: parse_cpu_file(p.read_bytes(), p.name, "host")[0]
            for p in sorted(Path(CORPUS).glob("x86-cpuid-*-host.xml"))}


@pytest.mark.oracle
@pytest.mark.parametrize("n", [2, 3, 4])
def test_recommended_model_equals_libvirt_baseline(conn, n):
    for combo in itertools.combinations(GENS, n):
        hosts = [host(f"h{i}", g) for i, g in enumerate(combo)]
        rec = recommend(hosts, CAT)
        assert rec.cpu_mode == "custom"
        assert rec.cpu_models[0] == libvirt_baseline_model(conn, hosts), combo


@pytest.mark.oracle
def test_recommended_model_equals_libvirt_baseline_on_libvirt_test_cpus(conn):
    by_vendor: dict[str, list] = {}
    for name, cpu in corpus_cpus().items():
        by_vendor.setdefault(cpu.vendor, []).append((name, cpu))
    checked = 0
    for group in by_vendor.values():
        for (na, a), (nb, b) in itertools.combinations(group, 2):
            hosts = [host("a", cpu=a), host("b", cpu=b), host("c", "broadwell")] \
                if a.vendor == "Intel" else [host("a", cpu=a), host("b", cpu=b)]
            hosts = [dataclasses.replace(h, host_model=None) for h in hosts]
            try:
                expected = libvirt_baseline_model(conn, hosts)
            except libvirt.libvirtError:
                with pytest.raises(CpuError):
                    recommend(hosts, CAT)
                continue
            if a == b:
                continue
            assert recommend(hosts, CAT).cpu_models[0] == expected, (na, nb)
            checked += 1
    assert checked >= 3


def test_host_passthrough_only_when_all_host_cpus_are_identical():
    sig = (6, 85, 4)
    cpu = with_signature(cpus()["skylake"], sig)
    same = recommend([host(f"h{i}", cpu=cpu) for i in range(3)], CAT)
    assert same.cpu_mode == "host-passthrough"
    assert same.cpu_models == () and same.cpu_model_extra_flags == ()
    assert all(c.features_lost == () for c in same.costs)
    other = with_signature(cpus()["skylake"], (6, 85, 7))
    mixed = recommend([host("a", cpu=cpu), host("b", cpu=other)], CAT)
    assert mixed.cpu_mode == "custom"


def test_mixed_cluster_explains_why_not_host_model():
    rec = recommend([host(f"h{i}", g) for i, g in enumerate(GENS)], CAT)
    text = " ".join(rec.explanation)
    assert "host-passthrough needs identical CPUs" in text
    assert "Not host-model" in text and "one-way" in text


def test_every_recommended_model_is_compatible_with_every_host():
    hosts = [host(f"h{i}", g) for i, g in enumerate(GENS)]
    rec = recommend(hosts, CAT)
    assert len(rec.cpu_models) > 1
    for model in rec.cpu_models:
        for h in hosts:
            assert compare(h.cpu, guest_cpu_for(model, rec.cpu_model_extra_flags), CAT).compatible


def test_extra_flags_are_shared_by_every_host_and_skip_non_migratable():
    hosts = [host(f"h{i}", g) for i, g in enumerate(GENS)]
    rec = recommend(hosts, CAT)
    assert rec.cpu_model_extra_flags
    for flag in rec.cpu_model_extra_flags:
        if flag.startswith("+"):
            for h in hosts:
                bits = CAT.feature_by_name[flag[1:]].mask
                assert bits & ~cpu_mask(h.cpu, CAT) == 0, (flag, h.name)
    assert "+invtsc" not in rec.cpu_model_extra_flags  # every host has it; it blocks migration


def test_features_lost_per_host():
    rec = recommend([host("old", "broadwell"), host("new", "skylake")], CAT)
    lost = {c.host: c.features_lost for c in rec.costs}
    assert "avx512f" in lost["new"]
    assert "avx512f" not in lost["old"]
    # Whatever a host loses, it has and the guest CPU does not.
    gmask = cpu_mask(rec.guest_cpu, CAT)
    for name in lost["new"]:
        assert CAT.feature_by_name[name].mask & ~gmask


def test_what_if_names_the_hosts_that_hold_the_baseline_back():
    hosts = [host("b1", "broadwell"), host("b2", "broadwell"),
             host("c1", "cascadelake"), host("c2", "cascadelake"), host("i1", "icelake")]
    rec = recommend(hosts, CAT)
    top = rec.what_if[0]
    assert top.hosts == ("b1", "b2") and top.cpu_model == "Broadwell-noTSX-IBRS"
    assert "avx512f" in top.gained
    assert top.message.startswith("retire 2 Broadwell-noTSX-IBRS hosts")
    assert top.new_model == recommend(hosts[2:], CAT).cpu_models[0]


def test_mixed_vendors_are_refused_with_advice():
    amd = dataclasses.replace(cpus()["skylake"], vendor="AMD", model="EPYC")
    with pytest.raises(CpuError, match="different CPU vendors.*--groups"):
        recommend([host("a"), host("b", cpu=amd)], CAT)


def test_unknown_host_cpu_model_is_an_error():
    nomodel = dataclasses.replace(cpus()["skylake"], model=None)
    with pytest.raises(CpuError, match="unknown"):
        recommend([host("a"), host("b", cpu=nomodel)], CAT)


def test_baseline_is_restricted_to_models_every_host_can_use():
    usable = ("Broadwell-noTSX", "Haswell-noTSX")  # not Broadwell-noTSX-IBRS
    hosts = [host("a", "broadwell", usable_models=usable), host("b", "skylake", usable_models=usable)]
    rec = recommend(hosts, CAT)
    assert set(rec.cpu_models) <= set(usable)
    assert "not usable" in " ".join(rec.explanation)


def test_max_cpu_models_caps_the_list():
    hosts = [host("a", "broadwell"), host("b", "skylake")]
    assert len(recommend(hosts, CAT, Policy(max_cpu_models=1)).cpu_models) == 1


def test_one_recommendation_per_aggregate():
    hosts = [host("b1", "broadwell"), host("s1", "skylake"), host("i1", "icelake"),
             host("i2", "icelake")]
    recs = recommend_groups(hosts, {"b1": "old", "s1": "old", "i1": "new", "i2": "new"}, CAT)
    by = {r.scope: r for r in recs}
    assert by["old"].cpu_models[0] == "Broadwell-noTSX-IBRS"
    assert by["new"].cpu_mode == "host-passthrough"
    with pytest.raises(InputError, match="not in the snapshot"):
        recommend_groups(hosts, {"nope": "x"}, CAT)


def test_mixed_vendors_without_groups_get_one_recommendation_per_vendor():
    amd = dataclasses.replace(cpus()["skylake"], vendor="AMD", model="EPYC-Rome", features=())
    recs = recommend_groups([host("i1"), host("i2", "broadwell"), host("a1", cpu=amd)], None, CAT)
    assert [r.scope for r in recs] == ["vendor Intel", "vendor AMD"]
    assert recs[0].cpu_models[0] == "Broadwell-noTSX-IBRS"


def test_nested_virt_flags_are_left_out_unless_asked_for():
    hosts = [host("a", "broadwell"), host("b", "skylake")]  # both offer vmx
    assert "+vmx" not in recommend(hosts, CAT).cpu_model_extra_flags
    assert "vmx" in " ".join(recommend(hosts, CAT).explanation)
    assert "+vmx" in recommend(hosts, CAT, Policy(expose_nested=True)).cpu_model_extra_flags


def test_extra_flags_only_name_features_every_host_model_offers():
    a, b = host("a", "broadwell"), host("b", "skylake")
    hm = dataclasses.replace(b.host_model, features=(*b.host_model.features,
                                                     CpuFeature("abm", "disable")))
    flags = recommend([a, dataclasses.replace(b, host_model=hm)], CAT).cpu_model_extra_flags
    assert "+abm" in recommend([a, b], CAT).cpu_model_extra_flags
    assert "+abm" not in flags


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


# modern-mixed-fleet's hosts run libvirt 11.3 too and its recommendation is held to the
# models domcapabilities marks usable, which plain cpu-baseline ignores: its CPUs are
# checked against libvirt 11.3 in tests/test_recommend_libvirt11.py.
@pytest.mark.oracle
@pytest.mark.parametrize("scenario", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()
                                            and p.name != "modern-mixed-fleet"))
def test_fixture_recommendation_equals_libvirt_baseline(conn, scenario):
    from planner.snapshot.read import load

    inv = load(FIXTURES / scenario)
    for rec in recommend_groups(inv.hosts, None, CAT):
        if rec.cpu_mode != "custom":
            continue
        caps = [(FIXTURES / scenario / "hosts" / h / "capabilities.xml").read_text()
                for h in rec.hosts]
        cpus_xml = [cpu_to_xml(inv.host(h).cpu) for h in rec.hosts]
        assert caps  # the hosts' own files are what an operator would feed virsh
        expected = parse_cpu_file(conn.baselineCPU(cpus_xml, 0).encode(), "lv", "guest")[0].model
        assert rec.cpu_models[0] == expected


def test_what_if_also_retires_generations_cumulatively():
    hosts = [host("b1", "broadwell"), host("s1", "skylake"), host("c1", "cascadelake"),
             host("i1", "icelake")]
    rec = recommend(hosts, CAT)
    steps = [w for w in rec.what_if if "+" in w.cpu_model]
    assert steps, rec.what_if
    first = steps[0]
    assert first.hosts[0] == "b1" and len(first.hosts) == 2
    assert first.new_model == recommend([h for h in hosts if h.name not in first.hosts],
                                        CAT).cpu_models[0]
    single = next(w for w in rec.what_if if w.hosts == ("b1",))
    assert set(single.gained) < set(first.gained)
