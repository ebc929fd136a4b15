"""A guest's domain XML to ``planner.model.Domain`` (one pass over the document's children).

Pure: bytes in, a frozen dataclass out; every ``<cpu>`` through ``planner.cpu.parse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from planner.cpu.parse import parse_cpu_element
from planner.errors import InputError
from planner.model import Disk, Domain, HostDev
from planner.parse.host import CpuCache, document_root
from planner.parse.nova import nova_instance
from planner.parse.units import element_kib, parse_cpuset, parse_int, to_kib

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


def _hostdevs(hostdevs: list[Any], sriov: list[Any]) -> tuple[HostDev, ...]:
    out = []
    for h in hostdevs:
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
    for i in sriov:
        src = i.find("source")
        out.append(HostDev("sriov-interface", _pci(src.find("address")) if src is not None else None))
    return tuple(out)


def _disks(disks: list[Any]) -> tuple[Disk, ...]:
    out = []
    for d in disks:
        stype = d.get("type") or "file"
        # One pass over the disk's children for find("source"), find("target"),
        # find("readonly"), find("shareable"): the first of each.
        src = target = None
        readonly = shareable = False
        for c in d:
            t = c.tag
            if t == "source":
                if src is None:
                    src = c
            elif t == "target":
                if target is None:
                    target = c
            elif t == "readonly":
                readonly = True
            elif t == "shareable":
                shareable = True
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
        out.append(Disk(
            target=(target.get("dev") if target is not None else None) or "",
            device=d.get("device") or "disk",
            source_type=stype,
            source=source,
            protocol=protocol,
            pool=pool,
            readonly=readonly,
            shareable=shareable,
        ))
    return tuple(out)


# Children of <domain> that parse_domain reads; one pass over the root collects them.
_DOMAIN_TAGS = frozenset({"name", "uuid", "memory", "vcpu", "cpu", "os", "cputune", "numatune",
                          "memoryBacking", "clock", "devices", "metadata"})


def children(el: Any, tags: frozenset[str]) -> dict[str, list[Any]]:
    """Children of ``el`` by tag (document order), for the tags asked for only.

    lxml matches the tags in C (plain names: elements in no namespace, as
    ``c.tag == name``), so the children not asked for never become Python
    objects: a guest's ``<domain>`` and ``<devices>`` have dozens of them.
    """
    out: dict[str, list[Any]] = {}
    for c in el.iterchildren(*tags):
        t = c.tag
        lst = out.get(t)
        if lst is None:
            out[t] = [c]
        else:
            lst.append(c)
    return out


def _first(parents: list[Any] | None, tag: str) -> Any:
    """ElementPath's ``find("parent/tag")`` over already-collected parents."""
    for p in parents or ():
        for c in p.iterchildren(tag):
            return c
    return None


def _findtext(els: list[Any] | None) -> str | None:
    """``findtext(tag)``: the first element's text, "" when it has none."""
    if not els:
        return None
    return els[0].text or ""


_DEVICE_TAGS = frozenset({"disk", "hostdev", "interface"})


def _devices(devices: Any) -> tuple[tuple[Disk, ...], tuple[HostDev, ...], tuple[str, ...]]:
    kids = children(devices, _DEVICE_TAGS)
    disks = kids.get("disk") or []
    hostdevs = kids.get("hostdev") or []
    nics = kids.get("interface") or ()
    sriov = [c for c in nics if c.get("type") == "hostdev"]
    # type='network': whether the network hands out VFs (forward mode='hostdev') is the
    # host's networks' to say (Host.hostdev_networks)
    networks = tuple(dict.fromkeys(
        n for c in nics if c.get("type") == "network"
        for n in [next((s.get("network") for s in c.iterchildren("source")), None)] if n))
    return (_disks(disks) if disks else (),
            _hostdevs(hostdevs, sriov) if hostdevs or sriov else (), networks)


#: disk source types whose size libvirt's virDomainGetBlockInfo reports from the host
LOCAL_SOURCE_TYPES = ("file", "block", "volume")


def local_disk_targets(xml: bytes, source: str = "domain.xml") -> list[str]:
    """Targets (vda ...) of a guest's disks backed by the host's storage, for collect to
    ask their sizes (an empty CD-ROM drive has none)."""
    root = document_root(xml, source, "domain")
    dev = next(root.iterchildren("devices"), None)
    if dev is None:
        return []
    return [d.target for d in _disks(children(dev, frozenset({"disk"})).get("disk") or [])
            if d.target and d.source and d.source_type in LOCAL_SOURCE_TYPES]


def with_sizes(disks: tuple[Disk, ...], meta: Mapping[str, Any]) -> tuple[Disk, ...]:
    """``disks`` with the bytes allocated to each (domains.json ``disks``: what
    virDomainGetBlockInfo said at collect) as ``size_bytes``."""
    sizes = meta.get("disks")
    if not sizes or not disks:
        return disks
    return tuple(replace(d, size_bytes=sizes[d.target]["allocation"])
                 if isinstance(sizes.get(d.target), dict) else d for d in disks)


def parse_domain(xml: bytes, source: str, *, host: str = "",
                 meta: Mapping[str, Any] | None = None, cache: CpuCache | None = None) -> Domain:
    """A guest from its XML; ``meta`` (domains.json) adds state and persistence.

    Without meta, the state is inferred from the live XML: libvirt writes an
    ``id`` attribute only on running (or paused) guests; persistence is unknown.
    ``cache`` parses each distinct guest ``<cpu>`` once.

    The hot path of a large load (100,000 guests): one pass over the root's
    children instead of a path lookup per field; same answers, in the same
    order of checks, as ``find``/``findall`` with the paths in the comments.
    """
    return domain_from_root(document_root(xml, source, "domain"), source, host, meta, cache)


def domain_from_root(root: Any, source: str, host: str, meta: Mapping[str, Any] | None,
            cache: CpuCache | None) -> Domain:
    kids = children(root, _DOMAIN_TAGS)
    name = _findtext(kids.get("name"))  # findtext("name")
    if not name:
        raise InputError(f"{source}: guest without <name>")
    meta = meta or {}
    state = meta.get("state") or ("running" if root.get("id") not in (None, "-1") else "shutoff")
    mem_els = kids.get("memory")
    if not mem_els:
        raise InputError(f"{source}: guest {name} without <memory>")
    mem_el = mem_els[0]
    vcpu_els = kids.get("vcpu")
    # The maximum (the element text): what pinning and placement must fit.
    vcpus = parse_int(vcpu_els[0].text, source, "vcpu count") if vcpu_els else 1
    cpu_els = kids.get("cpu")
    cpu = None
    if cpu_els:
        csrc = f"{source}: guest CPU"
        cpu = cache.guest(cpu_els[0], csrc) if cache is not None \
            else parse_cpu_element(cpu_els[0], "guest", csrc)
    os_type = _first(kids.get("os"), "type")  # find("os/type")
    tune_els = kids.get("cputune")
    vcpupin: list[tuple[int, tuple[int, ...]]] = []
    emulatorpin: tuple[int, ...] = ()
    if tune_els:
        tune = tune_els[0]
        for p in tune.iterchildren("vcpupin"):
            vcpupin.append((parse_int(p.get("vcpu"), source, "vcpupin vcpu"),
                            parse_cpuset(p.get("cpuset"), source)))
        e = _first(tune_els[:1], "emulatorpin")
        if e is not None:
            emulatorpin = parse_cpuset(e.get("cpuset"), source)
    nt = _first(kids.get("numatune"), "memory")  # find("numatune/memory")
    vnuma: list[tuple[int, tuple[int, ...], int]] = []
    for cpu_el in cpu_els or ():  # findall("cpu/numa/cell")
        for numa in cpu_el.iterchildren("numa"):
            for c in numa.iterchildren("cell"):
                cid = parse_int(c.get("id") or str(len(vnuma)), source, "NUMA cell id")
                mem = to_kib(c.get("memory"), c.get("unit"), source, "NUMA cell memory")
                vnuma.append((cid, parse_cpuset(c.get("cpus"), source), mem))
    huge: list[int] = []
    hp = _first(kids.get("memoryBacking"), "hugepages")  # find("memoryBacking/hugepages")
    if hp is not None:
        for page in hp.iterchildren("page"):
            size = to_kib(page.get("size"), page.get("unit"), source, "huge page size")
            if size not in huge:
                huge.append(size)
        if not huge:
            huge.append(0)  # <hugepages/>: the host's default huge page size
    tsc = None  # find("clock/timer[@name='tsc']")
    for clock in kids.get("clock") or ():
        tsc = next((t for t in clock.iterchildren("timer") if t.get("name") == "tsc"), None)
        if tsc is not None:
            break
    tsc_freq = parse_int(tsc.get("frequency"), source, "TSC frequency") \
        if tsc is not None and tsc.get("frequency") else None
    dev_els = kids.get("devices")
    disks, hostdevs, networks = _devices(dev_els[0]) if dev_els else ((), (), ())
    uuid = _findtext(kids.get("uuid")) or meta.get("uuid")
    md_els = kids.get("metadata")
    return Domain(
        name=name,
        uuid=uuid,
        state=state,
        persistent=meta.get("persistent"),
        memory_kib=element_kib(mem_el, source, "memory"),
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
        disks=with_sizes(disks, meta),
        hostdevs=hostdevs,
        tsc_frequency=tsc_freq,
        host=host,
        networks=networks,
        nova=nova_instance(md_els[0], uuid, source) if md_els else None,
    )
