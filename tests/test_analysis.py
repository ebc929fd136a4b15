"""planner.review.analysis: the DataFrames match the snapshot files (read here with lxml) and the
recommend/graph outputs they claim to show."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

from conftest import REPO  # noqa: E402
from lxml import etree  # noqa: E402

from planner.adapters.catalogs import default_catalog  # noqa: E402
from planner.errors import InputError  # noqa: E402
from planner.recommend.cpu_config import recommend  # noqa: E402
from planner.review import analysis as A  # noqa: E402
from planner.review.report import matrix  # noqa: E402

FIX = REPO / "fixtures"
ALL_FIXTURES = sorted(p.name for p in FIX.iterdir() if (p / "hosts").is_dir())


def _xml(path: Path) -> etree._Element:
    return etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)
                       ).getroot()


def _host_dirs(fixture: str) -> list[Path]:
    return sorted((FIX / fixture / "hosts").iterdir())


def _domain_files(fixture: str) -> list[Path]:
    return sorted((FIX / fixture / "hosts").glob("*/domains/*.xml"))


_reports: dict[str, object] = {}


def report(fixture: str):  # one load per fixture for the whole module
    if fixture not in _reports:
        _reports[fixture] = A.load_report(FIX / fixture)
    return _reports[fixture]


# --- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_hosts_frame_has_one_row_per_host_with_the_capabilities_values(fixture: str) -> None:
    rep = report(fixture)
    df = A.hosts_frame(rep.inv, rep)
    dirs = _host_dirs(fixture)
    assert sorted(df.index) == sorted(d.name for d in dirs)
    for col in ("cpu_model", "vendor", "generation", "cpus", "cores", "memory_gib", "numa_cells",
                "guests", "scope", "features_lost"):
        assert col in df.columns
    for d in dirs:
        caps = _xml(d / "capabilities.xml")
        row = df.loc[d.name]
        assert row["cpu_model"] == caps.findtext("host/cpu/model")
        assert row["vendor"] == caps.findtext("host/cpu/vendor")
        cells = caps.findall("host/topology/cells/cell")
        assert row["numa_cells"] == len(cells)
        assert row["cpus"] == len(caps.findall("host/topology/cells/cell/cpus/cpu"))
        mem_kib = sum(int(c.findtext("memory")) for c in cells)
        assert row["memory_gib"] == pytest.approx(mem_kib / 1024 ** 2, abs=0.01)
        assert row["guests"] == len(list((d / "domains").glob("*.xml"))) \
            if (d / "domains").is_dir() else row["guests"] == 0


def test_hosts_frame_sums_huge_pages_over_numa_cells() -> None:
    rep = report("numa-pinned-guests")
    df = A.hosts_frame(rep.inv)
    for d in _host_dirs("numa-pinned-guests"):
        caps = _xml(d / "capabilities.xml")
        for size, label in ((2048, "2M"), (1048576, "1G")):
            total = sum(int(p.text) for p in caps.findall(
                f"host/topology/cells/cell/pages[@size='{size}']"))
            assert df.loc[d.name, f"hugepages_{label}_total"] == total
    # free pages come from host.json: some of numa-a's 1 GiB pages are in use
    assert 0 < df.loc["numa-a", "hugepages_1G_free"] < df.loc["numa-a", "hugepages_1G_total"]


def test_generation_drops_libvirt_variant_suffixes() -> None:
    assert A.generation("Broadwell-noTSX-IBRS") == "Broadwell"
    assert A.generation("Cascadelake-Server-noTSX") == "Cascadelake-Server"
    assert A.generation("EPYC-Rome") == "EPYC-Rome"
    assert A.generation(None) is None


# --- guests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_guests_frame_matches_the_domain_xml(fixture: str) -> None:
    rep = report(fixture)
    df = A.guests_frame(rep.inv, rep)
    files = _domain_files(fixture)
    assert len(df) == len(files)
    assert {"host", "vcpus", "memory_gib", "cpu_mode", "cpu_model", "pinned", "hugepages",
            "disks_local", "disks_shared", "hostdevs", "verdict"} <= set(df.columns)
    for f in files:
        x = _xml(f)
        row = df[(df.index == x.findtext("name")) & (df["host"] == f.parent.parent.name)].iloc[0]
        assert row["vcpus"] == int(x.findtext("vcpu"))
        assert row["memory_gib"] == pytest.approx(int(x.findtext("memory")) / 1024 ** 2, abs=0.01)
        assert row["cpu_mode"] == (x.find("cpu").get("mode", "custom") if x.find("cpu") is not None
                                   else None)
        assert row["pinned"] == bool(x.findall("cputune/vcpupin") + x.findall(
            "cputune/emulatorpin"))
        assert row["hugepages"] == (x.find("memoryBacking/hugepages") is not None)
        hostdevs = x.findall("devices/hostdev") + x.findall("devices/interface[@type='hostdev']")
        assert row["hostdevs"] == len(hostdevs)


def test_guests_frame_counts_shared_and_local_disks() -> None:
    df = A.guests_frame(report("storage-backends").inv)
    # fixtures/README.md: guests on RBD, NFS (netfs pool), LVM (local pool), local qcow2
    assert (df.loc["ceph-vm", "disks_shared"], df.loc["ceph-vm", "disks_local"]) == (1, 0)
    assert df.loc["nfs-vm", "disks_local"] == 0 and df.loc["nfs-vm", "disks_shared"] >= 1
    assert df.loc["lvm-vm", "disks_local"] == 1
    assert df.loc["local-qcow2", "disks_local"] >= 1


def test_guest_verdicts_come_from_the_graph() -> None:
    rep = report("hostdev-guests")
    df = A.guests_frame(rep.inv, rep)
    for g in rep.analysis.guests:
        row = df[(df.index == g.guest) & (df["host"] == g.source)].iloc[0]
        assert row["verdict"] == g.status
        assert row["feasible_classes"] == len(g.feasible_classes)
    # a PCI passthrough guest is never movable
    assert (df[df["hostdevs"] > 0]["feasible_classes"] == 0).all()


# --- features --------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["mixed-intel-generations", "intel-amd-mixed"])
def test_feature_matrix_has_model_and_listed_features_of_each_host(fixture: str) -> None:
    rep = report(fixture)
    cat = default_catalog()
    fm = A.feature_matrix(rep.inv, cat)
    assert fm.dtypes.eq(bool).all()
    assert list(fm.index) == [h.name for h in rep.inv.hosts]
    for d in _host_dirs(fixture):
        caps = _xml(d / "capabilities.xml")
        model = caps.findtext("host/cpu/model")
        listed = {f.get("name") for f in caps.findall("host/cpu/feature")}
        has = set(fm.columns[fm.loc[d.name]])
        assert listed <= has
        assert set(cat.model_by_name[model].features) - set(cat.model_by_name[model].removed) \
            <= has | set(cat.nonmigratable)


def test_feature_matrix_varying_only_keeps_the_differences() -> None:
    fm = A.feature_matrix(report("mixed-intel-generations").inv, varying_only=True)
    assert not fm.all(axis=0).any() and fm.any(axis=0).all()
    assert not fm.loc["cn01", "avx512f"] and fm.loc["cn05", "avx512f"]  # Haswell vs Ice Lake
    same = A.feature_matrix(report("numa-pinned-guests").inv, varying_only=True)
    assert same.shape == (3, 0)  # three identical Cascade Lake hosts


# --- feasibility, domains ----------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["mixed-intel-generations", "intel-amd-mixed",
                                     "hand-made-capabilities-only"])
def test_feasibility_matrix_equals_the_recommend_report_matrix(fixture: str) -> None:
    rep = report(fixture)
    fm = A.feasibility_matrix(rep.analysis)
    names = [h.name for h in rep.inv.hosts]
    assert sorted(fm.index) == sorted(names) and sorted(fm.columns) == sorted(names)
    rows = [r for r in matrix(rep, "full") if r["guest"] is None]
    assert len(rows) == len(names) * (len(names) - 1)
    for r in rows:
        assert fm.loc[r["source"], r["destination"]] == r["verdict"]
    for h in names:
        assert fm.loc[h, h] == "-"
    codes = A.verdict_codes(fm)
    assert codes.isna().sum().sum() == len(names)


def test_intel_and_amd_hosts_never_exchange_guests() -> None:
    fm = A.feasibility_matrix(report("intel-amd-mixed").analysis)
    assert fm.loc["intel-01", "amd-03"] == "blocked" and fm.loc["amd-05", "intel-02"] == "blocked"


def test_guest_feasibility_has_a_column_per_host_class() -> None:
    rep = report("mixed-intel-generations")
    gf = A.guest_feasibility(rep.analysis)
    assert len(gf) == len(rep.inv.domains())
    assert list(gf.columns) == list(rep.analysis.classes)
    assert set(gf.stack()) <= set(A.VERDICT_ORDER)


def test_migration_domains_partition_the_hosts() -> None:
    rep = report("intel-amd-mixed")
    md = A.migration_domains(rep.analysis, rep.inv)
    members = [m.split(", ") for m in md["members"]]
    assert sorted(h for m in members for h in m) == sorted(h.name for h in rep.inv.hosts)
    assert sorted(members) == sorted([["amd-03", "amd-04", "amd-05"], ["intel-01", "intel-02"]])
    assert md["cpus"].sum() == sum(h.cpus_total for h in rep.inv.hosts)


def test_recommendations_frame_lists_every_scope() -> None:
    rep = report("intel-amd-mixed")
    rf = A.recommendations_frame(rep)
    assert sorted(rf.index) == ["vendor AMD", "vendor Intel"]
    assert rf.loc["vendor Intel", "cpu_mode"] == "host-passthrough"  # 2 identical Cascade Lakes
    assert rf["hosts"].sum() == 5


# --- capacity -------------------------------------------------------------------------------


def _usable(d: Path) -> set[str]:
    dc = _xml(d / "domcapabilities.xml")
    return {m.text for m in dc.findall("cpu/mode[@name='custom']/model") if m.get("usable") == "yes"}


@pytest.mark.parametrize("fixture", ["mixed-intel-generations", "intel-amd-mixed"])
def test_capacity_counts_hosts_whose_domcapabilities_mark_the_model_usable(fixture: str) -> None:
    rep = report(fixture)
    cap = A.capacity_by_model(rep.inv, rep=rep)
    cat = default_catalog()
    dirs = _host_dirs(fixture)
    caps = {d.name: _xml(d / "capabilities.xml") for d in dirs}
    assert list(cap.columns) == ["vendor", "features", "hosts", "cpus", "memory_gib",
                                 "free_memory_gib", "all_hosts", "recommended"]
    for model, row in cap.iterrows():
        vendor = cat.model_by_name[model].vendor
        hosts = [d.name for d in dirs if model in _usable(d)
                 and vendor in (None, caps[d.name].findtext("host/cpu/vendor"))]
        assert row["hosts"] == len(hosts), model
        assert row["cpus"] == sum(len(caps[h].findall("host/topology/cells/cell/cpus/cpu"))
                                  for h in hosts)
        assert row["all_hosts"] == (len(hosts) == len(dirs))
    assert cap["hosts"].is_monotonic_decreasing
    for r in rep.recs:
        if r.cpu_models:
            assert cap.loc[r.cpu_models[0], "recommended"]
            assert cap.loc[r.cpu_models[0], "hosts"] == len(r.hosts)


def test_capacity_without_domcapabilities_uses_libvirt_compare() -> None:
    rep = report("hand-made-capabilities-only")  # capabilities.xml only
    cap = A.capacity_by_model(rep.inv)
    # cn-a is Broadwell, cn-b Skylake-Server: Skylake-Server reaches only cn-b
    assert cap.loc["Broadwell-noTSX-IBRS", "hosts"] == 2
    assert cap.loc["Skylake-Server-IBRS", "hosts"] == 1
    assert "EPYC" not in cap.index  # other vendor's models are not candidates


# --- what-if --------------------------------------------------------------------------------


def test_retiring_the_oldest_host_gives_recommends_new_baseline() -> None:
    rep = report("mixed-intel-generations")
    res = A.what_if(rep, retire=["cn01"])
    cat = default_catalog()
    rest = [h for h in rep.inv.hosts if h.name != "cn01"]
    expected = recommend(rest, cat)
    row = res.changes.loc["all hosts"]
    assert row["model_before"] == "Haswell-noTSX-IBRS"
    assert row["model_after"] == expected.cpu_models[0]
    # the recommendation's own what-if for the Haswell host says the same
    wi = next(w for w in rep.recs[0].what_if if w.hosts == ("cn01",))
    assert row["model_after"] == wi.new_model
    assert set(res.gained()) == set(wi.gained) and res.lost() == []
    assert [h.name for h in res.after.inv.hosts] == ["cn02", "cn03", "cn04", "cn05"]
    ch = res.matrix_change
    assert list(ch.columns) == ["source", "destination", "before", "after"]
    gone = ch[(ch.source == "cn01") | (ch.destination == "cn01")]
    assert len(gone) == 8 and gone["after"].isna().all()


def test_adding_a_host_from_another_snapshot() -> None:
    rep = report("mixed-intel-generations")
    new = A.new_hosts(FIX / "hand-made-capabilities-only", ["cn-a"])
    assert [h.name for h in new] == ["new-cn-a"] and new[0].domains == ()
    res = A.what_if(rep, add=new)
    assert res.added == ("new-cn-a",)
    assert res.changes.loc["all hosts", "hosts_after"] == 6
    added = res.matrix_change[res.matrix_change.before.isna()]
    assert len(added) == 2 * 5 and set(added.source) | set(added.destination) >= {"new-cn-a"}


def test_what_if_refuses_unknown_and_clashing_hosts() -> None:
    rep = report("mixed-intel-generations")
    with pytest.raises(InputError, match="not in the snapshot"):
        A.what_if(rep, retire=["nope"])
    with pytest.raises(InputError, match="exists"):
        A.what_if(rep, add=[dataclasses.replace(rep.inv.hosts[0])])
    with pytest.raises(InputError, match="no hosts left"):
        A.what_if(rep, retire=[h.name for h in rep.inv.hosts])


# --- snapshot resolution, import discipline ---------------------------------------------


def test_resolve_snapshot_order_argument_env_default(tmp_path: Path) -> None:
    env = {"MIGPLAN_SNAPSHOT": "intel-amd-mixed"}
    assert A.resolve_snapshot(env={}) == FIX / "modern-mixed-fleet"
    assert A.resolve_snapshot(env=env) == FIX / "intel-amd-mixed"
    assert A.resolve_snapshot(str(tmp_path), env=env) == tmp_path
    assert A.resolve_snapshot("fixtures/lab-3-hosts", env={}) == FIX / "lab-3-hosts"
    with pytest.raises(InputError, match="no such snapshot"):
        A.resolve_snapshot(str(tmp_path / "missing"), env={})


def test_other_commands_do_not_import_pandas_or_matplotlib() -> None:
    code = ("import sys, planner.cli, planner.cli.cpu, planner.cli.recommend\n"
            "from planner.cli import COMMANDS\n"
            "import importlib; importlib.import_module(COMMANDS['report'].split(':')[0])\n"
            "print(sorted(m for m in ('pandas', 'matplotlib', 'planner.review.analysis') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(REPO), check=True)
    assert out.stdout.strip() == "[]"


def test_large_cluster_views_group_hosts_by_cpu_and_class() -> None:
    rep = report("intel-amd-mixed")
    by_cpu = A.feature_matrix(rep.inv, by="cpu")
    # 2 identical Cascade Lake hosts, 2 identical EPYC-Rome, 1 EPYC-Milan
    assert len(by_cpu) == 3 and by_cpu.index[0].startswith("Cascadelake-Server (2 hosts")
    per_host = A.feature_matrix(rep.inv)
    assert by_cpu.iloc[0].equals(per_host.loc["intel-01", by_cpu.columns].rename(
        by_cpu.index[0]))
    cm = A.feasibility_matrix(rep.analysis, by="class")
    assert cm.shape == (len(rep.analysis.classes),) * 2
    hm = A.feasibility_matrix(rep.analysis)
    for a, ca in rep.analysis.classes.items():
        for b, cb in rep.analysis.classes.items():
            pairs = [hm.loc[s, d] for s in ca.hosts for d in cb.hosts if s != d]
            expected = pairs[0] if pairs else "-"
            assert cm.loc[A.class_label(rep.analysis, a), A.class_label(rep.analysis, b)] \
                == expected
