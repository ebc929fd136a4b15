#!/usr/bin/env python3
"""Compose the heterogeneous snapshot fixtures under fixtures/ (committed output).

Every lab host sees this machine's one CPU, so clusters of several CPU
generations, NUMA layouts, storage backends and passthrough devices are
composed here.  Host CPUs are built the way libvirt prints them: a full
feature set (a catalog model plus the extra features real CPUs of that
generation report, after libvirt's tests/cputestdata) is decoded with
migplan's libvirt-exact ``decode`` into model + extra features; the
domcapabilities host-model CPU and the ``usable`` flags of custom models are
derived from the same feature set.  Files are written with collect's own
writer, so the layout is exactly what ``migplan collect`` produces.

    python scripts/make_fixtures.py            # rewrite fixtures/<scenario>/
    python scripts/make_fixtures.py --check    # fail if the committed output differs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner import __version__  # noqa: E402
from planner.adapters.catalogs import default_catalog  # noqa: E402
from planner.cpu.engine import decode  # noqa: E402
from planner.snapshot.write import SNAPSHOT_FORMAT, write_host  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
import fixture_modern as modern  # noqa: E402

CAT = default_catalog()
COLLECTED_AT = "2026-11-23T09:00:00Z"


def _words(text: str) -> list[str]:
    return text.split()


# Features real hosts report that no QEMU model carries (thermal, debug store...).
INTEL_HOST_EXTRAS = _words("vme ds acpi ss ht tm pbe dtes64 monitor ds_cpl vmx smx est tm2 xtpr pdcm "
                     "dca osxsave tsc_adjust pdpe1gb abm invtsc arat")
AMD_HOST_EXTRAS = _words("ht cmp_legacy svm extapic ibs skinit wdt tce topoext perfctr_core "
                   "perfctr_nb invtsc lbrv tsc-scale vmcb-clean flushbyasid pause-filter "
                   "pfthreshold svme-addr-chk")
# Not offered to guests by QEMU/KVM, so never in a host-model CPU.
NOT_FOR_GUESTS = set(_words("ds acpi tm pbe dtes64 monitor ds_cpl smx est tm2 xtpr dca osxsave ospke "
                     "cmt mbm_total mbm_local intel-pt ibs skinit wdt tce perfctr_nb "
                     "cmp_legacy"))


@dataclass(frozen=True)
class CpuSpec:
    label: str  # e.g. "Xeon Gold 6230 (Cascade Lake)"
    base: str  # catalog model the feature set starts from
    vendor: str
    signature: tuple[int, int, int]
    extras: tuple[str, ...]
    tsc_hz: int

    def mask(self) -> int:
        return CAT.model_by_name[self.base].mask | CAT.mask_of(self.extras)


def _intel(label: str, base: str, sig: tuple[int, int, int], more: str, tsc: int) -> CpuSpec:
    return CpuSpec(label, base, "Intel", sig, tuple(INTEL_HOST_EXTRAS + more.split()), tsc)


def _amd(label: str, base: str, sig: tuple[int, int, int], more: str, tsc: int) -> CpuSpec:
    return CpuSpec(label, base, "AMD", sig, tuple(AMD_HOST_EXTRAS + more.split()), tsc)


CPUS = {
    "haswell": _intel("Xeon E5-2680 v3 (Haswell-EP)", "Haswell-noTSX-IBRS", (6, 63, 2),
                      "f16c rdrand cmt xsaveopt md-clear stibp ssbd", 2494222000),
    "broadwell": _intel("Xeon E5-2690 v4 (Broadwell-EP)", "Broadwell-noTSX-IBRS", (6, 79, 1),
                        "cmt mbm_total mbm_local xsaveopt md-clear stibp ssbd", 2599998000),
    "skylake": _intel("Xeon Gold 6130 (Skylake-SP)", "Skylake-Server-IBRS", (6, 85, 4),
                      "cmt mbm_total mbm_local intel-pt pku ospke md-clear stibp ssbd "
                      "arch-capabilities clflushopt", 2095076000),
    "cascadelake": _intel("Xeon Gold 6230 (Cascade Lake)", "Cascadelake-Server", (6, 85, 7),
                          "cmt mbm_total mbm_local intel-pt md-clear stibp ssbd "
                          "arch-capabilities rdctl-no ibrs-all skip-l1dfl-vmentry mds-no "
                          "pschange-mc-no tsx-ctrl", 2095078000),
    "icelake": _intel("Xeon Gold 6338 (Ice Lake-SP)", "Icelake-Server", (6, 106, 6),
                      "intel-pt md-clear stibp ssbd arch-capabilities rdctl-no ibrs-all "
                      "skip-l1dfl-vmentry mds-no pschange-mc-no fsrm", 1995312000),
    "epyc-rome": _amd("EPYC 7302 (Rome)", "EPYC-Rome", (23, 49, 0),
                      "amd-ssbd virt-ssbd amd-stibp ibpb wbnoinvd", 2994372000),
    "epyc-milan": _amd("EPYC 7313 (Milan)", "EPYC-Milan", (25, 1, 1),
                       "amd-ssbd virt-ssbd amd-stibp ibpb", 2999998000),
}


def _uuid(*parts: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "migplan-fixture:" + "/".join(parts)))


# --- capabilities ------------------------------------------------------------------------


@dataclass
class HostSpec:
    name: str
    cpu: str  # key of CPUS
    cells: int = 1
    cores_per_cell: int = 8
    threads: int = 2
    mem_gib_per_cell: int = 64
    hugepages_2m: tuple[int, ...] = ()  # total per cell
    hugepages_1g: tuple[int, ...] = ()
    free_2m: tuple[int, ...] = ()
    free_1g: tuple[int, ...] = ()
    free_gib: tuple[float, ...] = ()
    qemu: str = "7.2.0"
    libvirt: str = "9.0.0"
    iommu: bool = True
    pools: list[tuple[str, str]] = field(default_factory=list)  # (name, pool xml)
    guests: list[dict[str, Any]] = field(default_factory=list)

    def mask(self) -> int:
        return CPUS[self.cpu].mask()


def _tsc_hz(h: HostSpec) -> int:
    return (modern.CPUS[h.cpu] if h.cpu in modern.CPUS else CPUS[h.cpu]).tsc_hz


def _host_cpu_xml(h: HostSpec, indent: str = "    ") -> str:
    timing = [f"  <counter name='tsc' frequency='{_tsc_hz(h)}' scaling='yes'/>",
              f"  <topology sockets='1' dies='1' cores='{h.cores_per_cell}' "
              f"threads='{h.threads}'/>"]
    if h.cpu in modern.CPUS:
        # a real CPU as its host's libvirt describes it (scripts/fixture_modern.py)
        body = modern.host_cpu_lines(modern.CPUS[h.cpu], h.libvirt)
        at = next(i for i, x in enumerate(body) if "<signature" in x) + 1
        lines = ["<cpu>", *body[:at], *timing, *body[at:]]
    else:
        spec = CPUS[h.cpu]
        dec = decode(h.mask(), spec.vendor, CAT, cpu_type="host", signature=spec.signature)
        fam, mod, step = spec.signature
        lines = [
            "<cpu>", "  <arch>x86_64</arch>", f"  <model>{dec.model}</model>",
            f"  <vendor>{spec.vendor}</vendor>", "  <microcode version='16777380'/>",
            f"  <signature family='{fam}' model='{mod}' stepping='{step}'/>", *timing,
            "  <maxphysaddr mode='emulate' bits='46'/>",
        ]
        lines += [f"  <feature name='{f.name}'/>" for f in dec.features]
    lines += ["  <pages unit='KiB' size='4'/>", "  <pages unit='KiB' size='2048'/>",
              "  <pages unit='KiB' size='1048576'/>", "</cpu>"]
    return "\n".join(indent + x for x in lines)


def _machines(qemu: str) -> list[str]:
    v = ".".join(qemu.split(".")[:2])
    if v not in ("6.2", "7.2"):  # a current QEMU still runs the machine types of 7.2
        return [f"pc-i440fx-{v}", f"pc-q35-{v}", "pc-q35-7.2", "pc-i440fx-7.2", "pc-q35-6.2",
                "pc-i440fx-6.2", "pc-q35-5.2"]
    return [f"pc-i440fx-{v}", f"pc-q35-{v}", "pc-q35-6.2", "pc-i440fx-6.2", "pc-q35-5.2"] \
        if v != "6.2" else ["pc-i440fx-6.2", "pc-q35-6.2", "pc-q35-5.2", "pc-i440fx-5.2"]


def capabilities_xml(h: HostSpec) -> str:
    ncpu_cell = h.cores_per_cell * h.threads
    total_cpus = ncpu_cell * h.cells
    cells = []
    for c in range(h.cells):
        mem_kib = h.mem_gib_per_cell * 1024 * 1024
        p2 = h.hugepages_2m[c] if h.hugepages_2m else 0
        p1 = h.hugepages_1g[c] if h.hugepages_1g else 0
        p4 = (mem_kib - p2 * 2048 - p1 * 1048576) // 4
        cpus = []
        for core in range(h.cores_per_cell):
            ids = [c * h.cores_per_cell + core + t * (total_cpus // h.threads)
                   for t in range(h.threads)]
            sib = ",".join(str(i) for i in ids)
            for i in ids:
                cpus.append(f"            <cpu id='{i}' socket_id='{c}' die_id='0' "
                            f"core_id='{core}' siblings='{sib}'/>")
        cpus.sort(key=lambda s: int(s.split("'")[1]))
        dist = "".join(f"            <sibling id='{o}' value='{10 if o == c else 21}'/>\n"
                       for o in range(h.cells))
        cells.append(
            f"        <cell id='{c}'>\n"
            f"          <memory unit='KiB'>{mem_kib}</memory>\n"
            f"          <pages unit='KiB' size='4'>{p4}</pages>\n"
            f"          <pages unit='KiB' size='2048'>{p2}</pages>\n"
            f"          <pages unit='KiB' size='1048576'>{p1}</pages>\n"
            f"          <distances>\n{dist}          </distances>\n"
            f"          <cpus num='{ncpu_cell}'>\n" + "\n".join(cpus) + "\n"
            "          </cpus>\n        </cell>")
    machines = "".join(
        f"      <machine maxCpus='288'>{m}</machine>\n" for m in _machines(h.qemu))
    canon = _machines(h.qemu)
    machines += f"      <machine canonical='{canon[0]}' maxCpus='255'>pc</machine>\n"
    machines += f"      <machine canonical='{canon[1]}' maxCpus='288'>q35</machine>\n"
    return f"""<capabilities>

  <host>
    <uuid>{_uuid(h.name, "host")}</uuid>
{_host_cpu_xml(h)}
    <power_management>
      <suspend_mem/>
    </power_management>
    <iommu support='{"yes" if h.iommu else "no"}'/>
    <migration_features>
      <live/>
      <uri_transports>
        <uri_transport>tcp</uri_transport>
        <uri_transport>rdma</uri_transport>
      </uri_transports>
    </migration_features>
    <topology>
      <cells num='{h.cells}'>
{chr(10).join(cells)}
      </cells>
    </topology>
    <secmodel>
      <model>none</model>
      <doi>0</doi>
    </secmodel>
  </host>

  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
{machines}      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
    <features>
      <acpi default='on' toggle='yes'/>
      <apic default='on' toggle='no'/>
      <cpuselection/>
      <deviceboot/>
      <disksnapshot default='on' toggle='no'/>
    </features>
  </guest>

</capabilities>
"""


def _cpu_modes(h: HostSpec) -> tuple[str, str, list[tuple[str, str]],
                                       list[tuple[str, str, str]]] | None:
    """vendor, host-model, its (policy, feature)s, custom (model, usable, vendor)s."""
    if h.cpu in modern.CPUS:
        real = modern.CPUS[h.cpu]
        hm = modern.host_model(real, h.libvirt)
        if hm is None:
            return None
        return real.vendor, hm[0], hm[1], modern.custom_models(real, h.libvirt)
    spec = CPUS[h.cpu]
    hmask = h.mask()
    guest_mask = hmask & ~CAT.mask_of(f for f in NOT_FOR_GUESTS if f in CAT.feature_by_name)
    dec = decode(guest_mask, spec.vendor, CAT, cpu_type="guest", migratable=True)
    custom = [(m.name, "yes" if m.mask & ~hmask == 0 else "no", m.vendor or "unknown")
              for m in CAT.models
              if m.name not in ("486", "pentium", "pentium2", "pentium3", "pentiumpro")]
    return (spec.vendor, dec.model, [(f.policy or "require", f.name) for f in dec.features],
            custom)


def domcapabilities_xml(h: HostSpec) -> str | None:
    modes = _cpu_modes(h)
    if modes is None:
        return None  # a libvirt newer than any shipped catalog: not composed
    vendor_name, hm_model, hm_feats, models = modes
    feats = "".join(f"      <feature policy='{pol}' name='{name}'/>\n" for pol, name in hm_feats)
    custom = "".join(f"      <model usable='{u}' vendor='{v}'>{m}</model>\n"
                     for m, u, v in models)
    machine = _machines(h.qemu)[1]
    return f"""<domainCapabilities>
  <path>/usr/bin/qemu-system-x86_64</path>
  <domain>kvm</domain>
  <machine>{machine}</machine>
  <arch>x86_64</arch>
  <vcpu max='288'/>
  <iothreads supported='yes'/>
  <os supported='yes'>
    <enum name='firmware'>
      <value>efi</value>
    </enum>
  </os>
  <cpu>
    <mode name='host-passthrough' supported='yes'>
      <enum name='hostPassthroughMigratable'>
        <value>on</value>
        <value>off</value>
      </enum>
    </mode>
    <mode name='maximum' supported='yes'>
      <enum name='maximumMigratable'>
        <value>on</value>
        <value>off</value>
      </enum>
    </mode>
    <mode name='host-model' supported='yes'>
      <model fallback='forbid'>{hm_model}</model>
      <vendor>{vendor_name}</vendor>
{feats}    </mode>
    <mode name='custom' supported='yes'>
{custom}    </mode>
  </cpu>
  <features>
    <gic supported='no'/>
    <vmcoreinfo supported='yes'/>
    <genid supported='yes'/>
    <sev supported='no'/>
  </features>
</domainCapabilities>
"""


# --- guests --------------------------------------------------------------------------------


def guest(name: str, *, mem_mib: int = 2048, vcpus: int = 2, state: str = "running",
          persistent: bool = True, cpu: str = "<cpu mode='host-model' check='partial'/>",
          machine: str = "pc-q35-7.2", extra: str = "", devices: str = "",
          disks: str | None = None, dom_id: int = 1) -> dict[str, Any]:
    uuid = _uuid("guest", name)
    if disks is None:
        disks = (f"    <disk type='file' device='disk'>\n"
                 f"      <driver name='qemu' type='qcow2' cache='none'/>\n"
                 f"      <source file='/var/lib/nova/instances/{uuid}/disk'/>\n"
                 f"      <target dev='vda' bus='virtio'/>\n    </disk>\n")
    id_attr = f" id='{dom_id}'" if state == "running" else ""
    xml = f"""<domain type='kvm'{id_attr}>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='KiB'>{mem_mib * 1024}</memory>
  <currentMemory unit='KiB'>{mem_mib * 1024}</currentMemory>
  <vcpu placement='static'>{vcpus}</vcpu>
{extra}  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  {cpu}
  <clock offset='utc'>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='rtc' tickpolicy='catchup'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disks}{devices}    <serial type='pty'>
      <target type='isa-serial' port='0'/>
    </serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""
    return {"name": name, "uuid": uuid, "state": state, "reason": 1 if state == "running" else 2,
            "persistent": persistent, "xml": xml}


def custom_cpu(model: str, *features: str, vendor: str | None = None) -> str:
    inner = f"\n    <model fallback='forbid'>{model}</model>\n"
    if vendor:
        inner += f"    <vendor>{vendor}</vendor>\n"
    inner += "".join(f"    <feature policy='require' name='{f}'/>\n" for f in features)
    return f"<cpu mode='custom' match='exact' check='partial'>{inner}  </cpu>"


def pool(name: str, ptype: str, target: str | None, source: str = "") -> tuple[str, str]:
    tgt = f"  <target>\n    <path>{target}</path>\n  </target>\n" if target else ""
    return name, (f"<pool type='{ptype}'>\n  <name>{name}</name>\n"
                  f"  <uuid>{_uuid('pool', name)}</uuid>\n"
                  f"  <capacity unit='bytes'>1099511627776</capacity>\n"
                  f"  <allocation unit='bytes'>274877906944</allocation>\n"
                  f"  <available unit='bytes'>824633720832</available>\n"
                  f"  <source>\n{source}  </source>\n{tgt}</pool>\n")


# --- scenarios -------------------------------------------------------------------------------


def mixed_intel_generations() -> list[HostSpec]:
    hosts = []
    for i, (cpu, qemu) in enumerate([("haswell", "6.2.0"), ("broadwell", "6.2.0"),
                                     ("skylake", "7.2.0"), ("cascadelake", "7.2.0"),
                                     ("icelake", "7.2.0")], start=1):
        name = f"cn{i:02d}"
        machine = "pc-q35-6.2"
        hosts.append(HostSpec(
            name, cpu, cells=2, cores_per_cell=10 + 2 * i, mem_gib_per_cell=128, qemu=qemu,
            libvirt="8.0.0" if qemu == "6.2.0" else "9.0.0",
            free_gib=(80.0 - 5 * i, 96.0),
            pools=[pool("nova-instances", "dir", "/var/lib/nova/instances")],
            guests=[
                guest(f"{name}-web", cpu=custom_cpu("Haswell-noTSX"), machine=machine,
                      dom_id=1),
                guest(f"{name}-hostmodel", dom_id=2, machine=machine),
                guest(f"{name}-batch", vcpus=4, mem_mib=8192, state="shutoff",
                      cpu=custom_cpu(CPUS[cpu].base, "pdpe1gb"), machine=machine),
            ],
        ))
    hosts[4].guests.append(guest("cn05-passthrough", dom_id=3,
                                 cpu="<cpu mode='host-passthrough' check='none' "
                                     "migratable='on'/>"))
    hosts[3].guests.append(guest("cn04-avx512", dom_id=3,
                                 cpu=custom_cpu("Skylake-Server-IBRS", "avx512vnni")))
    return hosts


def intel_amd_mixed() -> list[HostSpec]:
    hosts = []
    for i, cpu in enumerate(["cascadelake", "cascadelake", "epyc-rome", "epyc-rome",
                             "epyc-milan"], start=1):
        name = f"{'intel' if cpu == 'cascadelake' else 'amd'}-{i:02d}"
        vendor = CPUS[cpu].vendor
        g = [guest(f"{name}-generic", cpu=custom_cpu("kvm64"), dom_id=1),
             guest(f"{name}-native", dom_id=2, vcpus=8, mem_mib=16384,
                   cpu=custom_cpu(CPUS[cpu].base, vendor=vendor))]
        hosts.append(HostSpec(name, cpu, cells=2 if vendor == "Intel" else 4,
                              cores_per_cell=16 if vendor == "Intel" else 8,
                              mem_gib_per_cell=192 if vendor == "Intel" else 96,
                              free_gib=(100.0, 120.0) if vendor == "Intel" else
                              (50.0, 60.0, 70.0, 80.0), guests=g))
    return hosts


def numa_pinned_guests() -> list[HostSpec]:
    def pinned(name: str, first_cpu: int, node: int, dom_id: int, page: str = "1048576",
               vcpus: int = 4) -> dict[str, Any]:
        pins = "".join(f"    <vcpupin vcpu='{v}' cpuset='{first_cpu + v}'/>\n"
                       for v in range(vcpus))
        extra = (f"  <memoryBacking>\n    <hugepages>\n"
                 f"      <page size='{page}' unit='KiB' nodeset='0'/>\n"
                 f"    </hugepages>\n    <locked/>\n  </memoryBacking>\n"
                 f"  <cputune>\n{pins}"
                 f"    <emulatorpin cpuset='{first_cpu}-{first_cpu + vcpus - 1}'/>\n"
                 f"  </cputune>\n"
                 f"  <numatune>\n    <memory mode='strict' nodeset='{node}'/>\n"
                 f"    <memnode cellid='0' mode='strict' nodeset='{node}'/>\n  </numatune>\n")
        cpu = (f"<cpu mode='host-model' check='partial'>\n"
               f"    <topology sockets='1' dies='1' cores='{vcpus // 2}' threads='2'/>\n"
               f"    <numa>\n      <cell id='0' cpus='0-{vcpus - 1}' memory='8388608' "
               f"unit='KiB' memAccess='shared'/>\n    </numa>\n  </cpu>")
        return guest(name, mem_mib=8192, vcpus=vcpus, cpu=cpu, extra=extra, dom_id=dom_id)

    def spread(name: str, dom_id: int) -> dict[str, Any]:
        # Two guest NUMA cells mapped onto the two host nodes, 2 MiB pages.
        extra = ("  <memoryBacking>\n    <hugepages>\n"
                 "      <page size='2' unit='MiB'/>\n    </hugepages>\n  </memoryBacking>\n"
                 "  <cputune>\n    <vcpupin vcpu='0' cpuset='2'/>\n"
                 "    <vcpupin vcpu='1' cpuset='3'/>\n    <vcpupin vcpu='2' cpuset='18'/>\n"
                 "    <vcpupin vcpu='3' cpuset='19'/>\n  </cputune>\n"
                 "  <numatune>\n    <memory mode='strict' nodeset='0-1'/>\n"
                 "    <memnode cellid='0' mode='strict' nodeset='0'/>\n"
                 "    <memnode cellid='1' mode='strict' nodeset='1'/>\n  </numatune>\n")
        cpu = ("<cpu mode='host-model' check='partial'>\n    <numa>\n"
               "      <cell id='0' cpus='0-1' memory='2' unit='GiB'/>\n"
               "      <cell id='1' cpus='2-3' memory='2' unit='GiB'/>\n    </numa>\n  </cpu>")
        return guest(name, mem_mib=4096, vcpus=4, cpu=cpu, extra=extra, dom_id=dom_id)

    a = HostSpec("numa-a", "cascadelake", cells=2, cores_per_cell=16,
                 mem_gib_per_cell=192, hugepages_1g=(64, 64), hugepages_2m=(4096, 4096),
                 free_1g=(40, 56), free_2m=(3072, 4096), free_gib=(20.0, 30.0),
                 guests=[pinned("dpdk-router", 4, 0, 1), pinned("nfv-fw", 20, 1, 2),
                         spread("db-vnuma", 3),
                         guest("floating", vcpus=2, dom_id=4,
                               extra="  <numatune>\n    <memory mode='preferred' "
                                     "nodeset='1'/>\n  </numatune>\n")])
    b = HostSpec("numa-b", "cascadelake", cells=2, cores_per_cell=16,
                 mem_gib_per_cell=192, hugepages_1g=(64, 64), hugepages_2m=(0, 0),
                 free_1g=(4, 64), free_2m=(0, 0), free_gib=(60.0, 50.0),
                 guests=[pinned("dpdk-router-2", 4, 0, 1, vcpus=8)])
    c = HostSpec("numa-c", "cascadelake", cells=4, cores_per_cell=8,
                 mem_gib_per_cell=96, hugepages_2m=(2048, 2048, 2048, 2048),
                 free_2m=(2048, 1024, 2048, 0), free_gib=(40.0, 40.0, 40.0, 40.0),
                 guests=[pinned("small-2m", 8, 1, 1, page="2048", vcpus=2)])
    return [a, b, c]


def storage_backends() -> list[HostSpec]:
    ceph = ("    <host name='10.0.0.21' port='6789'/>\n    <host name='10.0.0.22' port='6789'/>\n"
            "    <name>vms</name>\n    <auth type='ceph' username='nova'>\n"
            "      <secret uuid='b5a7c1d2-0c4b-4a1e-9c77-2f6d0b1c9e11'/>\n    </auth>\n")
    nfs = ("    <host name='nfs01.example'/>\n    <dir path='/export/nova'/>\n"
           "    <format type='nfs'/>\n")
    lvm = "    <name>nova-vg</name>\n    <format type='lvm2'/>\n"
    pools = [pool("vms", "rbd", None, ceph), pool("instances-nfs", "netfs",
                                                  "/var/lib/nova/instances", nfs),
             pool("nova-vg", "logical", "/dev/nova-vg", lvm),
             pool("images", "dir", "/var/lib/libvirt/images")]
    rbd_disk = ("    <disk type='network' device='disk'>\n"
                "      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>\n"
                "      <auth username='nova'>\n"
                "        <secret type='ceph' uuid='b5a7c1d2-0c4b-4a1e-9c77-2f6d0b1c9e11'/>\n"
                "      </auth>\n"
                "      <source protocol='rbd' name='vms/{u}_disk'>\n"
                "        <host name='10.0.0.21' port='6789'/>\n      </source>\n"
                "      <target dev='vda' bus='virtio'/>\n    </disk>\n")
    lvm_disk = ("    <disk type='block' device='disk'>\n"
                "      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
                "      <source dev='/dev/nova-vg/{u}_disk'/>\n"
                "      <target dev='vda' bus='virtio'/>\n    </disk>\n")
    local_disk = ("    <disk type='file' device='disk'>\n"
                  "      <driver name='qemu' type='qcow2'/>\n"
                  "      <source file='/var/lib/libvirt/images/{n}.qcow2'/>\n"
                  "      <target dev='vda' bus='virtio'/>\n    </disk>\n")
    nfs_disk = ("    <disk type='file' device='disk'>\n"
                "      <driver name='qemu' type='qcow2' cache='none'/>\n"
                "      <source file='/var/lib/nova/instances/{u}/disk'/>\n"
                "      <target dev='vda' bus='virtio'/>\n    </disk>\n")
    vol_disk = ("    <disk type='volume' device='disk'>\n"
                "      <driver name='qemu' type='qcow2'/>\n"
                "      <source pool='images' volume='{n}-data.qcow2'/>\n"
                "      <target dev='vdb' bus='virtio'/>\n    </disk>\n")
    cdrom = ("    <disk type='file' device='cdrom'>\n"
             "      <driver name='qemu' type='raw'/>\n"
             "      <source file='/var/lib/nova/instances/{u}/disk.config'/>\n"
             "      <target dev='sda' bus='sata'/>\n      <readonly/>\n    </disk>\n")
    shared_lun = ("    <disk type='network' device='lun'>\n"
                  "      <driver name='qemu' type='raw' cache='none'/>\n"
                  "      <source protocol='iscsi' name='iqn.2026-01.example:cluster/1'>\n"
                  "        <host name='10.0.0.30' port='3260'/>\n      </source>\n"
                  "      <target dev='sdb' bus='scsi'/>\n      <shareable/>\n    </disk>\n")

    def g(name: str, tpl: str, dom_id: int, state: str = "running") -> dict[str, Any]:
        u = _uuid("guest", name)
        return guest(name, disks=tpl.format(u=u, n=name), dom_id=dom_id, state=state)

    s1 = HostSpec("st-01", "skylake", cells=2, pools=pools, free_gib=(40.0, 40.0), guests=[
        g("ceph-vm", rbd_disk, 1), g("nfs-vm", nfs_disk + cdrom.replace("{u}", _uuid("guest", "nfs-vm")), 2),
        g("lvm-vm", lvm_disk, 3), g("local-qcow2", local_disk + vol_disk, 4),
        g("cluster-node", rbd_disk + shared_lun, 5), g("stopped-local", local_disk, 0, "shutoff")])
    s2 = HostSpec("st-02", "skylake", cells=2, pools=pools[:2] + [pools[3]],
                  free_gib=(60.0, 60.0), guests=[g("ceph-vm-2", rbd_disk, 1)])
    return [s1, s2]


def hostdev_guests() -> list[HostSpec]:
    gpu = ("    <hostdev mode='subsystem' type='pci' managed='yes'>\n"
           "      <driver name='vfio'/>\n      <source>\n"
           "        <address domain='0x0000' bus='0x3b' slot='0x00' function='0x0'/>\n"
           "      </source>\n    </hostdev>\n")
    vf = ("    <interface type='hostdev' managed='yes'>\n"
          "      <mac address='fa:16:3e:11:22:33'/>\n      <driver name='vfio'/>\n"
          "      <source>\n"
          "        <address type='pci' domain='0x0000' bus='0x5e' slot='0x02' function='0x3'/>\n"
          "      </source>\n      <vlan>\n        <tag id='120'/>\n      </vlan>\n"
          "    </interface>\n")
    mdev = ("    <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci' "
            "display='off'>\n      <source>\n"
            "        <address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/>\n"
            "      </source>\n    </hostdev>\n")
    usb = ("    <hostdev mode='subsystem' type='usb' managed='yes'>\n      <source>\n"
           "        <vendor id='0x0529'/>\n        <product id='0x0001'/>\n"
           "      </source>\n    </hostdev>\n")
    normal_nic = ("    <interface type='bridge'>\n      <mac address='fa:16:3e:44:55:66'/>\n"
                  "      <source bridge='br-int'/>\n      <model type='virtio'/>\n"
                  "    </interface>\n")
    h1 = HostSpec("gpu-01", "icelake", cells=2, free_gib=(30.0, 30.0), guests=[
        guest("ml-train", vcpus=16, mem_mib=65536, devices=gpu, dom_id=1),
        guest("vgpu-desktop", devices=mdev, dom_id=2),
        guest("license-dongle", devices=usb, dom_id=3),
        guest("plain", devices=normal_nic, dom_id=4)])
    h2 = HostSpec("sriov-01", "cascadelake", cells=2, free_gib=(50.0, 50.0), guests=[
        guest("vnf-sriov", vcpus=4, devices=vf + vf.replace("0x3'", "0x4'")
              .replace("11:22:33", "11:22:34"), dom_id=1)])
    h3 = HostSpec("spare-01", "cascadelake", cells=2, free_gib=(180.0, 180.0), iommu=False)
    return [h1, h2, h3]


def _rbd_disk(guest_name: str) -> str:
    return ("    <disk type='network' device='disk'>\n"
            "      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>\n"
            f"      <source protocol='rbd' name='vms/{_uuid('guest', guest_name)}_disk'>\n"
            "        <host name='ceph-mon1.example' port='6789'/>\n      </source>\n"
            "      <target dev='vda' bus='virtio'/>\n    </disk>\n")


def modern_mixed_fleet() -> list[HostSpec]:
    """A 2026 cloud mid-upgrade, real CPUs (scripts/fixture_modern.py): Intel hosts on
    libvirt 9.0 and 11.3, a Milan aggregate on 11.3, a Genoa host on a newer libvirt."""
    layout = [("cn01", "cascadelake-4214r", "9.0.0"), ("cn02", "cascadelake-4214r", "9.0.0"),
              ("cn03", "icelake-sp", "9.0.0"), ("cn04", "sapphirerapids-3408u", "11.3.0"),
              ("cn05", "emeraldrapids-6530", "11.3.0"), ("amd01", "milan-7713", "11.3.0"),
              ("amd02", "milan-7713", "11.3.0"), ("amd03", "genoa-9334", "11.6.0")]
    hosts = []
    for i, (name, cpu, libvirt) in enumerate(layout, start=1):
        amd = name.startswith("amd")
        qemu = "7.2.0" if libvirt == "9.0.0" else "10.0.0"
        hosts.append(HostSpec(
            name, cpu, cells=2, cores_per_cell=16 if amd else 12, mem_gib_per_cell=256,
            qemu=qemu, libvirt=libvirt, free_gib=(150.0 - 6 * i, 180.0),
            pools=[pool("ceph", "rbd", None, "    <host name='ceph-mon1.example' port='6789'/>\n"
                                             "    <name>vms</name>\n")],
            guests=[
                guest(f"{name}-web", dom_id=1, disks=_rbd_disk(f"{name}-web"),
                      cpu=custom_cpu("EPYC-Rome" if amd else "Cascadelake-Server-noTSX")),
                guest(f"{name}-hostmodel", dom_id=2, vcpus=4, mem_mib=8192,
                      disks=_rbd_disk(f"{name}-hostmodel")),
            ]))
    # a guest asking for what only the newest generation has (AMX, AVX-512 FP16)
    hosts[4].guests.append(guest("cn05-inference", dom_id=3, vcpus=16, mem_mib=65536,
                                 disks=_rbd_disk("cn05-inference"),
                                 cpu=custom_cpu("SapphireRapids", "amx-tile", "amx-int8")))
    return hosts


SCENARIOS = {
    "mixed-intel-generations": mixed_intel_generations,
    "intel-amd-mixed": intel_amd_mixed,
    "numa-pinned-guests": numa_pinned_guests,
    "storage-backends": storage_backends,
    "hostdev-guests": hostdev_guests,
    "modern-mixed-fleet": modern_mixed_fleet,
}


def facts(h: HostSpec) -> dict[str, Any]:
    ncpus = h.cells * h.cores_per_cell * h.threads
    cells = []
    for c in range(h.cells):
        free_pages = {"4": int((h.free_gib[c] if h.free_gib else 32.0) * 1024 * 256)}
        free_pages["2048"] = h.free_2m[c] if h.free_2m else 0
        free_pages["1048576"] = h.free_1g[c] if h.free_1g else 0
        free = int((h.free_gib[c] if h.free_gib else 32.0) * 1024**3)
        cells.append({"id": c, "free_bytes": free, "free_pages": free_pages})
    model_names = (modern.model_names(h.libvirt) if h.cpu in modern.CPUS
                   else [m.name for m in CAT.models])
    major, minor, rel = (int(x) for x in h.qemu.split("."))
    return {
        "hostname": f"{h.name}.cluster.example",
        "versions": {"libvirt": h.libvirt, "hypervisor_type": "QEMU",
                     "hypervisor": f"{major}.{minor}.{rel}"},
        "nodeinfo": {"model": "x86_64", "memory_kib": h.mem_gib_per_cell * h.cells * 1024**2,
                     "cpus": ncpus, "mhz": _tsc_hz(h) // 1000000, "nodes": h.cells,
                     "sockets": 1, "cores": h.cores_per_cell, "threads": h.threads},
        "cpu_model_names": model_names,
        "cells": cells,
        "errors": {},
    }


def write_scenario(dest: Path, hosts: list[HostSpec]) -> None:
    (dest / "hosts").mkdir(parents=True)
    entries = []
    for h in hosts:
        uri = f"qemu+ssh://root@{h.name}/system"
        raw = {
            "capabilities": capabilities_xml(h),
            "domcapabilities": domcapabilities_xml(h),
            "facts": facts(h),
            "pools": [{"name": n, "xml": x, "active": True, "persistent": True}
                      for n, x in h.pools],
            "domains": h.guests,
        }
        n = write_host(dest / "hosts" / h.name, raw, uri)
        entries.append({"name": h.name, "uri": uri, "status": "ok", "error": None,
                        "error_kind": None, "duration_s": 0.0, "guests": n,
                        "hostname": raw["facts"]["hostname"], "warnings": [],
                        "dir": f"hosts/{h.name}"})
    manifest = {"format": SNAPSHOT_FORMAT, "collected_at": COLLECTED_AT,
                "migplan_version": __version__, "duration_s": 0.0, "hosts": entries,
                "composed_by": "scripts/make_fixtures.py"}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_hand_made(dest: Path) -> None:
    """What an operator builds with virsh alone: capabilities.xml per host, nothing else."""
    for name, cpu in (("cn-a", "broadwell"), ("cn-b", "skylake")):
        d = dest / "hosts" / name
        d.mkdir(parents=True)
        (d / "capabilities.xml").write_text(capabilities_xml(HostSpec(name, cpu, cells=2)))


def build(root: Path) -> list[str]:
    names = []
    for name, fn in SCENARIOS.items():
        write_scenario(root / name, fn())
        names.append(name)
    write_hand_made(root / "hand-made-capabilities-only")
    names.append("hand-made-capabilities-only")
    return names


#: The demo's example path ships the modern fleet inside the package (planner/cli/demo.py).
DEMO_ARCHIVE = REPO / "planner" / "data" / "modern-mixed-fleet.tar.xz"


def write_demo_archive(fixture: Path, dest: Path) -> None:
    """``fixture`` as a reproducible tar.xz (sorted, fixed times and owners)."""
    import tarfile

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 946684800, 0, 0, "", ""
        return info

    with tarfile.open(dest, "w:xz", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(p for p in fixture.rglob("*") if p.is_file()):
            tar.add(f, arcname=str(f.relative_to(fixture)), filter=clean)


def _archive_differs(fixture: Path, archive: Path) -> bool:
    import tarfile

    if not archive.is_file():
        return True
    with tarfile.open(archive) as tar:
        got = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
               for m in tar.getmembers() if m.isfile()}
    want = {str(p.relative_to(fixture)): p.read_bytes() for p in fixture.rglob("*") if p.is_file()}
    return got != want


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with fixtures/, write nothing")
    ap.add_argument("--out", default=str(REPO / "fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        names = build(Path(tmp))
        if args.check:
            bad = [n for n in names if _differs(Path(tmp) / n, out / n)]
            if _archive_differs(Path(tmp) / "modern-mixed-fleet", DEMO_ARCHIVE):
                bad.append(str(DEMO_ARCHIVE.relative_to(REPO)))
            if bad:
                print("fixtures differ from scripts/make_fixtures.py: " + ", ".join(bad))
                return 1
            print(f"{len(names)} fixtures up to date")
            return 0
        for n in names:
            shutil.rmtree(out / n, ignore_errors=True)
            shutil.copytree(Path(tmp) / n, out / n)
            print(f"wrote {out / n}")
        if _archive_differs(Path(tmp) / "modern-mixed-fleet", DEMO_ARCHIVE):
            write_demo_archive(Path(tmp) / "modern-mixed-fleet", DEMO_ARCHIVE)
            print(f"wrote {DEMO_ARCHIVE}")
    return 0


def _differs(a: Path, b: Path) -> bool:
    """Compare files only: git does not keep empty directories, so they cannot count."""
    if not b.is_dir():
        return True

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return files(a) != files(b)


if __name__ == "__main__":
    sys.exit(main())
