"""migplan's answers in-process, and the checker that compares them with libvirt's.

The checker is a plain function returning the differences it found, so one
test can run it on hundreds of cases and another can show that it catches a
deliberately wrong engine (the suite can fail).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from oracle import Answer, PrivateOracle, TestDriverOracle, libvirt_core_message

from planner.cpu.catalog import Catalog
from planner.cpu.engine import baseline, compare
from planner.cpu.parse import cpu_elements, parse_cpu_element
from planner.cpu.render import cpu_to_xml
from planner.errors import MigplanError


def mp_baseline(xmls: Iterable[str], cat: Catalog, *, expand: bool = False,
                migratable: bool = False) -> Answer:
    """What ``migplan cpu-baseline`` prints for these host <cpu> elements."""
    try:
        # As the CLI reads each file: the <cpu> elements virsh would find.
        cpus = [parse_cpu_element(el, "host", f"CPU #{i}")
                for i, x in enumerate(xmls, start=1)
                for el in cpu_elements(x.encode(), f"CPU #{i}")]
        return Answer(text=cpu_to_xml(baseline(cpus, cat, expand=expand,
                                               migratable=migratable)))
    except MigplanError as err:
        return Answer(error=str(err))


@dataclass(frozen=True)
class MpCompare:
    result: str | None  # identical / superset / incompatible, None on error
    message: str | None
    features: tuple[str, ...] = ()
    error: str | None = None


def mp_compare(host_xml: str, cpu_doc: str, cat: Catalog) -> MpCompare:
    """What ``migplan cpu-compare`` answers for one host and the first CPU of ``cpu_doc``."""
    try:
        host = parse_cpu_element(cpu_elements(host_xml.encode(), "host")[0], "host", "host")
        el = cpu_elements(cpu_doc.encode(), "cpu")[0]
        cpu = parse_cpu_element(el, "auto", "cpu")
        res = compare(host, cpu, cat)
    except MigplanError as err:
        return MpCompare(None, None, error=str(err))
    return MpCompare(res.result, res.message, res.features)


def errors_agree(libvirt_error: str, migplan_error: str) -> bool:
    """Both refused; when libvirt's CPU code wrote the message, migplan says the same.

    migplan prefixes its messages with where the CPU came from ("f.xml: CPU #3:"),
    so libvirt's message (without virErrorMsg's category) must end migplan's.
    libvirt's XML parser messages (libxml2's text, "(CPU_definition):1: ...")
    are not libvirt's CPU rules: there only the refusal must agree.
    """
    core = libvirt_core_message(libvirt_error)
    if core.startswith("(CPU_definition)"):
        return True
    return migplan_error.endswith(core)


@dataclass
class Report:
    """Cases run and differences found, by category."""

    cases: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def count(self, category: str, n: int = 1) -> None:
        self.cases[category] = self.cases.get(category, 0) + n

    def summary(self) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.cases.items()))
        head = f"{sum(self.cases.values())} cases ({parts}); {len(self.differences)} differences"
        return head + "".join(f"\n--- {d}" for d in self.differences[:10])


def check_answer(report: Report, category: str, label: str, lv: Answer, mp: Answer) -> None:
    report.count(category)
    if lv.ok and mp.ok:
        if lv.text != mp.text:
            report.differences.append(f"{category} {label}: output differs\nlibvirt:\n{lv.text}"
                                      f"migplan:\n{mp.text}")
    elif lv.ok != mp.ok:
        report.differences.append(
            f"{category} {label}: libvirt {'ok' if lv.ok else 'error: ' + str(lv.error)}, "
            f"migplan {'ok' if mp.ok else 'error: ' + str(mp.error)}")
    elif not errors_agree(str(lv.error), str(mp.error)):
        report.differences.append(f"{category} {label}: messages differ: libvirt "
                                  f"{lv.error!r}, migplan {mp.error!r}")


def check_baselines(report: Report, label: str, xmls: list[str], cat: Catalog,
                    test_driver: TestDriverOracle, private: PrivateOracle | None) -> None:
    """Baseline with and without expansion (test driver) and migratable (libvirt's
    generic virCPUBaseline) must equal migplan's."""
    for expand in (False, True):
        cat_name = "baseline+features" if expand else "baseline"
        check_answer(report, cat_name, label, test_driver.baseline(xmls, expand),
                     mp_baseline(xmls, cat, expand=expand))
    if private is not None:
        for expand in (False, True):
            cat_name = "baseline-migratable" + ("+features" if expand else "")
            check_answer(report, cat_name, label,
                         private.baseline(xmls, migratable=True, expand=expand),
                         mp_baseline(xmls, cat, migratable=True, expand=expand))


def check_compare(report: Report, label: str, host_xml: str, guest_xml: str, cpu_doc: str,
                  cat: Catalog, private: PrivateOracle) -> None:
    """virCPUCompareXML (result, and the message naming the blocking features
    with failIncompatible) must equal migplan's compare."""
    report.count("compare")
    lv = private.compare(host_xml, guest_xml)
    mp = mp_compare(host_xml, cpu_doc, cat)
    if lv.error is not None or mp.error is not None:
        if lv.error is None or mp.error is None:
            report.differences.append(f"compare {label}: libvirt {lv}, migplan {mp}")
        elif not errors_agree(lv.error, mp.error):
            report.differences.append(f"compare {label}: messages differ: libvirt "
                                      f"{lv.error!r}, migplan {mp.error!r}")
        return
    if lv.text != mp.result:
        report.differences.append(f"compare {label}: libvirt {lv.text}, migplan {mp.result}")
        return
    if lv.text != "incompatible":
        return
    strict = private.compare(host_xml, guest_xml, fail_incompatible=True)
    want = libvirt_core_message(strict.error or "")
    if mp.message != want:
        report.differences.append(f"compare {label}: blocking message differs: libvirt "
                                  f"{want!r}, migplan {mp.message!r}")
    elif mp.features and not want.endswith(": " + ", ".join(mp.features)):
        report.differences.append(f"compare {label}: blocking features {mp.features} "
                                  f"not those of {want!r}")
