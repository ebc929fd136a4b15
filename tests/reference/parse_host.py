"""Reference copy of planner/parse/host.py as of 7d96033 (before the fast loader).

The straightforward parser the fast one in planner/ must agree with; only
tests/test_load_equivalence.py uses it.  Do not optimise this file.
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from planner.cpu.cpudef import CpuDef
from planner.cpu.parse import parse_cpu_element
from planner.errors import InputError
from planner.model import Disk, Domain, Host, HostDev, NumaCell, PageSize, StoragePool
from planner.parse.nova import nova_instance
from planner.parse.units import to_kib
from planner.parse.xmlsafe import parse_document

#: Pool types whose volumes every host of a cluster sees (a guest on them
#: needs no storage copy), versus types that live on one host's disks.
#: libvirt itself does not say; this is the rule Nova follows too (shared
#: when the backing store is network storage).  Unknown types: None.
SHARED_POOL_TYPES = frozenset({"netfs", "rbd", "gluster", "iscsi", "iscsi-direct", "sheepdog",
                               "vstorage"})
LOCAL_POOL_TYPES = frozenset({"dir", "fs", "logical", "disk", "zfs", "mpath", "scsi"})

_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
    "pb": 1000**5, "p": 1024**5, "pib": 1024**5,
}


def _int(value: str | None, source: str, what: str) -> int:
    try:
        return int(str(value).strip(), 0 if str(value).strip().startswith("0x") else 10)
    except (TypeError, ValueError):
        raise InputError(f"{source}: invalid {what}: {value!r}") from None


def _kib(el: Any, source: str, what: str, default_unit: str = "KiB") -> int:
    """A libvirt scaled integer (``<memory unit='GiB'>4</memory>``) in KiB."""
    unit = (el.get("unit") or default_unit).lower()
    if unit not in _UNITS:
        raise InputError(f"{source}: unknown unit {unit!r} for {what}")
    return _int(el.text, source, what) * _UNITS[unit] // 1024


def parse_cpuset(text: str | None, source: str = "") -> tuple[int, ...]:
    """libvirt's cpuset syntax: ``0-3,8,^2`` -> (0, 1, 3, 8)."""
    if text is None or not text.strip():
        return ()
    include: set[int] = set()
    exclude: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        target = include
        if part.startswith("^"):
            target, part = exclude, part[1:]
        lo, _, hi = part.partition("-")
        a = _int(lo, source, f"CPU set {text!r}")
        b = _int(hi, source, f"CPU set {text!r}") if hi else a
        if b < a or b - a > 1 << 16:
            raise InputError(f"{source}: invalid CPU set {text!r}")
        target.update(range(a, b + 1))
    return tuple(sorted(include - exclude))


# --- capabilities ------------------------------------------------------------------------


@dataclass(frozen=True)
class CapsSummary:
    """What collect needs from capabilities to ask the right follow-up questions."""

    arch: str | None
    cell_ids: tuple[int, ...]
    page_sizes_kib: tuple[int, ...]
    domain_types: tuple[str, ...]  # for the host arch: kvm, qemu ...


def caps_summary(xml: bytes, source: str = "capabilities.xml") -> CapsSummary:
    root = _root(xml, source, "capabilities")
    arch = root.findtext("host/cpu/arch")
    cells = tuple(_int(c.get("id"), source, "cell id")
                  for c in root.findall("host/topology/cells/cell"))
    pages = tuple(_int(p.get("size"), source, "page size") for p in root.findall("host/cpu/pages"))
    types: list[str] = []
    for g in root.findall("guest"):
        a = g.find("arch")
        if a is not None and a.get("name") == arch:
            for d in a.findall("domain"):
                t = d.get("type")
                if t and t not in types:
                    types.append(t)
    return CapsSummary(arch, cells, pages, tuple(types))


def _root(xml: bytes, source: str, tag: str) -> Any:
    root = parse_document(xml, source)
    if root.tag != tag:
        raise InputError(f"{source}: expected <{tag}> XML, found <{root.tag}>")
    return root


class CpuCache:
    """Parse each distinct host ``<cpu>`` once: thousands of hosts share a handful of CPUs."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes], CpuDef] = {}
        self._domcaps: dict[bytes, DomCaps] = {}

    def parse(self, el: Any, cpu_type: str, source: str) -> CpuDef:
        key = (cpu_type, etree.tostring(el))
        hit = self._cache.get(key)
        if hit is None:
            hit = parse_cpu_element(el, cpu_type, source)
            self._cache[key] = hit
        return hit

    def domcaps(self, xml: bytes, source: str) -> DomCaps:
        """Hosts of one hardware and software generation report identical domain
        capabilities: parse each distinct document once."""
        hit = self._domcaps.get(xml)
        if hit is None:
            hit = parse_domcapabilities(xml, source, self)
            self._domcaps[xml] = hit
        return hit

    def __len__(self) -> int:
        return len(self._cache)


def _host_cpu(el: Any, source: str, cache: CpuCache | None) -> CpuDef:
    # libvirt's host <cpu> lists <pages>, <topology>... besides the CPU model;
    # only the model parts matter to the CPU engine, but parse_cpu_element
    # ignores the rest, so the element goes through as is.
    if el.find("model") is None:
        # Drivers that cannot decode the host CPU (libvirt's test driver,
        # non-x86 hosts) give no model: keep the arch, the engine answers unknown.
        arch = el.findtext("arch")
        if not arch:
            raise InputError(f"{source}: host CPU without <arch>")
        return CpuDef(type="host", arch=arch, source=source)
    if cache is not None:
        return cache.parse(el, "host", source)
    return parse_cpu_element(el, "host", source)


_CELL_CPU_IDS: Any = etree.XPath("cpus/cpu/@id")


def _cells(root: Any, source: str, facts: Mapping[str, Any] | None) -> tuple[NumaCell, ...]:
    free_mem: dict[int, int] = {}
    free_pages: dict[int, dict[int, int]] = {}
    for c in (facts or {}).get("cells") or []:
        cid = int(c["id"])
        if c.get("free_bytes") is not None:
            free_mem[cid] = int(c["free_bytes"]) // 1024
        free_pages[cid] = {int(k): int(v) for k, v in (c.get("free_pages") or {}).items()}
    cells = []
    for c in root.findall("host/topology/cells/cell"):
        cid = _int(c.get("id"), source, "cell id")
        mem_el = c.find("memory")
        memory = _kib(mem_el, source, "cell memory") if mem_el is not None else None
        try:  # the hot loop of a large load: plain int() on thousands of ids
            cpus = tuple(map(int, _CELL_CPU_IDS(c)))
        except (TypeError, ValueError):
            raise InputError(f"{source}: invalid cpu id in NUMA cell {cid}") from None
        pages = []
        for p in c.findall("pages"):
            size = _kib_attr(p, source)
            total = _int(p.text, source, "page count") if p.text and p.text.strip() else None
            pages.append(PageSize(size, total, free_pages.get(cid, {}).get(size)))
        # Page sizes libvirt reported free pages for but the cell XML did not list.
        listed = {p.size_kib for p in pages}
        for size, free in sorted(free_pages.get(cid, {}).items()):
            if size not in listed:
                pages.append(PageSize(size, None, free))
        cells.append(NumaCell(cid, cpus, memory, free_mem.get(cid), tuple(pages)))
    return tuple(cells)


def _kib_attr(p: Any, source: str) -> int:
    unit = (p.get("unit") or "KiB").lower()
    if unit not in _UNITS:
        raise InputError(f"{source}: unknown unit {unit!r} for page size")
    return _int(p.get("size"), source, "page size") * _UNITS[unit] // 1024


def _machines(root: Any, arch: str | None) -> tuple[str, ...] | None:
    names: list[str] = []
    for g in root.findall("guest"):
        a = g.find("arch")
        if a is None or a.get("name") != arch:
            continue
        for m in a.iter("machine"):
            for n in (m.text, m.get("canonical")):
                if n and n not in names:
                    names.append(n)
    return tuple(names) if names else None


@dataclass(frozen=True)
class DomCaps:
    hypervisor: str | None
    host_model: CpuDef | None
    usable_models: tuple[str, ...] | None
    unusable_models: tuple[str, ...] | None
    machine: str | None
    emulator_version: str | None = None


def parse_domcapabilities(xml: bytes, source: str = "domcapabilities.xml",
                          cache: CpuCache | None = None) -> DomCaps:
    root = _root(xml, source, "domainCapabilities")
    hm = root.find("cpu/mode[@name='host-model']")
    host_model = None
    if hm is not None and hm.get("supported") == "yes" and hm.find("model") is not None:
        src = f"{source}: host-model CPU"
        host_model = cache.parse(hm, "guest", src) if cache else parse_cpu_element(hm, "guest", src)
    custom = root.find("cpu/mode[@name='custom']")
    usable = unusable = None
    if custom is not None:
        u: list[str] = []
        n: list[str] = []
        for m in custom.findall("model"):
            if m.text:
                # usable='unknown' (no host CPU data): neither list, rules say unknown.
                {"yes": u, "no": n}.get(m.get("usable") or "", []).append(m.text)
        usable, unusable = tuple(u), tuple(n)
    return DomCaps(root.findtext("domain"), host_model, usable, unusable, root.findtext("machine"))


def parse_pool(xml: bytes, source: str, active: bool | None = None) -> StoragePool:
    root = _root(xml, source, "pool")
    ptype = root.get("type") or "unknown"
    shared = True if ptype in SHARED_POOL_TYPES else False if ptype in LOCAL_POOL_TYPES else None
    target = root.findtext("target/path")
    if ptype == "rbd":
        target = target or root.findtext("source/name")
    return StoragePool(root.findtext("name") or "", ptype, target or None, shared, active)


def build_host(
    name: str,
    capabilities: bytes,
    *,
    uri: str | None = None,
    domcapabilities: bytes | None = None,
    facts: Mapping[str, Any] | None = None,
    pools: Sequence[StoragePool] | None = None,
    domains: Sequence[Domain] = (),
    missing: Sequence[str] = (),
    cache: CpuCache | None = None,
    source: str = "",
    guests_listed: bool = True,
) -> Host:
    """One Host from its capabilities and whatever else the snapshot holds.

    ``facts`` is the snapshot's host.json (versions, node info, free memory and
    pages per cell); see docs/snapshot.md.
    """
    src = f"{source}capabilities.xml"
    root = _root(capabilities, src, "capabilities")
    cpu_el = root.find("host/cpu")
    if cpu_el is None:
        raise InputError(f"{src}: no <host><cpu> element")
    cpu = _host_cpu(cpu_el, f"{src}: host CPU", cache)
    if cpu.model is None:
        missing = (*missing, "host CPU model (capabilities name none)")
    arch = cpu.arch or ""
    cells = _cells(root, src, facts)
    dc = None
    if domcapabilities is not None:
        dsrc = f"{source}domcapabilities.xml"
        dc = cache.domcaps(domcapabilities, dsrc) if cache is not None \
            else parse_domcapabilities(domcapabilities, dsrc)
    facts = facts or {}
    node = facts.get("nodeinfo") or {}
    ver = facts.get("versions") or {}
    cpus_total = node.get("cpus")
    if cpus_total is None and cells:
        cpus_total = sum(len(c.cpus) for c in cells)
    memory = node.get("memory_kib")
    if memory is None and cells and all(c.memory_kib is not None for c in cells):
        memory = sum(c.memory_kib or 0 for c in cells)
    free = None
    if cells and all(c.free_kib is not None for c in cells):
        free = sum(c.free_kib or 0 for c in cells)
    elif facts.get("free_memory_bytes") is not None:
        free = int(facts["free_memory_bytes"]) // 1024
    qemu = ver.get("hypervisor") if (ver.get("hypervisor_type") or "QEMU") == "QEMU" else None
    return Host(
        name=name,
        uri=uri,
        cpu=cpu,
        arch=arch,
        host_uuid=root.findtext("host/uuid"),
        cells=cells,
        cpus_total=cpus_total,
        memory_kib=memory,
        free_memory_kib=free,
        hypervisor=dc.hypervisor if dc else None,
        host_model=dc.host_model if dc else None,
        usable_models=dc.usable_models if dc else None,
        machine_types=_machines(root, arch),
        libvirt_version=ver.get("libvirt"),
        qemu_version=qemu,
        pools=tuple(pools) if pools is not None else None,
        tsc_frequency=cpu.tsc_frequency,
        tsc_scaling=cpu.tsc_scaling,
        domains=tuple(domains),
        missing=tuple(missing),
        hostname=facts.get("hostname"),
        cpu_model_names=tuple(facts["cpu_model_names"]) if facts.get("cpu_model_names") is not None else None,
        unusable_models=dc.unusable_models if dc else None,
        # added with issue 14 (capabilities-only snapshots): written the plain way
        domain_types=tuple(dict.fromkeys(
            d.get("type") for d in root.findall(f"guest/arch[@name='{arch}']/domain")
            if d.get("type"))) or None,
        page_sizes_kib=tuple(sorted({to_kib(p.get("size"), p.get("unit"), src, "page size")
                                     for p in root.findall("host/cpu/pages")})) or None,
        guests_listed=guests_listed,
    )


# --- guests --------------------------------------------------------------------------------


def _pci(addr: Any) -> str | None:
    if addr is None:
        return None
    try:
        dom = int(addr.get("domain") or "0", 0)
        bus = int(addr.get("bus") or "0", 0)
        slot = int(addr.get("slot") or "0", 0)
        fn = int(addr.get("function") or "0", 0)
    except ValueError:
        return None
    return f"{dom:04x}:{bus:02x}:{slot:02x}.{fn:x}"


def _hostdevs(devices: Any) -> tuple[HostDev, ...]:
    out = []
    for h in devices.findall("hostdev"):
        kind = h.get("type") or "unknown"
        src = h.find("source")
        address = None
        if kind == "pci" and src is not None:
            address = _pci(src.find("address"))
        elif kind == "mdev" and src is not None:
            a = src.find("address")
            address = a.get("uuid") if a is not None else None
        elif kind == "usb" and src is not None:
            v, p = src.find("vendor"), src.find("product")
            if v is not None and p is not None:
                address = f"{v.get('id')}:{p.get('id')}"
        elif kind == "scsi" and src is not None:
            a = src.find("adapter")
            address = a.get("name") if a is not None else None
        out.append(HostDev(kind, address))
    # SR-IOV VFs handed over as network interfaces are PCI passthrough too.
    for i in devices.findall("interface[@type='hostdev']"):
        src = i.find("source")
        out.append(HostDev("sriov-interface", _pci(src.find("address")) if src is not None else None))
    return tuple(out)


def _disks(devices: Any) -> tuple[Disk, ...]:
    out = []
    for d in devices.findall("disk"):
        stype = d.get("type") or "file"
        src = d.find("source")
        source = protocol = pool = None
        if src is not None:
            if stype == "file":
                source = src.get("file")
            elif stype == "block":
                source = src.get("dev")
            elif stype == "dir":
                source = src.get("dir")
            elif stype == "network":
                protocol = src.get("protocol")
                name = src.get("name")
                source = f"{protocol}:{name}" if protocol and name else name
            elif stype == "volume":
                pool = src.get("pool")
                vol = src.get("volume")
                source = f"{pool}/{vol}" if pool and vol else vol
        target = d.find("target")
        out.append(Disk(
            target=(target.get("dev") if target is not None else None) or "",
            device=d.get("device") or "disk",
            source_type=stype,
            source=source,
            protocol=protocol,
            pool=pool,
            readonly=d.find("readonly") is not None,
            shareable=d.find("shareable") is not None,
        ))
    return tuple(out)


def parse_domain(xml: bytes, source: str, *, host: str = "",
                 meta: Mapping[str, Any] | None = None) -> Domain:
    """A guest from its XML; ``meta`` (domains.json) adds state and persistence.

    Without meta, the state is inferred from the live XML: libvirt writes an
    ``id`` attribute only on running (or paused) guests; persistence is unknown.
    """
    root = _root(xml, source, "domain")
    name = root.findtext("name")
    if not name:
        raise InputError(f"{source}: guest without <name>")
    meta = meta or {}
    state = meta.get("state") or ("running" if root.get("id") not in (None, "-1") else "shutoff")
    mem_el = root.find("memory")
    if mem_el is None:
        raise InputError(f"{source}: guest {name} without <memory>")
    vcpu_el = root.find("vcpu")
    # The maximum (the element text): what pinning and placement must fit.
    vcpus = _int(vcpu_el.text, source, "vcpu count") if vcpu_el is not None else 1
    cpu_el = root.find("cpu")
    cpu = parse_cpu_element(cpu_el, "guest", f"{source}: guest CPU") if cpu_el is not None else None
    os_type = root.find("os/type")
    tune = root.find("cputune")
    vcpupin: list[tuple[int, tuple[int, ...]]] = []
    emulatorpin: tuple[int, ...] = ()
    if tune is not None:
        for p in tune.findall("vcpupin"):
            vcpupin.append((_int(p.get("vcpu"), source, "vcpupin vcpu"),
                            parse_cpuset(p.get("cpuset"), source)))
        e = tune.find("emulatorpin")
        if e is not None:
            emulatorpin = parse_cpuset(e.get("cpuset"), source)
    nt = root.find("numatune/memory")
    vnuma: list[tuple[int, tuple[int, ...], int]] = []
    for c in root.findall("cpu/numa/cell"):
        cid = _int(c.get("id") or str(len(vnuma)), source, "NUMA cell id")
        mem = _int(c.get("memory"), source, "NUMA cell memory") * \
            _UNITS.get((c.get("unit") or "KiB").lower(), 1024) // 1024
        vnuma.append((cid, parse_cpuset(c.get("cpus"), source), mem))
    huge: list[int] = []
    hp = root.find("memoryBacking/hugepages")
    if hp is not None:
        for page in hp.findall("page"):
            size = _int(page.get("size"), source, "huge page size") * \
                _UNITS.get((page.get("unit") or "KiB").lower(), 1024) // 1024
            if size not in huge:
                huge.append(size)
        if not huge:
            huge.append(0)  # <hugepages/>: the host's default huge page size
    tsc = root.find("clock/timer[@name='tsc']")
    tsc_freq = _int(tsc.get("frequency"), source, "TSC frequency") \
        if tsc is not None and tsc.get("frequency") else None
    devices = root.find("devices")
    uuid = root.findtext("uuid") or meta.get("uuid")
    # <nova:instance> came after the fast loader: the one parser of it is shared
    metadata = root.find("metadata")
    return Domain(
        name=name,
        uuid=uuid,
        state=state,
        persistent=meta.get("persistent"),
        memory_kib=_kib(mem_el, source, "memory"),
        vcpus=vcpus,
        cpu=cpu,
        machine=os_type.get("machine") if os_type is not None else None,
        arch=os_type.get("arch") if os_type is not None else None,
        domain_type=root.get("type"),
        vcpupin=tuple(vcpupin),
        emulatorpin=emulatorpin,
        numatune_mode=(nt.get("mode") or "strict") if nt is not None else None,
        numatune_nodes=parse_cpuset(nt.get("nodeset"), source) if nt is not None else (),
        vnuma_cells=tuple(vnuma),
        hugepages_kib=tuple(huge),
        disks=_disks(devices) if devices is not None else (),
        hostdevs=_hostdevs(devices) if devices is not None else (),
        tsc_frequency=tsc_freq,
        host=host,
        nova=nova_instance(metadata, uuid, source) if metadata is not None else None,
    )
