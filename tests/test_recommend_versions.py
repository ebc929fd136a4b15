"""Which libvirt decides (issue 13.3): with hosts on different libvirt releases, every
model in cpu_models and every +flag is one each host's libvirt knows (nova-compute on a
host whose libvirt lacks a model in cpu_models refuses to start), and the explanation
says which host's libvirt ruled a model or flag out."""

from __future__ import annotations

import dataclasses

from builders import host, host_model_of
from conftest import MODERN_CORPUS

from planner.adapters.catalogs import catalog_for_hosts, name_table
from planner.cpu.parse import parse_cpu_file
from planner.recommend.cpu_config import recommend

SPR = parse_cpu_file((MODERN_CORPUS / "x86_64-cpuid-Xeon-Bronze-3408U-host.xml").read_bytes(),
                     "spr", "host")[0]


def _spr(name, version, drop=()):
    cpu = dataclasses.replace(SPR, features=tuple(f for f in SPR.features if f.name not in drop))
    # domcapabilities offering every host feature: without it no +flag is proven (issue 14)
    return host(name, cpu=cpu, host_model=host_model_of(cpu), libvirt_version=version)


def test_a_model_unknown_to_an_older_hosts_libvirt_is_replaced_and_said_so():
    hosts = [_spr("cn01", "11.3.0"), _spr("cn02", "11.3.0", drop=("pbe",))]
    alone = recommend(hosts, catalog_for_hosts(hosts), what_if=False)
    assert alone.cpu_models[0] == "SapphireRapids"  # libvirt 11.3's own baseline
    hosts.append(_spr("cn07", "8.0.0", drop=("tm",)))
    cat = catalog_for_hosts(hosts)
    rec = recommend(hosts, cat, what_if=False)
    lib8 = name_table().release_for("8.0.0")
    assert lib8 is not None
    assert rec.cpu_models[0] != "SapphireRapids"
    assert all(m in lib8.models for m in rec.cpu_models), rec.cpu_models
    assert all(f[1:] in lib8.features for f in rec.cpu_model_extra_flags if f[0] == "+")
    text = "\n".join(rec.explanation)
    assert (f"SapphireRapids is unknown to libvirt 8.0.0 on cn07: using {rec.cpu_models[0]}"
            in text), text
    assert "The hosts run libvirt 8.0.0, 11.3.0" in text
    # a flag libvirt 8.0 cannot name (its host CPU has it) is left out, and said so
    assert "avx512-fp16" in {f.name for f in SPR.features}
    assert "+avx512-fp16" not in rec.cpu_model_extra_flags
    assert any("avx512-fp16" in e and "unknown to libvirt 8.0.0 on cn07" in e
               for e in rec.explanation)


def test_hosts_of_one_libvirt_are_not_restricted():
    hosts = [_spr("cn01", "11.3.0"), _spr("cn02", "11.3.0", drop=("pbe",))]
    rec = recommend(hosts, catalog_for_hosts(hosts), what_if=False)
    assert not any("libvirt" in e and "decides" in e for e in rec.explanation)
    assert "+fdp-excptn-only" in rec.cpu_model_extra_flags  # 11.3 names it: kept


def test_a_host_without_a_libvirt_version_is_named():
    hosts = [_spr("cn01", "11.3.0"), _spr("cn02", None, drop=("pbe",))]
    rec = recommend(hosts, catalog_for_hosts(hosts), what_if=False)
    assert any("No libvirt version for cn02" in e for e in rec.explanation)


def test_one_cpu_named_by_libvirt_9_and_by_libvirt_11_loses_nothing():
    # an Ice Lake-SP: libvirt 11 says Icelake-Server-v1 + features, libvirt 9.0 names the
    # same CPUID bits with its own decode (a 9.0 host of the same fleet)
    from planner.adapters.catalogs import default_catalog, shipped_catalog
    from planner.cpu.engine import decode

    new = parse_cpu_file((MODERN_CORPUS / "x86_64-cpuid-Ice-Lake-Server-host.xml").read_bytes(),
                         "icx", "host")[0]
    cat9, cat11 = default_catalog(), shipped_catalog("11.3")
    names = [*cat11.model_by_name[new.model].features, *(f.name for f in new.features)]
    dec = decode(cat9.mask_of(n for n in names if n in cat9.feature_by_name), "Intel", cat9,
                 cpu_type="host", signature=new.signature)
    old = dataclasses.replace(new, model=dec.model, features=tuple(
        dataclasses.replace(f, policy=None) for f in dec.features))
    assert old.model == "Icelake-Server" and new.model == "Icelake-Server-v1"
    hosts = [host("cn01", cpu=old, host_model=host_model_of(old), libvirt_version="9.0.0"),
             host("cn04", cpu=new, host_model=host_model_of(new), libvirt_version="11.3.0")]
    cat = catalog_for_hosts(hosts)
    rec = recommend(hosts, cat, what_if=False)
    assert rec.cpu_models[0] == "Icelake-Server"  # the model both libvirts know
    lost = {c.host: set(c.features_lost) for c in rec.costs}
    # the 9.0 host gives up nothing but what Nova's flags leave out by rule; the 11.3
    # host in addition only what libvirt 9.0 cannot name
    rule = {"vmx"} | cat.nonmigratable | {"ds", "acpi", "tm", "pbe", "dtes64", "monitor",
                                          "ds_cpl", "smx", "est", "tm2", "xtpr", "dca",
                                          "osxsave", "ospke", "cmt", "mbm_total",
                                          "mbm_local", "intel-pt"}
    # and mpx, which libvirt 11.3 removed from the Ice Lake models (the guest CPU says
    # -mpx, which libvirt 9.0 understands; Linux dropped MPX support in 5.6)
    rule.add("mpx")
    assert "-mpx" in rec.cpu_model_extra_flags
    assert lost["cn01"] <= rule, lost["cn01"] - rule
    unknown_to_9 = {n for n in names if n not in cat9.feature_by_name}
    assert lost["cn04"] <= rule | unknown_to_9, lost["cn04"] - rule - unknown_to_9
