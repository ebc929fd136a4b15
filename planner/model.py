"""The parsed inventory model: frozen dataclasses every command and notebook uses.

Parsing (``planner.parse.host``/``planner.snapshot.read``) fills these once, at the
edge; nothing downstream sees XML.  ``None`` always means "the snapshot did not
say" (a rule must then answer ``unknown``), never "zero" or "no".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.cpu.cpudef import CpuDef


@dataclass(frozen=True)
class PageSize:
    size_kib: int
    total: int | None = None  # pages
    free: int | None = None


@dataclass(frozen=True)
class NumaCell:
    id: int
    cpus: tuple[int, ...]  # host CPU ids in this cell
    memory_kib: int | None = None
    free_kib: int | None = None
    pages: tuple[PageSize, ...] = ()  # per page size: total and free pages


@dataclass(frozen=True)
class StoragePool:
    name: str
    type: str  # dir, fs, netfs, logical, rbd, iscsi, gluster, ...
    target: str | None = None
    shared: bool | None = None  # None: unknown
    active: bool | None = None


@dataclass(frozen=True)
class Disk:
    target: str  # vda, sda ...
    device: str  # disk, cdrom, lun
    source_type: str  # file, block, network, volume, dir
    source: str | None = None  # path, or "rbd:pool/image", or "pool/volume"
    protocol: str | None = None  # rbd, iscsi, nbd, gluster ... for network disks
    pool: str | None = None  # for volume disks
    readonly: bool = False
    shareable: bool = False
    size_bytes: int | None = None  # allocation to copy, when known


@dataclass(frozen=True)
class HostDev:
    kind: str  # "pci", "mdev", "usb", "scsi", "sriov-interface"
    address: str | None = None


@dataclass(frozen=True)
class NovaInstance:
    """A guest's ``<nova:instance>`` metadata in its domain XML (written by nova-compute).

    Nova writes it at boot and rewrites it on resize and rebuild
    (``nova/virt/libvirt/config.py`` ``LibvirtConfigGuestMetaNovaInstance``); libvirt keeps
    it across live migrations.  Memory and swap in MiB, disks in GB, as Nova's flavor says.
    """

    uuid: str | None  # the server's UUID (libvirt's domain UUID equals it)
    name: str | None  # the server's display name
    flavor: str | None = None
    flavor_memory_mib: int | None = None
    flavor_vcpus: int | None = None
    flavor_disk_gb: int | None = None
    project_id: str | None = None
    project_name: str | None = None
    root_type: str | None = None  # "image" | "volume"
    namespace: str | None = None  # e.g. "http://openstack.org/xmlns/libvirt/nova/1.1"
    package: str | None = None  # the nova-compute version that wrote it, e.g. "26.2.2"
    creation_time: str | None = None  # "2026-12-02 13:40:05" (UTC, as Nova writes it)
    flavor_swap_mib: int | None = None
    flavor_ephemeral_gb: int | None = None
    user_id: str | None = None
    user_name: str | None = None
    root_id: str | None = None  # the image's (or boot volume's) UUID


@dataclass(frozen=True)
class Domain:
    name: str
    uuid: str | None
    state: str  # running, paused, shutoff, ...
    persistent: bool | None
    memory_kib: int
    vcpus: int
    cpu: CpuDef | None  # guest CPU (mode, model, features); None: libvirt default
    machine: str | None = None  # e.g. pc-q35-7.2
    arch: str | None = None
    domain_type: str | None = None  # kvm, qemu
    vcpupin: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (vcpu, host cpus)
    emulatorpin: tuple[int, ...] = ()
    numatune_mode: str | None = None  # strict, preferred, interleave, restrictive
    numatune_nodes: tuple[int, ...] = ()
    vnuma_cells: tuple[tuple[int, tuple[int, ...], int], ...] = ()  # (id, vcpus, memory KiB)
    hugepages_kib: tuple[int, ...] = ()  # page sizes backing memory (empty: none; 0: host default)
    disks: tuple[Disk, ...] = ()
    hostdevs: tuple[HostDev, ...] = ()
    tsc_frequency: int | None = None  # <clock><timer name='tsc' frequency=...>
    host: str = ""  # name of the host the snapshot found it on
    #: libvirt networks its <interface type='network'> use (a hostdev network hands out
    #: SR-IOV VFs: see Host.hostdev_networks)
    networks: tuple[str, ...] = ()
    nova: NovaInstance | None = None  # <metadata><nova:instance>: a guest Nova manages


@dataclass(frozen=True)
class Host:
    name: str
    uri: str | None  # redacted
    cpu: CpuDef  # host CPU from capabilities
    arch: str
    host_uuid: str | None = None
    cells: tuple[NumaCell, ...] = ()
    cpus_total: int | None = None
    memory_kib: int | None = None
    free_memory_kib: int | None = None
    hypervisor: str | None = None  # domcapabilities' <domain> (kvm, qemu)
    host_model: CpuDef | None = None  # domcapabilities host-model CPU
    usable_models: tuple[str, ...] | None = None  # domcapabilities custom models usable='yes'
    machine_types: tuple[str, ...] | None = None
    libvirt_version: str | None = None  # "9.0.0"
    qemu_version: str | None = None  # "7.2.0"
    pools: tuple[StoragePool, ...] | None = None
    tsc_frequency: int | None = None
    tsc_scaling: bool | None = None
    domains: tuple[Domain, ...] = ()
    missing: tuple[str, ...] = field(default=())  # what the snapshot lacked for this host
    hostname: str | None = None  # libvirt's virConnectGetHostname (may differ from name)
    cpu_model_names: tuple[str, ...] | None = None  # virConnectGetCPUModelNames for arch
    unusable_models: tuple[str, ...] | None = None  # domcapabilities custom models usable='no'
    #: capabilities' <guest><arch name=ARCH><domain type=...>: the guest types it runs
    domain_types: tuple[str, ...] | None = None
    #: capabilities' <host><cpu><pages>: the page sizes (KiB) the host offers
    page_sizes_kib: tuple[int, ...] | None = None
    #: False when the snapshot does not list the host's guests (what they use is unknown)
    guests_listed: bool = True
    #: libvirt networks with <forward mode='hostdev'> (pools of SR-IOV VFs); None: the
    #: snapshot has no networks (networks.json)
    hostdev_networks: tuple[str, ...] | None = None


# --- what Nova knows (snapshot's nova.json; absent for a plain libvirt fleet) ------------------


@dataclass(frozen=True)
class NovaService:
    """One nova-compute service (``GET /os-services``)."""

    host: str  # the compute's ``[DEFAULT] host``
    zone: str | None = None  # availability zone
    state: str | None = None  # "up" | "down"
    status: str | None = None  # "enabled" | "disabled"
    disabled_reason: str | None = None
    forced_down: bool | None = None
    id: str | None = None  # a UUID from compute API 2.53 on, a number before
    binary: str = "nova-compute"
    updated_at: str | None = None


@dataclass(frozen=True)
class NovaHypervisor:
    """One hypervisor (``GET /os-hypervisors/detail``): the libvirt host behind a service."""

    hostname: str  # hypervisor_hostname: what libvirt's virConnectGetHostname said
    host: str | None = None  # service host (the compute's ``[DEFAULT] host``)
    id: str | None = None
    host_ip: str | None = None  # the compute's ``my_ip``
    state: str | None = None  # "up" | "down"
    status: str | None = None  # "enabled" | "disabled"
    hypervisor_type: str | None = None  # "QEMU"
    hypervisor_version: int | None = None  # 7002022 for QEMU 7.2.22


@dataclass(frozen=True)
class NovaZone:
    """One availability zone (``GET /os-availability-zone/detail``) and its compute hosts."""

    name: str
    available: bool | None = None
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class NovaAggregate:
    name: str
    hosts: tuple[str, ...]
    availability_zone: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # sorted (key, value)
    id: int | None = None


@dataclass(frozen=True)
class NovaServer:
    """One server (``GET /servers/detail?all_tenants``) with its flavor and image facts."""

    id: str  # UUID
    name: str
    host: str | None  # OS-EXT-SRV-ATTR:host (compute service host)
    instance_name: str | None  # OS-EXT-SRV-ATTR:instance_name = libvirt domain name
    status: str | None = None  # ACTIVE, ERROR, MIGRATING, ...
    vm_state: str | None = None
    task_state: str | None = None
    project_id: str | None = None
    availability_zone: str | None = None
    flavor_name: str | None = None
    flavor_ram_mib: int | None = None
    flavor_vcpus: int | None = None
    flavor_disk_gb: int | None = None
    extra_specs: tuple[tuple[str, str], ...] = ()  # sorted (key, value): hw:*, trait:*, pci_passthrough:alias
    image_properties: tuple[tuple[str, str], ...] = ()  # sorted: hw_cpu_*, traits_required, ...
    hypervisor_hostname: str | None = None  # OS-EXT-SRV-ATTR:hypervisor_hostname
    image_id: str | None = None  # None for a server booted from a volume
    power_state: int | None = None  # OS-EXT-STS:power_state (1 running, 4 shutdown, ...)
    flavor_swap_mib: int | None = None
    flavor_ephemeral_gb: int | None = None
    locked: bool | None = None


@dataclass(frozen=True)
class NovaMigration:
    """One migration record of a server (``GET /servers/{id}/migrations`` while it runs,
    ``GET /os-migrations?instance_uuid=`` for good); sizes in bytes as Nova reports them."""

    id: int
    status: str  # accepted, queued, preparing, running, post-migrating, completed, error, ...
    migration_type: str | None = None  # live-migration, migration, resize, evacuation
    source_compute: str | None = None
    dest_compute: str | None = None
    created_at: str | None = None
    memory_total: int | None = None  # only while in progress (the server's migrations)
    memory_processed: int | None = None
    memory_remaining: int | None = None
    disk_total: int | None = None
    disk_processed: int | None = None
    disk_remaining: int | None = None


@dataclass(frozen=True)
class NovaEvent:
    """One event of an instance action (``GET /servers/{id}/os-instance-actions/{req}``)."""

    event: str  # e.g. compute_check_can_live_migrate_destination
    result: str | None  # Success | Error | None while it runs
    host: str | None = None
    details: str | None = None  # the failure's message (compute API 2.84)


@dataclass(frozen=True)
class NovaFacts:
    """Everything a snapshot's ``nova.json`` says (no credentials, never a token)."""

    cloud: str | None = None  # the clouds.yaml entry it came from
    compute_api_version: str | None = None  # the microversion the reads used, e.g. "2.93"
    services: tuple[NovaService, ...] = ()
    aggregates: tuple[NovaAggregate, ...] = ()
    servers: tuple[NovaServer, ...] = ()
    hypervisors: tuple[NovaHypervisor, ...] = ()
    zones: tuple[NovaZone, ...] = ()
    region: str | None = None
    auth_url: str | None = None  # keystone's URL (never user, password or token)

    def server(self, key: str) -> NovaServer | None:
        """A server by UUID, name or libvirt domain name (first match, in that order)."""
        for attr in ("id", "name", "instance_name"):
            for s in self.servers:
                if getattr(s, attr) == key:
                    return s
        return None


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    collected_at: str | None = None
    source: str = ""
    errors: tuple[tuple[str, str], ...] = ()  # (host, error) for hosts not collected
    nova: NovaFacts | None = None  # nova.json, when collected with --os-cloud
    warnings: tuple[str, ...] = ()  # what the load noticed (hosts listed twice ...)
    #: (name, the host it is): names of hosts merged into another (the same host UUID)
    aliases: tuple[tuple[str, str], ...] = ()

    def host(self, name: str) -> Host | None:
        name = dict(self.aliases).get(name, name)
        for h in self.hosts:
            if h.name == name:
                return h
        return None

    def domains(self) -> list[Domain]:
        return [d for h in self.hosts for d in h.domains]

    def nova_servers(self) -> dict[str, tuple[str, str | None]]:
        """libvirt guest name -> (Nova server name, server UUID) of every guest Nova manages:
        from its ``<nova:instance>`` metadata, else from nova.json's server of that
        instance name.  Empty for a plain libvirt fleet."""
        out: dict[str, tuple[str, str | None]] = {}
        for d in self.domains():
            if d.nova is not None and d.nova.name is not None:
                out[d.name] = (d.nova.name, d.nova.uuid)
        for s in self.nova.servers if self.nova is not None else ():
            if s.instance_name and s.instance_name not in out:
                out[s.instance_name] = (s.name, s.id)
        return out
