"""libvirt 11.3's cpu_map and answers (issue 13): the shipped 11.3 catalog, a host's own
libvirt 11 cpu_map directory, and cpu-baseline against libvirt 11.3 itself.

The oracle is ``virsh -c test:///default cpu-baseline`` of libvirt 11.3 in the chroot
scripts/libvirt_oracle.sh builds (tests skip, saying why, when it cannot be built).  The
inputs are real host CPUs as libvirt 11 describes them (tests/data/cputestdata/modern).
"""

from __future__ import annotations

import itertools
import json

import oracle11
import pytest
from conftest import MODERN_CORPUS, REPO, run_cli

from planner.adapters.catalogs import load_catalog

CAT11 = REPO / "cpu_maps" / "x86-11.3.json"
MODERN = sorted(MODERN_CORPUS.glob("*-host.xml"))
INTEL_SERVERS = [p for p in MODERN if "Xeon" in p.name]

@pytest.fixture(scope="module")
def oracle():
    try:
        oracle11.chroot_dir()
    except oracle11.Oracle11Missing as err:
        pytest.skip(str(err))
    return oracle11


def test_shipped_11_3_catalog_knows_libvirt_11_models_and_features():
    cat = load_catalog(CAT11)
    assert cat.libvirt_version == "11.3.0"
    for m in ("Icelake-Server-v2", "Cascadelake-Server-v3", "Skylake-Server-v2", "EPYC-Milan-v2",
              "SapphireRapids", "GraniteRapids", "EPYC-Genoa"):
        assert m in cat.model_by_name, m
    for f in ("fdp-excptn-only", "gds-no", "rfds-no", "flush-l1d", "bhi-ctrl", "amx-tile",
              "avx512-fp16"):
        assert f in cat.feature_by_name, f


def test_a_libvirt_11_cpu_map_directory_loads_as_the_shipped_catalog(oracle):
    # libvirt >= 10 nests index.xml's includes in <group>: once "no x86 CPU models found"
    cat = load_catalog(oracle.cpu_map_dir())
    shipped = json.loads(CAT11.read_text())
    got = cat.to_json()
    for key in ("vendors", "features", "models"):
        assert got[key] == shipped[key], key


def _cases():
    for flags in ("", "--features"):
        for p in MODERN:
            yield pytest.param(flags, [p], id=f"{p.stem}{flags}")
        for a, b in itertools.combinations(INTEL_SERVERS, 2):
            yield pytest.param(flags, [a, b], id=f"{a.stem}+{b.stem}{flags}")


@pytest.mark.oracle
@pytest.mark.parametrize("flags, files", list(_cases()))
def test_cpu_baseline_equals_libvirt_11_3(oracle, flags, files):
    extra = [flags] if flags else []
    mine = run_cli("cpu-baseline", *extra, "--cpu-map", str(CAT11), *map(str, files))
    theirs = oracle.virsh("cpu-baseline", *extra, "@in.xml",
                          files={"in.xml": b"".join(p.read_bytes() for p in files)})
    assert theirs.returncode == 0, theirs.stderr
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.strip() == theirs.stdout.strip()


def test_cpu_map_11_3_selects_the_shipped_catalog_and_plans_libvirt_11_hosts(tmp_path):
    # a Sapphire Rapids and a Cascade Lake host as libvirt 11 describes them
    f = tmp_path / "caps.xml"
    f.write_bytes(b"".join(p.read_bytes() for p in INTEL_SERVERS
                           if "Bronze" in p.name or "Silver" in p.name))
    r = run_cli("cpu-baseline", "--cpu-map", "11.3", str(f))
    assert r.returncode == 0, r.stderr
    # libvirt 11.3 answers the same (test above): a plain model, never a -vN name
    assert "<model fallback='allow'>Cooperlake</model>" in r.stdout
    for feat in ("hle", "rtm", "avx512-bf16", "taa-no"):
        assert f"<feature policy='disable' name='{feat}'/>" in r.stdout
    r = run_cli("cpu-baseline", str(f))
    assert r.returncode != 0 and "Icelake-Server-v2" in r.stderr
