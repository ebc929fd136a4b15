"""Each migration rule at its pass/fail edges (inventories built in Python)."""

from __future__ import annotations

import dataclasses

import pytest
from builders import (
    GIB,
    HOST_MODEL,
    PASSTHROUGH,
    RBD_DISK,
    custom_cpu,
    guest,
    host,
    with_signature,
)

from planner.adapters.catalogs import default_catalog
from planner.assess import rules
from planner.assess.rules import BLOCKED, OK, UNKNOWN, WARN, Policy
from planner.cpu.cpudef import CpuFeature
from planner.cpu.engine import compare
from planner.model import Disk, HostDev, NumaCell, PageSize, StoragePool

CAT = default_catalog()
P = Policy()


def run(rule, g, src=None, dst=None, policy=P):
    src = src or host("src")
    dst = dst or host("dst")
    return rule(g, src, dst, policy, CAT)


# --- platform ---------------------------------------------------------------------------------

def test_cpu_arch_blocks_a_different_architecture():
    assert run(rules.cpu_arch, guest("g")).status == OK
    v = run(rules.cpu_arch, guest("g"), dst=host("dst", arch="aarch64"))
    assert (v.status, v.code) == (BLOCKED, "cpu-arch.mismatch")
    assert "aarch64" in v.message


def test_cpu_vendor_blocks_across_vendors_and_is_unknown_without_a_vendor():
    amd = dataclasses.replace(host("x").cpu, vendor="AMD")
    v = run(rules.cpu_vendor, guest("g"), dst=host("dst", cpu=amd))
    assert (v.status, v.code) == (BLOCKED, "cpu-vendor.mismatch")
    novendor = dataclasses.replace(host("x").cpu, vendor=None)
    assert run(rules.cpu_vendor, guest("g"), dst=host("dst", cpu=novendor)).status == UNKNOWN


def test_hypervisor_type_needs_kvm_on_the_destination():
    assert run(rules.hypervisor_type, guest("g")).status == OK
    assert run(rules.hypervisor_type, guest("g"), dst=host("d", hypervisor="qemu")).status == BLOCKED
    v = run(rules.hypervisor_type, guest("g"), dst=host("d", hypervisor=None))
    assert v.status == UNKNOWN and "domcapabilities" in v.message


# --- CPU ----------------------------------------------------------------------------------------

def test_custom_cpu_passes_when_the_destination_has_every_feature():
    g = guest("g", cpu=custom_cpu("Skylake-Server-noTSX-IBRS"))
    assert run(rules.cpu_features, g, dst=host("d", "cascadelake")).status == OK


def test_custom_cpu_is_blocked_naming_the_missing_features():
    g = guest("g", cpu=custom_cpu("Skylake-Server-IBRS"))
    v = run(rules.cpu_features, g, dst=host("host-b", "broadwell"))
    assert (v.status, v.code) == (BLOCKED, "cpu-features.missing")
    assert v.message.startswith("host-b lacks ") and "avx512f" in v.message


def test_one_missing_extra_feature_blocks():
    g = guest("g", cpu=custom_cpu("Broadwell-noTSX-IBRS", "avx512f"))
    v = run(rules.cpu_features, g, dst=host("d", "broadwell"))
    assert v.status == BLOCKED and "lacks avx512f" in v.message
    assert run(rules.cpu_features, g, dst=host("d", "skylake")).status == OK


def test_cpu_features_uses_the_destination_host_model_when_collected():
    # The host CPU has avx512f but QEMU/KVM (host-model) does not offer it.
    sky = host("d", "skylake")
    hm = dataclasses.replace(sky.host_model, features=tuple(
        f for f in sky.host_model.features if f.name != "pku"))
    g = guest("g", cpu=custom_cpu("Skylake-Server-IBRS", "pku"))
    assert run(rules.cpu_features, g, dst=sky).status == OK
    assert run(rules.cpu_features, g, dst=dataclasses.replace(sky, host_model=hm)).status == BLOCKED


def test_unusable_model_blocks_only_when_the_guest_needs_what_the_host_lacks():
    bdw = host("d", "broadwell", usable_models=("Haswell-noTSX",))
    g = guest("g", cpu=custom_cpu("Skylake-Server-noTSX-IBRS"))
    v = run(rules.cpu_features, g, dst=bdw)
    assert (v.status, v.code) == (BLOCKED, "cpu-features.missing") and "usable='no'" in v.message
    # libvirt starts a usable='no' model when the guest disables the missing features.
    lacking = compare(bdw.host_model, custom_cpu("Skylake-Server-noTSX-IBRS"), CAT).features
    g2 = guest("g", cpu=custom_cpu("Skylake-Server-noTSX-IBRS", disable=lacking))
    assert run(rules.cpu_features, g2, dst=bdw).status == OK


def test_host_model_guest_carries_the_source_host_model():
    g = guest("g", cpu=HOST_MODEL)
    v = run(rules.cpu_features, g, src=host("s", "skylake"), dst=host("d", "broadwell"))
    assert v.status == BLOCKED
    assert run(rules.cpu_features, g, src=host("s", "broadwell"), dst=host("d", "skylake")).status == OK


def test_host_model_guest_without_source_domcapabilities_is_unknown():
    g = guest("g", cpu=HOST_MODEL)
    v = run(rules.cpu_features, g, src=host("s", host_model=None))
    assert v.status == UNKNOWN and "domcapabilities" in v.message


def test_default_cpu_guest_runs_anywhere():
    assert run(rules.cpu_features, guest("g", cpu=None), dst=host("d", "broadwell")).status == OK


def test_host_passthrough_requires_identical_cpus():
    g = guest("g", cpu=PASSTHROUGH)
    v = run(rules.cpu_passthrough, g, src=host("s", "skylake"), dst=host("d", "cascadelake"))
    assert (v.status, v.code) == (BLOCKED, "cpu-passthrough.different-model")
    sig = (6, 85, 4)
    s = host("s", cpu=with_signature(host("x").cpu, sig))
    assert run(rules.cpu_passthrough, g, src=s, dst=host("d", cpu=s.cpu)).status == OK
    other = with_signature(host("x").cpu, (6, 85, 7))
    v = run(rules.cpu_passthrough, g, src=s, dst=host("d", cpu=other))
    assert v.code == "cpu-passthrough.different-signature"


def test_host_passthrough_blocks_on_one_feature_difference():
    g = guest("g", cpu=PASSTHROUGH)
    cpu = host("x").cpu
    less = dataclasses.replace(cpu, features=cpu.features[:-1])
    v = run(rules.cpu_passthrough, g, src=host("s"), dst=host("d", cpu=less))
    assert v.code == "cpu-passthrough.different-features"
    assert cpu.features[-1].name in v.message


def test_host_passthrough_without_signatures_warns():
    v = run(rules.cpu_passthrough, guest("g", cpu=PASSTHROUGH))
    assert (v.status, v.code) == (WARN, "cpu-passthrough.signature-unknown")


def test_tsc_rule_ignores_guests_without_invtsc():
    assert run(rules.tsc_frequency, guest("g")).status == OK


def test_invtsc_guest_needs_same_frequency_or_scaling():
    g = guest("g", cpu=custom_cpu("Skylake-Server-IBRS", "invtsc"))
    no_scale = dict(tsc_scaling=False)
    assert run(rules.tsc_frequency, g, dst=host("d", **no_scale)).status == OK  # same frequency
    v = run(rules.tsc_frequency, g, dst=host("d", tsc_frequency=2_000_000_000, **no_scale))
    assert (v.status, v.code) == (BLOCKED, "tsc-frequency.mismatch")
    assert run(rules.tsc_frequency, g, dst=host("d", tsc_frequency=2_000_000_000)).status == OK
    v = run(rules.tsc_frequency, g, dst=host("d", tsc_frequency=None, tsc_scaling=None))
    assert v.status == UNKNOWN


def test_nested_virt_warns_when_vmx_is_exposed():
    assert run(rules.nested_virt, guest("g", cpu=custom_cpu("Skylake-Server-IBRS"))).status == OK
    v = run(rules.nested_virt, guest("g", cpu=custom_cpu("Skylake-Server-IBRS", "vmx")))
    assert (v.status, v.code) == (WARN, "nested-virt.exposed")
    # host-passthrough on a vmx host exposes it too.
    assert run(rules.nested_virt, guest("g", cpu=PASSTHROUGH)).status == WARN


# --- capacity -----------------------------------------------------------------------------------

def test_memory_fits_exactly_with_the_reserve():
    g = guest("g", mem_gib=8)
    need = 8 * GIB + P.memory_reserve_kib
    assert run(rules.memory, g, dst=host("d", free_memory_kib=need)).status == OK
    v = run(rules.memory, g, dst=host("d", free_memory_kib=need - 1))
    assert (v.status, v.code) == (BLOCKED, "memory.insufficient")
    assert run(rules.memory, g, dst=host("d", free_memory_kib=None)).status == UNKNOWN


def test_memory_reserve_is_configurable():
    g = guest("g", mem_gib=8)
    d = host("d", free_memory_kib=8 * GIB)
    assert run(rules.memory, g, dst=d).status == BLOCKED
    assert run(rules.memory, g, dst=d, policy=Policy(memory_reserve_kib=0)).status == OK


def test_vcpus_respect_the_allocation_ratio():
    others = tuple(guest(f"o{i}", vcpus=16) for i in range(7))  # 112 vCPUs
    d = host("d", ncells=2, cpus_per_cell=16, domains=others)  # 32 CPUs x 4 = 128
    assert run(rules.vcpus, guest("g", vcpus=16), dst=d).status == OK
    v = run(rules.vcpus, guest("g", vcpus=17), dst=d)
    assert (v.status, v.code) == (BLOCKED, "vcpus.overcommit")
    assert run(rules.vcpus, guest("g", vcpus=17), dst=d,
               policy=Policy(cpu_allocation_ratio=16)).status == OK


def test_more_vcpus_than_destination_cpus_blocks():
    v = run(rules.vcpus, guest("g", vcpus=33), dst=host("d"))
    assert v.code == "vcpus.too-many"
    assert run(rules.vcpus, guest("g"), dst=host("d", cpus_total=None)).status == UNKNOWN


def test_pinned_cpus_free_on_the_destination_pass():
    g = guest("g", vcpupin=((0, (2,)), (1, (3,))))
    assert run(rules.pinned_cpus, g).status == OK


def test_pinned_cpus_taken_by_another_guest_need_repinning():
    g = guest("g", vcpupin=((0, (2,)), (1, (3,))))
    other = guest("o", vcpupin=((0, (3,)),))
    v = run(rules.pinned_cpus, g, dst=host("d", domains=(other,)))
    assert (v.status, v.code) == (WARN, "pinned-cpus.repin")


def test_pinned_cpus_block_when_too_few_cpus_are_free():
    g = guest("g", vcpupin=tuple((i, (i,)) for i in range(4)))
    other = guest("o", vcpupin=tuple((i, (i,)) for i in range(3)))
    d = host("d", ncells=1, cpus_per_cell=6, domains=(other,))
    v = run(rules.pinned_cpus, g, dst=d)
    assert (v.status, v.code) == (BLOCKED, "pinned-cpus.no-free-cpus")
    assert run(rules.pinned_cpus, g, dst=host("d", cells=())).status == UNKNOWN


def test_vnuma_cells_must_fit_destination_cells():
    g = guest("g", mem_gib=8, vnuma_cells=((0, (0, 1), 4 * GIB), (1, (2, 3), 4 * GIB)))
    assert run(rules.numa_cells, g).status == OK
    v = run(rules.numa_cells, g, dst=host("d", ncells=1))
    assert (v.status, v.code) == (BLOCKED, "numa-cells.too-few-cells")
    tight = host("d", free_gib=7)  # 3.5 GiB free per cell
    assert run(rules.numa_cells, g, dst=tight).code == "numa-cells.does-not-fit"


def test_strict_numatune_to_a_missing_cell_blocks():
    g = guest("g", numatune_mode="strict", numatune_nodes=(3,))
    assert run(rules.numa_cells, g).code == "numa-cells.no-such-cell"
    assert run(rules.numa_cells, guest("g", numatune_mode="strict", numatune_nodes=(1,))).status == OK


def _pages(free0, free1):
    return tuple(NumaCell(i, tuple(range(i * 8, i * 8 + 8)), 64 * GIB, 32 * GIB,
                          (PageSize(2048, 8192, f),)) for i, f in enumerate((free0, free1)))


def test_hugepages_need_enough_free_pages():
    g = guest("g", mem_gib=4, hugepages_kib=(2048,))  # 2048 pages
    assert run(rules.hugepages, g, dst=host("d", cells=_pages(1024, 1024))).status == OK
    v = run(rules.hugepages, g, dst=host("d", cells=_pages(1024, 1023)))
    assert (v.status, v.code) == (BLOCKED, "hugepages.insufficient")
    assert run(rules.hugepages, g, dst=host("d", cells=_pages(None, 5))).status == UNKNOWN


def test_strict_hugepages_are_counted_per_cell():
    g = guest("g", mem_gib=4, hugepages_kib=(2048,), numatune_mode="strict",
              vnuma_cells=((0, (0, 1), 4 * GIB),))
    assert run(rules.hugepages, g, dst=host("d", cells=_pages(2048, 0))).status == OK
    v = run(rules.hugepages, g, dst=host("d", cells=_pages(1024, 1024)))
    assert v.code == "hugepages.insufficient-per-cell"


def test_default_hugepage_size_is_the_destination_smallest_huge_size():
    g = guest("g", mem_gib=4, hugepages_kib=(0,))
    assert run(rules.hugepages, g, dst=host("d", cells=_pages(1024, 1024))).status == OK


# --- storage and devices --------------------------------------------------------------------------

def test_network_and_shared_pool_disks_pass():
    disks = (Disk("vda", "disk", "network", "rbd:vms/a", protocol="rbd"),
             Disk("vdb", "disk", "file", "/var/lib/nova/instances/g/disk"),
             Disk("vdc", "disk", "volume", "ceph/vol", pool="ceph"))
    assert run(rules.local_storage, guest("g", disks=disks)).status == OK


def test_local_disks_warn_with_the_bytes_to_copy():
    disks = (Disk("vda", "disk", "file", "/var/lib/libvirt/images/g.qcow2", size_bytes=10 * 2**30),
             Disk("vdb", "disk", "block", "/dev/vg0/g", size_bytes=2**30))
    v = run(rules.local_storage, guest("g", disks=disks))
    assert (v.status, v.code) == (WARN, "local-storage.block-migration")
    assert str(11 * 2**30) in v.message


def test_local_read_only_media_must_exist_on_the_destination():
    disks = (RBD_DISK, Disk("sda", "cdrom", "file", "/srv/iso/install.iso", readonly=True))
    v = run(rules.local_storage, guest("g", disks=disks))
    assert (v.status, v.code) == (WARN, "local-storage.media")
    assert "/srv/iso/install.iso" in v.message and "same path" in v.message


def test_local_disks_block_when_policy_forbids_block_migration():
    disks = (Disk("vda", "disk", "file", "/srv/g.img"),)
    v = run(rules.local_storage, guest("g", disks=disks), policy=Policy(allow_block_migration=False))
    assert (v.status, v.code) == (BLOCKED, "local-storage.local")


def test_storage_without_pool_data_is_unknown():
    disks = (Disk("vda", "disk", "file", "/srv/g.img"),)
    v = run(rules.local_storage, guest("g", disks=disks), src=host("s", pools=None))
    assert v.status == UNKNOWN
    weird = (StoragePool("x", "vendorfs", "/srv", None, True),)
    assert run(rules.local_storage, guest("g", disks=disks), src=host("s", pools=weird)).status == UNKNOWN


@pytest.mark.parametrize("kind", ["pci", "mdev", "sriov-interface", "usb"])
def test_host_devices_block(kind):
    v = run(rules.hostdev, guest("g", hostdevs=(HostDev(kind, "0000:3b:00.1"),)))
    assert (v.status, v.code) == (BLOCKED, "hostdev.assigned")
    assert kind in v.message


def test_machine_type_must_exist_on_the_destination():
    assert run(rules.machine_type, guest("g")).status == OK
    v = run(rules.machine_type, guest("g", machine="pc-q35-8.1"))
    assert (v.status, v.code) == (BLOCKED, "machine-type.unsupported")
    assert run(rules.machine_type, guest("g"), dst=host("d", machine_types=None)).status == UNKNOWN


def test_older_qemu_on_the_destination_blocks_and_older_libvirt_warns():
    assert run(rules.version_older, guest("g")).status == OK
    v = run(rules.version_older, guest("g"), dst=host("d", qemu_version="7.1.0"))
    assert (v.status, v.code) == (BLOCKED, "version-older.older")
    v = run(rules.version_older, guest("g"), dst=host("d", libvirt_version="8.10.0"))
    assert (v.status, v.code) == (WARN, "version-older.older-libvirt")
    assert run(rules.version_older, guest("g"), dst=host("d", qemu_version="10.0.0")).status == OK
    assert run(rules.version_older, guest("g"), dst=host("d", qemu_version=None)).status == UNKNOWN


def test_assess_takes_the_worst_verdict_and_keeps_every_reason():
    g = guest("g", cpu=custom_cpu("Skylake-Server-IBRS", "vmx"),
              hostdevs=(HostDev("pci", "0000:3b:00.1"),))
    a = rules.assess(g, host("s"), host("d", "broadwell"), P, CAT)
    assert a.status == BLOCKED and not a.feasible
    codes = {v.code for v in a.reasons()}
    assert {"cpu-features.missing", "hostdev.assigned", "nested-virt.exposed"} <= codes


def test_assess_refuses_the_same_host():
    h = host("s")
    assert rules.assess(guest("g"), h, h, P, CAT).reasons()[0].code == "destination.same-host"


def test_an_unknown_is_never_a_pass():
    a = rules.assess(guest("g"), host("s"), host("d", free_memory_kib=None), P, CAT)
    assert a.status == UNKNOWN and not a.feasible


def test_every_rule_has_a_stable_code_prefix():
    g = guest("g")
    for rule in rules.RULES:
        v = rule(g, host("s"), host("d"), P, CAT)
        assert v.code.startswith(v.rule + ".")
        assert v.message


def test_custom_cpu_feature_policies_are_libvirt_compare_semantics():
    # A disabled feature is not required; a forbidden one present on the host blocks.
    bdw = host("d", "broadwell", host_model=None)
    lacking = compare(bdw.cpu, custom_cpu("Skylake-Server-noTSX-IBRS"), CAT).features
    g = guest("g", cpu=custom_cpu("Skylake-Server-noTSX-IBRS", disable=lacking))
    assert run(rules.cpu_features, g, dst=bdw).status == OK
    forbid = custom_cpu("Broadwell-noTSX-IBRS")
    forbid = dataclasses.replace(forbid, features=(CpuFeature("avx512f", "forbid"),))
    v = run(rules.cpu_features, guest("g", cpu=forbid), dst=host("d", "skylake"))
    assert (v.status, v.code) == (BLOCKED, "cpu-features.incompatible")
