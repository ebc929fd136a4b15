"""The modern-mixed-fleet fixture (issue 13.4): a 2026 cloud in the middle of an upgrade,
built from real host CPUs (tests/data/cputestdata/modern and future, libvirt's own test
data), each host described the way its own libvirt describes it.

* Intel aggregate: two Cascade Lake (Xeon Silver 4214R) and one Ice Lake-SP host still on
  libvirt 9.0, a Sapphire Rapids (Xeon Bronze 3408U) and an Emerald Rapids (Xeon Gold
  6530) host on libvirt 11.3;
* AMD aggregate: two EPYC 7713 (Milan) hosts on libvirt 11.3 and an EPYC 9334 (Genoa)
  host on a libvirt newer than 11.3, whose CPU (EPYC-Genoa-v2, cet-ss, gmet) no shipped
  catalog knows.

A libvirt 11.3 host's CPU is the test-data file itself (libvirt 11 wrote it).  A libvirt
9.0 host's CPU is what libvirt 9.0's decode names the same CPU's features (the file's
model and features in 11.3's catalog, less the features 9.0 has no name for: 9.0 cannot
read those CPUID bits either).  domcapabilities' host-model and usable custom models
come from the same feature set and the host's own catalog.  Used by make_fixtures.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.adapters.catalogs import default_catalog, shipped_catalog
from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef
from planner.cpu.engine import decode
from planner.cpu.parse import parse_cpu_file

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "cputestdata"
CAT9 = default_catalog()
CAT11 = shipped_catalog("11.3")
# Not offered to guests by QEMU/KVM (as make_fixtures.NOT_FOR_GUESTS), so never in host-model
_NOT_FOR_GUESTS = ("ds acpi tm pbe dtes64 monitor ds_cpl smx est tm2 xtpr dca osxsave ospke cmt "
                   "mbm_total mbm_local intel-pt ibs skinit wdt tce perfctr_nb cmp_legacy invtsc")
NOT_FOR_GUESTS = frozenset(_NOT_FOR_GUESTS.split())


@dataclass(frozen=True)
class RealCpu:
    label: str
    file: str  # under tests/data/cputestdata
    tsc_hz: int

    def cpu(self) -> CpuDef:
        return parse_cpu_file((DATA / self.file).read_bytes(), self.file, "host")[0]

    @property
    def vendor(self) -> str:
        return self.cpu().vendor or ""

    @property
    def signature(self) -> tuple[int, int, int]:
        sig = self.cpu().signature
        assert sig is not None
        return sig

    def names(self) -> list[str]:
        """Every feature of the CPU in libvirt 11.3's names (its model's and its own)."""
        cpu = self.cpu()
        model = CAT11.model_by_name.get(cpu.model or "")
        if model is None:
            return []
        return [*model.features, *(f.name for f in cpu.features)]

    def mask(self, cat: Catalog) -> int:
        return cat.mask_of(n for n in self.names() if n in cat.feature_by_name)


CPUS = {
    "cascadelake-4214r": RealCpu("Xeon Silver 4214R (Cascade Lake)",
                                 "modern/x86_64-cpuid-Xeon-Silver-4214R-host.xml", 2394374000),
    "icelake-sp": RealCpu("Xeon Ice Lake-SP", "modern/x86_64-cpuid-Ice-Lake-Server-host.xml",
                          2294608000),
    "sapphirerapids-3408u": RealCpu("Xeon Bronze 3408U (Sapphire Rapids)",
                                    "modern/x86_64-cpuid-Xeon-Bronze-3408U-host.xml",
                                    1800000000),
    "emeraldrapids-6530": RealCpu("Xeon Gold 6530 (Emerald Rapids)",
                                  "modern/x86_64-cpuid-Xeon-Gold-6530-host.xml", 2100000000),
    "milan-7713": RealCpu("EPYC 7713 (Milan)", "modern/x86_64-cpuid-EPYC-7713-64-Core-host.xml",
                          1996249000),
    "genoa-9334": RealCpu("EPYC 9334 (Genoa)", "future/x86_64-cpuid-EPYC-9334-32-Core-host.xml",
                          2699999000),
}


def catalog_of(libvirt: str) -> Catalog | None:
    """The catalog the host's own libvirt has (None: newer than any shipped one)."""
    return {"9.0.0": CAT9, "11.3.0": CAT11}.get(libvirt)


def host_cpu_lines(spec: RealCpu, libvirt: str) -> list[str]:
    """The <cpu> of capabilities.xml's <host>, without topology and pages."""
    cat = catalog_of(libvirt)
    if cat is not CAT9:
        # libvirt 11 (or newer) wrote this description itself
        text = (DATA / spec.file).read_text().strip().splitlines()
        return text[1:-1]
    dec = decode(spec.mask(cat), spec.vendor, cat, cpu_type="host", signature=spec.signature)
    fam, mod, step = spec.signature
    return ["  <arch>x86_64</arch>", f"  <model>{dec.model}</model>",
            f"  <vendor>{spec.vendor}</vendor>",
            f"  <signature family='{fam}' model='{mod}' stepping='{step}'/>",
            *(f"  <feature name='{f.name}'/>" for f in dec.features)]


def host_model(spec: RealCpu, libvirt: str) -> tuple[str, list[tuple[str, str]]] | None:
    """domcapabilities' host-model (model, [(policy, feature)]) in the host's catalog."""
    cat = catalog_of(libvirt)
    if cat is None:
        return None
    mask = spec.mask(cat) & ~cat.mask_of(f for f in NOT_FOR_GUESTS if f in cat.feature_by_name)
    hm = decode(mask, spec.vendor, cat, cpu_type="guest", migratable=True)
    return hm.model, [(f.policy or "require", f.name) for f in hm.features]


def custom_models(spec: RealCpu, libvirt: str) -> list[tuple[str, str, str]]:
    """(model, usable, vendor) of domcapabilities' custom mode, the host's catalog order."""
    cat = catalog_of(libvirt)
    if cat is None:
        return []
    have = spec.mask(cat)
    skip = {"486", "pentium", "pentium2", "pentium3", "pentiumpro"}
    return [(m.name, "yes" if m.mask & ~have == 0 else "no", m.vendor or "unknown")
            for m in cat.models if m.name not in skip and m.decode_guest]


def model_names(libvirt: str) -> list[str]:
    cat = catalog_of(libvirt) or CAT11
    return [m.name for m in cat.models]
