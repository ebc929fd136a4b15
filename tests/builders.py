"""Build inventories in Python for tests and benchmarks: real CPUs, plausible hosts.

The CPUs come from the shipped example cluster (real ``virsh capabilities``
of four Intel generations), so the CPU engine sees what it sees in the field.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from planner.cpu.cpudef import CpuDef, CpuFeature
from planner.cpu.parse import parse_cpu_file
from planner.model import Disk, Domain, Host, Inventory, NumaCell, PageSize, StoragePool

GIB = 1024 * 1024  # KiB


@lru_cache(maxsize=1)
def example_caps() -> list[str]:
    data = resources.files("planner").joinpath("data/example-cluster-caps.xml").read_text()
    return re.findall(r"<capabilities>.*?</capabilities>", data, re.S)


@lru_cache(maxsize=1)
def cpus() -> dict[str, CpuDef]:
    """Host CPUs by generation: broadwell, skylake, cascadelake, icelake."""
    out = {}
    for gen, doc in zip(("broadwell", "skylake", "cascadelake", "icelake"), example_caps(),
                        strict=True):
        out[gen] = parse_cpu_file(doc.encode(), gen, "host")[0]
    return out


def with_signature(cpu: CpuDef, sig: tuple[int, int, int]) -> CpuDef:
    return dataclasses.replace(cpu, signature=sig)


def host_model_of(cpu: CpuDef) -> CpuDef:
    """A domcapabilities-like host-model CPU: the host's features, migratable ones only."""
    feats = tuple(CpuFeature(f.name, "require") for f in cpu.features if f.name != "invtsc")
    return CpuDef(type="guest", model=cpu.model, vendor=cpu.vendor, features=feats,
                  mode="host-model", match="exact")


DEFAULT_POOLS = (
    StoragePool("default", "dir", "/var/lib/libvirt/images", False, True),
    StoragePool("nfs", "netfs", "/var/lib/nova/instances", True, True),
    StoragePool("ceph", "rbd", "vms", True, True),
)


def host(name: str, gen: str = "skylake", *, ncells: int = 2, cpus_per_cell: int = 16,
         mem_gib: int = 256, free_gib: float = 200, free_2m_pages: int | None = 4096,
         domains: tuple[Domain, ...] = (), **kw: Any) -> Host:
    cells = []
    for i in range(ncells):
        cells.append(NumaCell(
            i, tuple(range(i * cpus_per_cell, (i + 1) * cpus_per_cell)), mem_gib * GIB // ncells,
            int(free_gib * GIB) // ncells,
            (PageSize(4, None, None), PageSize(2048, 8192, free_2m_pages))))
    cpu = cpus()[gen]
    fields: dict[str, Any] = dict(
        name=name, uri=f"qemu+ssh://{name}/system", cpu=cpu, arch="x86_64",
        cells=tuple(cells), cpus_total=ncells * cpus_per_cell, memory_kib=mem_gib * GIB,
        free_memory_kib=int(free_gib * GIB), hypervisor="kvm", host_model=host_model_of(cpu),
        usable_models=None, machine_types=("pc-i440fx-7.2", "pc", "pc-q35-7.2", "q35",
                                           "pc-q35-6.2", "pc-q35-5.2"),
        libvirt_version="9.0.0", qemu_version="7.2.0", pools=DEFAULT_POOLS,
        tsc_frequency=2_100_000_000, tsc_scaling=True,
        domains=tuple(dataclasses.replace(d, host=name) for d in domains),
    )
    fields.update(kw)
    return Host(**fields)


RBD_DISK = Disk("vda", "disk", "network", "rbd:vms/disk", protocol="rbd")


def guest(name: str, *, mem_gib: float = 4, vcpus: int = 2, cpu: CpuDef | None = None,
          **kw: Any) -> Domain:
    fields: dict[str, Any] = dict(
        name=name, uuid=None, state="running", persistent=True, memory_kib=int(mem_gib * GIB),
        vcpus=vcpus, cpu=cpu, machine="pc-q35-7.2", arch="x86_64", domain_type="kvm",
        disks=(RBD_DISK,),
    )
    fields.update(kw)
    return Domain(**fields)


def custom_cpu(model: str, *require: str, disable: tuple[str, ...] = ()) -> CpuDef:
    feats = tuple(CpuFeature(f, "require") for f in require) + \
        tuple(CpuFeature(f, "disable") for f in disable)
    return CpuDef(type="guest", model=model, features=feats, mode="custom", match="exact")


PASSTHROUGH = CpuDef(type="guest", mode="host-passthrough")
HOST_MODEL = CpuDef(type="guest", mode="host-model")


def inventory(*hosts: Host) -> Inventory:
    return Inventory(hosts=tuple(hosts), source="tests")


