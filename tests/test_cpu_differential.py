"""migplan's CPU answers against libvirt's own, case by case: zero differences allowed.

* baseline, with and without --features: libvirt-python ``test:///default``
  (what ``virsh -c test:///default cpu-baseline`` answers);
* migratable baseline and compare: libvirt's CPU driver through its private
  symbols (tests/oracle.py), skipped with the reason on another libvirt;
* seeded random clusters (tests/gen_clusters.py) and the real CPUs of
  tests/data/cputestdata/classic (libvirt's own test data, copied with its origin);
* a few end-to-end runs of the CLI against ``virsh`` itself.

Every check reports the number of cases it ran; a difference names the seed
that reproduces it.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import differential
import pytest
from conftest import CORPUS, run_cli
from differential import Report, check_baselines, check_compare, mp_baseline
from gen_clusters import (
    COMPARE_HOSTS,
    MALFORMED_GUESTS,
    MALFORMED_HOSTS,
    gen_cluster,
    gen_compare_pair,
    host_cpu_xml,
)
from oracle import OracleMissing, PrivateOracle, TestDriverOracle, private_oracle

from planner.adapters.catalogs import default_catalog
from planner.cpu import engine
from planner.cpu.catalog import Catalog

pytestmark = pytest.mark.oracle

N_CLUSTERS = 320
N_PAIRS = 600
CORPUS_ROOT = CORPUS


@pytest.fixture(scope="module", autouse=True)
def case_counts(request):
    """Case counts of every check, printed at the end of the module even without -s."""
    lines: list[str] = []
    yield lines
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None or not lines:
        return
    with capman.global_and_fixture_disabled():
        tr.write_line("")
        for line in lines:
            tr.write_line(f"differential: {line}")


@pytest.fixture(scope="module")
def cat():
    return default_catalog()


@pytest.fixture(scope="module")
def test_driver():
    try:
        conn = TestDriverOracle()
    except OracleMissing as err:
        pytest.skip(str(err))
    v = conn.version
    installed = f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
    if installed != default_catalog().libvirt_version:
        conn.close()
        pytest.skip(f"migplan's catalog is from libvirt {default_catalog().libvirt_version}, "
                    f"libvirt {installed} is installed: its answers may differ")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def private() -> PrivateOracle:
    try:
        return private_oracle()
    except OracleMissing as err:
        pytest.skip(f"libvirt's private CPU API is not usable as oracle: {err}")


@pytest.fixture(scope="module")
def private_or_none() -> PrivateOracle | None:
    """For baseline checks: without libvirt 9.0's private API, the test driver
    still answers everything but the migratable baseline."""
    try:
        return private_oracle()
    except OracleMissing:
        return None


def corpus_files() -> list[Path]:
    return sorted(CORPUS_ROOT.glob("**/*.xml"))


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    files = corpus_files()
    if not files:
        pytest.skip(f"no real-CPU corpus at {CORPUS_ROOT}")
    return {f.name: f.read_text() for f in files}


def _vendor(xml: str) -> str | None:
    for v in ("Intel", "AMD", "Hygon"):
        if f"<vendor>{v}</vendor>" in xml:
            return v
    return None


# -- random clusters --------------------------------------------------------
def test_random_clusters_baseline_equals_libvirt(cat, test_driver, private_or_none,
                                                 case_counts):
    report = Report()
    kinds: set[str] = set()
    for seed in range(N_CLUSTERS):
        c = gen_cluster(seed, cat)
        kinds.add(c.kind)
        check_baselines(report, f"cluster seed={seed} kind={c.kind} hosts={len(c.hosts)}",
                        list(c.hosts), cat, test_driver, private_or_none)
    assert report.cases["baseline"] == N_CLUSTERS >= 300
    assert {"mixed-vendor", "unknown-model", "unknown-feature", "shared-model"} <= kinds
    assert not report.differences, report.summary()
    case_counts.append(f"random clusters: {report.summary()}")


def test_random_guest_host_compare_equals_libvirt(cat, private, case_counts):
    report = Report()
    for seed in range(N_PAIRS):
        p = gen_compare_pair(seed, cat)
        check_compare(report, f"pair seed={seed} kind={p.kind}", p.host, p.guest, p.domain,
                      cat, private)
    assert report.cases["compare"] == N_PAIRS >= 500
    assert not report.differences, report.summary()
    case_counts.append(f"random guest/host pairs: {report.summary()}")


# -- real CPUs --------------------------------------------------------------
def test_real_cpus_baseline_equals_libvirt(cat, test_driver, private_or_none, corpus,
                                           case_counts):
    private = private_or_none
    report = Report()
    names = sorted(corpus)
    for n in names:
        check_baselines(report, f"corpus {n}", [corpus[n]], cat, test_driver, private)
    intel = [corpus[n] for n in names if _vendor(corpus[n]) == "Intel"]
    check_baselines(report, "corpus: all Intel", intel, cat, test_driver, private)
    check_baselines(report, "corpus: all Intel, reversed", intel[::-1], cat, test_driver,
                    private)
    check_baselines(report, "corpus: all", [corpus[n] for n in names], cat, test_driver,
                    private)
    for a, b in itertools.permutations(names, 2):
        check_baselines(report, f"corpus pair {a} + {b}", [corpus[a], corpus[b]], cat,
                        test_driver, private)
    assert not report.differences, report.summary()
    case_counts.append(f"real CPUs baseline: {report.summary()}")


def test_real_cpus_compare_each_against_each_equals_libvirt(cat, private, corpus,
                                                            case_counts):
    report = Report()
    names = sorted(corpus)
    # Guests: every real CPU as written (a host CPU: libvirt parses it as such)
    # and as a guest CPU: the baseline of it with every other one.
    guests = {n: corpus[n] for n in names}
    for a, b in itertools.combinations(names, 2):
        res = mp_baseline([corpus[a], corpus[b]], cat)
        if res.ok and res.text:
            guests[f"baseline({a},{b})"] = res.text
    for h in names:
        for g, xml in guests.items():
            check_compare(report, f"corpus host {h} guest {g}", corpus[h], xml, xml, cat,
                          private)
    assert not report.differences, report.summary()
    case_counts.append(f"real CPUs compare: {report.summary()}")


# -- the checker can fail ---------------------------------------------------
def test_differential_checker_catches_a_dropped_feature(cat, test_driver, monkeypatch):
    real_decode = engine.decode

    def drop_last_feature(*args, **kwargs):
        d = real_decode(*args, **kwargs)
        return engine.Decoded(d.model, d.vendor, d.features[:-1])

    monkeypatch.setattr(engine, "decode", drop_last_feature)
    report = Report()
    for seed in range(40):
        c = gen_cluster(seed, cat)
        check_baselines(report, f"seed={seed}", list(c.hosts), cat, test_driver, None)
    assert report.differences, "a wrong engine went unnoticed"
    assert any("output differs" in d for d in report.differences)


def test_differential_checker_catches_another_model_choice(cat, test_driver, monkeypatch):
    real_decode = engine.decode

    def oldest_model(*args, **kwargs):
        d = real_decode(*args, **kwargs)
        return engine.Decoded("qemu64" if d.model != "qemu64" else "kvm64", d.vendor, d.features)

    monkeypatch.setattr(engine, "decode", oldest_model)
    report = Report()
    for seed in range(10):
        c = gen_cluster(seed, cat)
        check_baselines(report, f"seed={seed}", list(c.hosts), cat, test_driver, None)
    assert len(report.differences) >= 5, report.summary()


def test_differential_checker_catches_a_wrong_compare(cat, private, monkeypatch):
    real = engine.compare

    def never_strict(host, cpu, c):
        res = real(host, cpu, c)
        if res.message and "strictly" in res.message:
            return engine.Comparison("superset")
        return res

    monkeypatch.setattr(differential, "compare", never_strict)
    report = Report()
    for seed in range(200):
        p = gen_compare_pair(seed, cat)
        check_compare(report, f"seed={seed}", p.host, p.guest, p.domain, cat, private)
    assert report.differences, "a wrong compare went unnoticed"


def test_differential_checker_catches_a_tampered_catalog(cat, test_driver):
    """A catalog whose Skylake-Client lacks one feature (as a bad generator
    could produce) must give answers libvirt disagrees with."""
    doc = cat.to_json()
    for m in doc["models"]:
        if m["name"] == "Skylake-Client":
            m["features"].remove("rdseed")
    tampered = Catalog.from_json(doc, "tampered")
    report = Report()
    host = host_cpu_xml("Skylake-Client", "Intel", ["vmx"])
    check_baselines(report, "tampered", [host, host], tampered, test_driver, None)
    assert report.differences, "a tampered catalog went unnoticed"


# -- end to end: the CLI against virsh --------------------------------------
def _virsh_baseline(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "test:///default", "cpu-baseline", str(path), *flags],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh is not installed")
def test_cli_cpu_baseline_prints_what_virsh_prints(cat, tmp_path, case_counts):
    files: list[Path] = []
    for f in corpus_files()[:3]:
        files.append(f)
    for seed in (1, 7, 12, 40):
        c = gen_cluster(seed, cat)
        p = tmp_path / f"cluster-{seed}-{c.kind}.xml"
        # The seed recipe: many `virsh capabilities`-like documents concatenated.
        p.write_text("".join(c.hosts))
        files.append(p)
    corpus = [f.read_text() for f in corpus_files()]
    intel = [x for x in corpus if _vendor(x) == "Intel"]
    if intel:
        # Many hosts, few distinct CPUs, as `virsh capabilities >> all.xml` makes
        # them: the path that parses each distinct document once.
        caps = "".join(
            f"<capabilities>\n  <host>\n    <uuid>{i}</uuid>\n"
            f"    {intel[i % len(intel)]}  </host>\n</capabilities>\n" for i in range(600))
        p = tmp_path / "capabilities-600-hosts.xml"
        p.write_text(caps)
        files.append(p)
        p = tmp_path / "cpus-2000-hosts.xml"
        p.write_text("".join(intel[i % len(intel)] for i in range(2000)))
        files.append(p)
    runs = 0
    for f in files:
        for flags in ((), ("--features",)):
            want = _virsh_baseline(f, *flags)
            got = run_cli("cpu-baseline", str(f), *flags)
            runs += 1
            if want.returncode == 0:
                assert got.returncode == 0, (f, got.stderr)
                # virsh ends its output with one blank line more.
                assert want.stdout == got.stdout + "\n", f
            else:
                assert got.returncode == 1 and got.stderr.startswith("Error: "), (f, got)
    assert runs >= 10
    case_counts.append(f"CLI against virsh: {runs} runs ({len(files)} files, with and "
                       "without --features); 0 differences")


# -- malformed CPU XML ------------------------------------------------------
def test_malformed_host_cpus_are_refused_like_libvirt(cat, test_driver, private_or_none,
                                                      case_counts):
    private = private_or_none
    """Each check of virCPUDefParseXML, alone, first and second in a cluster."""
    report = Report()
    good = MALFORMED_HOSTS["policy-ignored-on-host"]
    for name, xml in MALFORMED_HOSTS.items():
        for i, xmls in enumerate(([xml], [xml, good], [good, xml])):
            if name == "not-a-cpu":
                # virsh finds no <cpu> in such a file and refuses it before
                # libvirt's API sees it; migplan reads files as virsh does.
                assert not mp_baseline(xmls, cat).ok
                continue
            check_baselines(report, f"malformed host {name} #{i}", xmls, cat, test_driver,
                            private)
    assert not report.differences, report.summary()
    case_counts.append(f"malformed hosts: {report.summary()}")


def test_malformed_guest_cpus_compare_like_libvirt(cat, private, case_counts):
    report = Report()
    for hname, host in COMPARE_HOSTS.items():
        for gname, guest in MALFORMED_GUESTS.items():
            check_compare(report, f"host {hname} guest {gname}", host, guest, guest, cat,
                          private)
    assert not report.differences, report.summary()
    case_counts.append(f"malformed guests: {report.summary()}")


def _all_distinct_cpus(n: int, seed: int, cat: Catalog, model: str = "Skylake-Server-IBRS",
                       picks: int = 12) -> str:
    """n host <cpu>s as `virsh capabilities` prints them, each with a random
    ``picks`` of the optional features real hosts differ by (issue 15): nearly
    all distinct, so nothing is de-duplicated."""
    import random

    rng = random.Random(seed)
    m = cat.model_by_name[model]
    optional = [f for f in sorted(cat.feature_by_name) if f not in m.features][:29]
    out = []
    for _ in range(n):
        extra = sorted(rng.sample(optional, picks))
        out.append(
            "<cpu>\n  <arch>x86_64</arch>\n"
            f"  <model>{model}</model>\n  <vendor>Intel</vendor>\n"
            f"  <microcode version='{rng.randrange(1 << 20, 1 << 28)}'/>\n"
            "  <signature family='6' model='85' stepping='4'/>\n"
            "  <counter name='tsc' frequency='2100000000' scaling='no'/>\n"
            f"  <topology sockets='1' dies='1' cores='{rng.choice((16, 20))}' threads='2'/>\n"
            "  <maxphysaddr mode='emulate' bits='46'/>\n"
            + "".join(f"  <feature name='{f}'/>\n" for f in extra)
            + "  <pages unit='KiB' size='4'/>\n</cpu>\n")
    return "".join(out)


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh is not installed")
def test_cli_cpu_baseline_all_distinct_cluster_prints_what_virsh_prints(cat, tmp_path):
    # 2,000 hosts whose <cpu>s all differ (issue 15): the plain-<cpu> fast path,
    # and the same file as capabilities documents (the general path).
    plain = _all_distinct_cpus(2000, 15, cat)
    caps = "".join(f"<capabilities><host><uuid>{i}</uuid>{c}</host></capabilities>\n"
                   for i, c in enumerate(plain.split("</cpu>\n")[:-1]))
    caps = caps.replace("</host>", "</cpu></host>")
    for name, text in (("plain", plain), ("caps", caps)):
        p = tmp_path / f"{name}.xml"
        p.write_text(text)
        for flags in ((), ("--features",)):
            want = _virsh_baseline(p, *flags)
            got = run_cli("cpu-baseline", str(p), *flags)
            assert want.returncode == 0, want.stderr
            assert got.returncode == 0, got.stderr
            assert want.stdout == got.stdout + "\n", (name, flags)
