"""The plain-<cpu> fast path of parse_cpu_file gives what the general (lxml) path gives.

The general path is the one checked against libvirt (test_cpu_differential,
test_cpu_bad_input); here every variant of a host <cpu> is read both ways and
must give equal CpuDefs (same sharing, same labels) or the same error.
"""

from __future__ import annotations

import pytest

from planner.cpu import parse
from planner.errors import InputError

CPU = """<cpu>
  <arch>x86_64</arch>
  <model>Skylake-Server-IBRS</model>
  <vendor>Intel</vendor>
  <microcode version='33554453'/>
  <signature family='6' model='85' stepping='4'/>
  <counter name='tsc' frequency='2100000000' scaling='no'/>
  <topology sockets='1' dies='1' cores='20' threads='2'/>
  <maxphysaddr mode='emulate' bits='46'/>
  <feature name='ds'/>
  <feature name='acpi'/>
  <pages unit='KiB' size='4'/>
</cpu>
"""

VARIANTS = {
    "plain": CPU,
    "no optional children": "<cpu><arch>x86_64</arch><model>Haswell</model></cpu>",
    "scaling yes, no dies": CPU.replace("scaling='no'", "scaling='yes'").replace(" dies='1'", ""),
    "no scaling": CPU.replace(" scaling='no'", ""),
    "repeated feature": CPU.replace("'acpi'", "'ds'"),
    "comment": CPU.replace("<vendor>", "<!-- x --><vendor>"),
    "double quotes": CPU.replace("'ds'", '"ds"'),
    "zero family": CPU.replace("family='6'", "family='0'"),
    "bad microcode": CPU.replace("33554453", "-1"),
    "huge microcode": CPU.replace("33554453", "99999999999"),
    "unknown arch": CPU.replace("x86_64", "sparc"),
    "missing model": CPU.replace("  <model>Skylake-Server-IBRS</model>\n", ""),
    "empty feature name": CPU.replace("'acpi'", "''"),
    "entity in vendor": CPU.replace("Intel", "Int&#101;l"),
    "cdata model": CPU.replace("Skylake-Server-IBRS</model>", "<![CDATA[Haswell]]></model>"),
    "zero cores": CPU.replace("cores='20'", "cores='0'"),
    "crlf": CPU.replace("\n", "\r\n"),
    "xml declaration": "<?xml version='1.0'?>\n" + CPU,
    "trailing junk": CPU + "<cpu>",
    "trailing text": CPU + "junk",
}


def general(data: bytes, cpu_type: str) -> list[parse.CpuDef]:
    saved = parse._plain_host_cpus
    parse._plain_host_cpus = lambda data, source: None  # type: ignore[assignment]
    try:
        return parse.parse_cpu_file(data, "f.xml", cpu_type)
    finally:
        parse._plain_host_cpus = saved  # type: ignore[assignment]


def outcome(fn, data: bytes, cpu_type: str) -> object:
    try:
        cpus = fn(data, cpu_type)
    except InputError as err:
        return ("error", str(err))
    sharing = [next(i for i, d in enumerate(cpus) if d is c) for c in cpus]
    return ([(c, c.source) for c in cpus], sharing)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("cpu_type", ["host", "auto"])
def test_fast_path_equals_general_path(name, cpu_type):
    # Alone, and amid plain CPUs (repeats share one CpuDef, numbered as in the file).
    for text in (VARIANTS[name], CPU + VARIANTS[name] + CPU + "\n" + CPU.replace("  ", "\t")):
        data = text.encode()
        fast = outcome(lambda d, t: parse.parse_cpu_file(d, "f.xml", t), data, cpu_type)
        assert fast == outcome(general, data, cpu_type), name


def test_fast_path_is_taken_for_plain_cpus():
    data = (CPU * 3).encode()
    cpus = parse._plain_host_cpus(data, "f.xml")
    assert cpus is not None and len(cpus) == 3 and cpus[0] is cpus[2]
    assert parse._plain_host_cpus(VARIANTS["comment"].encode(), "f.xml") is None
