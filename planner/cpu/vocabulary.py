"""A host CPU named in one libvirt's vocabulary, re-described in another's.

libvirt 11 names a host CPU ``Icelake-Server-v2`` plus features libvirt 9.0 has no
name for; libvirt 9.0 names the same CPU ``Icelake-Server`` plus other features.
During an upgrade a snapshot holds both.  The CPU itself is the same bits: expand
the host CPU with the catalog that knows its names (model features + its own),
keep the features the target catalog can name (a feature renamed between
versions is one feature: same name here, as no 9.0 feature was renamed by 11.3),
and name them with the target catalog's model that leaves the fewest features
to list (close to what its libvirt's decode would pick from the same CPUID data;
the feature set, which is what baseline and compare use, is exact).  Pure: catalogs in, a CpuDef out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef, CpuFeature
from planner.cpu.engine import baseline


@dataclass(frozen=True)
class Translated:
    cpu: CpuDef  # the host CPU in the target catalog's names
    was: str | None  # the model it was named by
    unnamed: tuple[str, ...]  # features the target catalog cannot name (left out)


def knows(cpu: CpuDef, cat: Catalog) -> bool:
    """Whether ``cat`` knows the vendor, model and every feature of ``cpu``."""
    return ((cpu.vendor is None or cpu.vendor in cat.vendors)
            and (cpu.model is None or cpu.model in cat.model_by_name)
            and all(f.name in cat.feature_by_name for f in cpu.features))


def translate(cpu: CpuDef, src: Catalog, dst: Catalog) -> Translated | None:
    """``cpu`` (a host CPU that ``src`` knows) in ``dst``'s names; None when ``src``
    does not know it either or ``dst`` knows no vendor or model for it."""
    if not knows(cpu, src) or (cpu.vendor is not None and cpu.vendor not in dst.vendors):
        return None
    names: list[str] = list(src.model_by_name[cpu.model].features) if cpu.model else []
    names += [f.name for f in cpu.features if (f.policy or "require") in ("require", "force")]
    seen: set[str] = set()
    keep: list[str] = []
    unnamed: list[str] = []
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        (keep if n in dst.feature_by_name else unnamed).append(n)
    # The target model: libvirt's decode picks the model that leaves the fewest
    # features to list; among the models whose features the CPU all has, that is
    # the one with the most features (same vendor, or vendorless).
    have = set(keep)
    best = None
    for m in dst.models:
        if m.vendor not in (None, cpu.vendor) or not set(m.features) <= have:
            continue
        if best is None or len(m.features) > len(best.features):
            best = m
    if best is None:
        return None
    extra = tuple(CpuFeature(n, None) for n in keep if n not in set(best.features))
    # A domcapabilities host-model CPU carries no <arch>: it is the host's (x86_64).
    probe = replace(cpu, model=best.name, features=extra, arch=cpu.arch or "x86_64")
    # Then libvirt's own decode of those bits (baseline of the one CPU), as the
    # target libvirt would name the CPU.
    base = baseline([probe], dst)
    if base.model is None or any(f.policy in ("disable", "forbid") for f in base.features):
        return Translated(probe, cpu.model, tuple(sorted(unnamed)))
    decoded = tuple(CpuFeature(f.name, None) for f in base.features)
    return Translated(replace(cpu, model=base.model, features=decoded, arch=cpu.arch), cpu.model,
                      tuple(sorted(unnamed)))
