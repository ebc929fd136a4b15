"""The lab's configuration templates: each host's libvirtd.conf and qemu.conf, guest XML."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class GuestShape:
    """One guest's shape; the lab cycles through SHAPES so every host differs."""

    memory_mib: int
    vcpus: int
    cpu: str  # "host-model" or a named CPU model (custom mode)
    pinned: bool
    persistent: bool
    machine: str = "pc"


SHAPES = (
    GuestShape(memory_mib=128, vcpus=1, cpu="host-model", pinned=False, persistent=True),
    GuestShape(memory_mib=256, vcpus=2, cpu="kvm64", pinned=False, persistent=False),
    GuestShape(memory_mib=192, vcpus=2, cpu="host-model", pinned=True, persistent=True),
    GuestShape(memory_mib=160, vcpus=1, cpu="kvm64", pinned=True, persistent=False, machine="q35"),
)


# ---- configuration ---------------------------------------------------------------------------


def random_host_uuid() -> str:
    # libvirt rejects host UUIDs whose digits are all the same; uuid4 never is
    return str(uuid.uuid4())


SASL_CONF_DIR = "/etc/sasl2"  # Cyrus SASL's application configs (libvirt.conf)
SASL_USER = "nova"  # kolla-ansible's libvirt SASL user


def sasl_conf() -> str:
    """libvirtd's SASL application config for qemu+tcp (no TLS: DIGEST-MD5, the mechanism
    kolla-ansible uses then; SCRAM-SHA-256 gives no encryption, which libvirt requires on
    plain TCP)."""
    return ("# written by migplan lab\n"
            "mech_list: digest-md5\n"
            "sasldb_path: /etc/libvirt/passwd.db\n")


def libvirtd_conf(address: str, host_uuid: str, sasl: bool = False) -> str:
    return (
        "# written by migplan lab\n"
        "listen_tcp = 1\n"
        "listen_tls = 0\n"
        f'auth_tcp = "{"sasl" if sasl else "none"}"\n'
        f'listen_addr = "{address}"\n'
        f'host_uuid = "{host_uuid}"\n'
        'log_outputs = "3:stderr"\n'
    )


def qemu_conf(address: str) -> str:
    return (
        "# written by migplan lab\n"
        'user = "root"\n'
        'group = "root"\n'
        'security_driver = "none"\n'
        # no virtlogd in the lab: QEMU writes its log file itself
        'stdio_handler = "file"\n'
        f'migration_address = "{address}"\n'
        f'migration_host = "{address}"\n'
        # QEMU stays in the host's mount namespace (so down() finds it there) and out of
        # cgroups shared with the other hosts and the machine; pinning still applies
        # through sched_setaffinity
        "namespaces = [ ]\n"
        "cgroup_controllers = [ ]\n"
        "remember_owner = 0\n"
    )


def guest_xml(name: str, shape: GuestShape, kvm: bool, ncpus: int | None = None) -> str:
    ncpus = ncpus or os.cpu_count() or 1
    if shape.cpu == "host-model":
        # Under nested KVM, QEMU cannot set the arch-capabilities MSR (0x10a) that host-model
        # asks for, and invtsc would block migration: the lab's host-model leaves both out.
        # TCG has no host-model; qemu64 is its own default model.
        cpu = ("  <cpu mode='host-model' check='partial'>\n"
               "    <feature policy='disable' name='arch-capabilities'/>\n"
               "    <feature policy='disable' name='invtsc'/>\n"
               "  </cpu>\n") if kvm else \
            "  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>\n"
    else:
        cpu = (f"  <cpu mode='custom' match='exact' check='partial'>\n"
               f"    <model fallback='forbid'>{shape.cpu}</model>\n  </cpu>\n")
    tune = ""
    if shape.pinned:
        pins = "".join(f"    <vcpupin vcpu='{v}' cpuset='{v % ncpus}'/>\n" for v in range(shape.vcpus))
        tune = f"  <cputune>\n{pins}  </cputune>\n"
    return (
        f"<domain type='{'kvm' if kvm else 'qemu'}'>\n"
        f"  <name>{name}</name>\n"
        f"  <memory unit='MiB'>{shape.memory_mib}</memory>\n"
        f"  <currentMemory unit='MiB'>{shape.memory_mib}</currentMemory>\n"
        f"  <vcpu placement='static'>{shape.vcpus}</vcpu>\n"
        f"{tune}"
        "  <os>\n"
        f"    <type arch='x86_64' machine='{shape.machine}'>hvm</type>\n"
        "    <boot dev='network'/>\n"
        "  </os>\n"
        "  <features><acpi/></features>\n"
        f"{cpu}"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        "    <serial type='pty'><target port='0'/></serial>\n"
        "    <console type='pty'><target type='serial' port='0'/></console>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n"
    )
