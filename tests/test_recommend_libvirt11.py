"""The model `recommend` chooses, with its flags, against libvirt itself (issue 13.1):
libvirt 11.3 (the oracle chroot) on clusters of real modern CPUs as libvirt 11 describes
them, and the installed libvirt 9.0 on the classic ones.

cpu_models[0] must be libvirt's baseline model; every +flag a feature libvirt's baseline
requires and every -flag one it disables; and with --features, the guest CPU the
recommendation gives (model + flags, expanded) must be libvirt's expanded baseline less
exactly the features nova_flags leaves out by rule (QEMU-filtered, non-migratable,
vmx/svm): nothing else lost, nothing added.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import oracle11
import pytest
from builders import host, host_model_of
from conftest import CORPUS, MODERN_CORPUS

from planner.adapters.catalogs import catalog_for_hosts
from planner.cpu.engine import QEMU_FILTERED_FEATURES, expand_features
from planner.cpu.parse import parse_cpu_file
from planner.cpu.render import cpu_to_xml
from planner.recommend.cpu_config import NESTED_FEATURES, recommend

MODERN = sorted(MODERN_CORPUS.glob("*-host.xml"))
INTEL = [p for p in MODERN if "EPYC" not in p.name and "Ryzen" not in p.name]
AMD = [p for p in MODERN if p not in INTEL]
CLASSIC_INTEL = [p for p in sorted(Path(CORPUS).glob("x86-cpuid-*-host.xml"))
                 if "A10" not in p.name and "Core2" not in p.name]


def _hosts(files, version):
    out = []
    for i, p in enumerate(files):
        cpu = parse_cpu_file(p.read_bytes(), p.name, "host")[0]
        # domcapabilities offering every host feature: without it no +flag is proven
        # (issue 14 item 5), with it the flags are libvirt's baseline's
        out.append(host(f"h{i}", cpu=cpu, host_model=host_model_of(cpu),
                        libvirt_version=version))
    return out


def _clusters(files):
    yield from ([a, b] for a, b in itertools.combinations(files, 2))
    yield list(files)


def _features(xml: str) -> tuple[str | None, dict[str, str]]:
    cpu = parse_cpu_file(xml.encode(), "libvirt", "guest")[0]
    return cpu.model, {f.name: f.policy or "require" for f in cpu.features}


def _check(rec, cat, plain_xml: str, expanded_xml: str) -> None:
    model, feats = _features(plain_xml)
    assert rec.cpu_mode == "custom"
    assert rec.cpu_models[0] == model
    left_out = QEMU_FILTERED_FEATURES | cat.nonmigratable | NESTED_FEATURES
    for flag in rec.cpu_model_extra_flags:
        assert feats.get(flag[1:]) == ("require" if flag[0] == "+" else "disable"), flag
    for name, policy in feats.items():
        sign = "+" if policy == "require" else "-"
        assert f"{sign}{name}" in rec.cpu_model_extra_flags or name in left_out, name
    _, full = _features(expanded_xml)
    want = {n for n, p in full.items() if p == "require"}
    got = {f.name for f in expand_features(rec.guest_cpu, cat).features if f.policy == "require"}
    assert got <= want, sorted(got - want)
    assert want - got <= left_out, sorted(want - got - left_out)


@pytest.fixture(scope="module")
def virsh11():
    try:
        oracle11.chroot_dir()
    except oracle11.Oracle11Missing as err:
        pytest.skip(str(err))

    def run(files, *flags):
        r = oracle11.virsh("cpu-baseline", *flags, "@in.xml",
                           files={"in.xml": b"".join(p.read_bytes() for p in files)})
        assert r.returncode == 0, r.stderr
        return r.stdout
    return run


@pytest.mark.oracle
@pytest.mark.parametrize("files", list(_clusters(INTEL)) + [AMD],
                         ids=lambda fs: "+".join(p.stem.split("cpuid-")[1][:-5] for p in fs))
def test_recommended_model_and_flags_equal_libvirt_11_3(virsh11, files):
    hosts = _hosts(files, "11.3.0")
    cat = catalog_for_hosts(hosts)
    assert cat.libvirt_version == "11.3.0"
    rec = recommend(hosts, cat, what_if=False)
    _check(rec, cat, virsh11(files), virsh11(files, "--features"))


libvirt = pytest.importorskip("libvirt")


@pytest.mark.oracle
@pytest.mark.parametrize("files", list(_clusters(CLASSIC_INTEL)),
                         ids=lambda fs: "+".join(p.stem.split("cpuid-")[1][:-5] for p in fs))
def test_recommended_model_and_flags_equal_the_installed_libvirt_9_0(files):
    hosts = _hosts(files, "9.0.0")
    cat = catalog_for_hosts(hosts)
    assert cat.libvirt_version == "9.0.0"
    rec = recommend([dataclasses.replace(h) for h in hosts], cat, what_if=False)
    conn = libvirt.open("test:///default")
    try:
        xmls = [cpu_to_xml(h.cpu) for h in hosts]
        plain = conn.baselineCPU(xmls, 0)
        full = conn.baselineCPU(xmls, libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
    finally:
        conn.close()
    _check(rec, cat, plain, full)
