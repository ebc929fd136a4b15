"""Host and guest XML (and the snapshot's JSON facts) to the inventory model.

Pure: bytes and dicts in, frozen dataclasses out; no libvirt, no file paths.
Every document goes through ``planner.parse.xmlsafe.parse_document``; every
``<cpu>`` through ``planner.cpu.parse.parse_cpu_element``.  With a
``CpuCache`` (one per load), what repeats is parsed once: byte-identical
``<cpu>`` elements and domcapabilities, and capabilities documents that
differ only in the host UUID's text (see ``_caps_key``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from planner.cpu.cpudef import CpuDef
from planner.cpu.parse import parse_cpu_element
from planner.errors import InputError
from planner.model import Disk, Domain, Host, HostDev, NumaCell, PageSize, StoragePool
from planner.parse.xmlsafe import check_document, parse_document

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
        self._guest: dict[bytes, CpuDef] = {}
        # capabilities without their host UUID -> what build_host reads from them
        # (None: a document whose UUID is not the plain host/uuid, parsed every time).
        self._caps: dict[bytes, _CapsParts | None] = {}

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

    def guest(self, el: Any, source: str) -> CpuDef:
        """A guest ``<cpu>``: guests of one flavor and image repeat a handful of CPUs.

        The CpuDef of an earlier identical element is reused with this guest's
        ``source`` (a copy: the source names the guest in the engine's messages).
        """
        return self.guest_from_key(etree.tostring(el, with_tail=False), source, el)

    def guest_from_key(self, key: bytes, source: str, el: Any = None) -> CpuDef:
        """``guest()`` for an element given as its serialisation ``key`` (a guest
        digest's ``<cpu>``; parsed from it unless the element ``el`` is given):
        the same key, so the same CpuDef, as the element itself."""
        hit = self._guest.get(key)
        if hit is None:
            if el is None:
                el = parse_document(key, source)
            hit = parse_cpu_element(el, "guest", source)
            self._guest[key] = hit
            return hit
        if hit.source == source:
            return hit
        dup = object.__new__(CpuDef)  # a copy, cheaper than copy.copy
        dup.__dict__.update(hit.__dict__)
        dup.__dict__["source"] = source
        return dup

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


# One NUMA cell as capabilities describe it: id, CPU ids, memory KiB, (page size KiB, total).
_CellLayout = tuple[int, tuple[int, ...], "int | None", tuple[tuple[int, "int | None"], ...]]


def _cell_facts(facts: Mapping[str, Any] | None) -> tuple[dict[int, int], dict[int, dict[int, int]]]:
    """host.json's free memory (KiB) and free pages per cell id."""
    free_mem: dict[int, int] = {}
    free_pages: dict[int, dict[int, int]] = {}
    for c in (facts or {}).get("cells") or []:
        cid = int(c["id"])
        if c.get("free_bytes") is not None:
            free_mem[cid] = int(c["free_bytes"]) // 1024
        free_pages[cid] = {int(k): int(v) for k, v in (c.get("free_pages") or {}).items()}
    return free_mem, free_pages


def _cell_layout(root: Any, source: str) -> tuple[_CellLayout, ...]:
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
            pages.append((size, total))
        cells.append((cid, cpus, memory, tuple(pages)))
    return tuple(cells)


def _cells(layout: tuple[_CellLayout, ...], free_mem: Mapping[int, int],
           free_pages: Mapping[int, Mapping[int, int]]) -> tuple[NumaCell, ...]:
    cells = []
    for cid, cpus, memory, sizes in layout:
        free = free_pages.get(cid, {})
        pages = [PageSize(size, total, free.get(size)) for size, total in sizes]
        # Page sizes libvirt reported free pages for but the cell XML did not list.
        listed = {size for size, _ in sizes}
        for size, n in sorted(free.items()):
            if size not in listed:
                pages.append(PageSize(size, None, n))
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


@dataclass(frozen=True)
class _CapsParts:
    """What build_host takes from a capabilities document, besides the host UUID."""

    cpu: CpuDef
    layout: tuple[_CellLayout, ...]
    machines: tuple[str, ...] | None


_CAPS_UUID_RE = re.compile(rb"<uuid>([0-9A-Za-z-]*)</uuid>")


def _caps_key(xml: bytes) -> tuple[bytes, str] | None:
    """A capabilities document without its host UUID, and the UUID.

    Hosts of one hardware, firmware and software generation print the same
    capabilities but for ``<host><uuid>``: what build_host takes from the rest
    is parsed once per distinct rest.  Only for documents as libvirt prints
    them (``<capabilities>`` first, no declaration, one ``<uuid>``), and a UUID
    of letters, digits and dashes, so the two documents can differ in nothing
    that changes how they parse; anything else: None, parsed in full.
    """
    if not xml[:64].lstrip().startswith(b"<capabilities>") or xml.count(b"<uuid") != 1:
        return None
    m = _CAPS_UUID_RE.search(xml)
    if m is None:
        return None
    return xml[:m.start(1)] + xml[m.end(1):], m.group(1).decode("ascii")


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
) -> Host:
    """One Host from its capabilities and whatever else the snapshot holds.

    ``facts`` is the snapshot's host.json (versions, node info, free memory and
    pages per cell); see docs/snapshot.md.
    """
    src = f"{source}capabilities.xml"
    key = _caps_key(capabilities) if cache is not None else None
    parts = cache._caps.get(key[0]) if cache is not None and key is not None else None
    root = None
    if parts is not None and key is not None:
        cpu, host_uuid = parts.cpu, key[1]
    else:
        root = _root(capabilities, src, "capabilities")
        cpu_el = root.find("host/cpu")
        if cpu_el is None:
            raise InputError(f"{src}: no <host><cpu> element")
        cpu = _host_cpu(cpu_el, f"{src}: host CPU", cache)
        host_uuid = root.findtext("host/uuid")
    if cpu.model is None:
        missing = (*missing, "host CPU model (capabilities name none)")
    arch = cpu.arch or ""
    free_mem, free_pages = _cell_facts(facts)
    if root is not None:
        parts = _CapsParts(cpu, _cell_layout(root, src), _machines(root, arch))
        if cache is not None and key is not None:
            # Only when the one <uuid> of the document is the host's UUID do
            # documents differing in it alone share what was parsed here.
            cache._caps[key[0]] = parts if key[1] == host_uuid else None
    assert parts is not None
    cells = _cells(parts.layout, free_mem, free_pages)
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
        host_uuid=host_uuid,
        cells=cells,
        cpus_total=cpus_total,
        memory_kib=memory,
        free_memory_kib=free,
        hypervisor=dc.hypervisor if dc else None,
        host_model=dc.host_model if dc else None,
        usable_models=dc.usable_models if dc else None,
        machine_types=parts.machines,
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
                          "memoryBacking", "clock", "devices"})


def _kids(el: Any, tags: frozenset[str]) -> dict[str, list[Any]]:
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


def _devices(devices: Any) -> tuple[tuple[Disk, ...], tuple[HostDev, ...]]:
    kids = _kids(devices, _DEVICE_TAGS)
    disks = kids.get("disk") or []
    hostdevs = kids.get("hostdev") or []
    sriov = [c for c in kids.get("interface") or () if c.get("type") == "hostdev"]
    return (_disks(disks) if disks else (),
            _hostdevs(hostdevs, sriov) if hostdevs or sriov else ())


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
    return _domain(_root(xml, source, "domain"), source, host, meta, cache)


def _domain(root: Any, source: str, host: str, meta: Mapping[str, Any] | None,
            cache: CpuCache | None) -> Domain:
    kids = _kids(root, _DOMAIN_TAGS)
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
    vcpus = _int(vcpu_els[0].text, source, "vcpu count") if vcpu_els else 1
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
            vcpupin.append((_int(p.get("vcpu"), source, "vcpupin vcpu"),
                            parse_cpuset(p.get("cpuset"), source)))
        e = _first(tune_els[:1], "emulatorpin")
        if e is not None:
            emulatorpin = parse_cpuset(e.get("cpuset"), source)
    nt = _first(kids.get("numatune"), "memory")  # find("numatune/memory")
    vnuma: list[tuple[int, tuple[int, ...], int]] = []
    for cpu_el in cpu_els or ():  # findall("cpu/numa/cell")
        for numa in cpu_el.iterchildren("numa"):
            for c in numa.iterchildren("cell"):
                cid = _int(c.get("id") or str(len(vnuma)), source, "NUMA cell id")
                mem = _int(c.get("memory"), source, "NUMA cell memory") * \
                    _UNITS.get((c.get("unit") or "KiB").lower(), 1024) // 1024
                vnuma.append((cid, parse_cpuset(c.get("cpus"), source), mem))
    huge: list[int] = []
    hp = _first(kids.get("memoryBacking"), "hugepages")  # find("memoryBacking/hugepages")
    if hp is not None:
        for page in hp.iterchildren("page"):
            size = _int(page.get("size"), source, "huge page size") * \
                _UNITS.get((page.get("unit") or "KiB").lower(), 1024) // 1024
            if size not in huge:
                huge.append(size)
        if not huge:
            huge.append(0)  # <hugepages/>: the host's default huge page size
    tsc = None  # find("clock/timer[@name='tsc']")
    for clock in kids.get("clock") or ():
        tsc = next((t for t in clock.iterchildren("timer") if t.get("name") == "tsc"), None)
        if tsc is not None:
            break
    tsc_freq = _int(tsc.get("frequency"), source, "TSC frequency") \
        if tsc is not None and tsc.get("frequency") else None
    dev_els = kids.get("devices")
    disks, hostdevs = _devices(dev_els[0]) if dev_els else ((), ())
    return Domain(
        name=name,
        uuid=_findtext(kids.get("uuid")) or meta.get("uuid"),
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
        disks=disks,
        hostdevs=hostdevs,
        tsc_frequency=tsc_freq,
        host=host,
    )


# --- guest digests -----------------------------------------------------------------------------
#
# What parse_domain makes of a guest's XML, as JSON, with the SHA-256 of the
# XML it was made from.  ``migplan collect`` stores one per guest in
# domains.json; a load uses it instead of parsing the XML whenever the hash
# matches the XML file's bytes (parsing 100,000 guest documents is most of a
# 10,000-host load).  The XML stays the source of truth: an edited XML file no
# longer matches and is parsed; a digest of another version or of a wrong
# shape is ignored and the XML parsed.  See docs/snapshot.md.

DIGEST_VERSION = 1


def domain_digest(xml: bytes, source: str = "domain.xml") -> dict[str, Any] | None:
    """The digest of a guest's XML (see above); None when the XML does not parse
    (the load then parses it and reports the error)."""
    try:
        root = _root(xml, source, "domain")
        d = _domain(root, source, "", None, None)
    except InputError:
        return None
    cpu_els = _kids(root, frozenset({"cpu"})).get("cpu")
    cpu_key = etree.tostring(cpu_els[0], with_tail=False) if cpu_els else None
    return {
        "v": DIGEST_VERSION,
        "sha256": hashlib.sha256(xml).hexdigest(),
        "d": [d.name, d.uuid, d.state, d.memory_kib, d.vcpus,
              cpu_key.decode("utf-8") if cpu_key is not None else None,
              d.machine, d.arch, d.domain_type,
              [[v, list(c)] for v, c in d.vcpupin], list(d.emulatorpin),
              d.numatune_mode, list(d.numatune_nodes),
              [[i, list(c), m] for i, c, m in d.vnuma_cells], list(d.hugepages_kib),
              [[k.target, k.device, k.source_type, k.source, k.protocol, k.pool, k.readonly,
                k.shareable] for k in d.disks],
              [[h.kind, h.address] for h in d.hostdevs],
              d.tsc_frequency],
    }


class _Bad(Exception):
    pass


def _str(x: Any) -> str:
    if type(x) is not str:
        raise _Bad
    return x


def _ostr(x: Any) -> str | None:
    if x is not None and type(x) is not str:
        raise _Bad
    return x


def _nat(x: Any) -> int:
    if type(x) is not int or x < 0:
        raise _Bad
    return x


def _oint(x: Any) -> int | None:
    return None if x is None else _nat(x)


def _ints(x: Any) -> tuple[int, ...]:
    if type(x) is not list:
        raise _Bad
    return tuple(map(_nat, x))


def _rows(x: Any, n: int) -> list[list[Any]]:
    if type(x) is not list or any(type(r) is not list or len(r) != n for r in x):
        raise _Bad
    return x


def _bool(x: Any) -> bool:
    if type(x) is not bool:
        raise _Bad
    return x


def domain_from_digest(digest: Any, xml: bytes, source: str, *, host: str = "",
                       meta: Mapping[str, Any] | None = None,
                       cache: CpuCache | None = None) -> Domain | None:
    """``parse_domain(xml, ...)`` from the guest's digest, or None when the digest
    cannot stand for these bytes (another hash or version, a wrong shape): the
    caller then parses the XML.  The bytes still get the checks every document
    gets before parsing (empty, binary, DTD/ENTITY), with the same errors."""
    check_document(xml, source)
    if type(digest) is not dict or digest.get("v") != DIGEST_VERSION:
        return None
    if digest.get("sha256") != hashlib.sha256(xml).hexdigest():
        return None
    try:
        f = digest["d"]
        if type(f) is not list or len(f) != 18:
            raise _Bad
        cpu_key = _ostr(f[5])
        cpu = None
        if cpu_key is not None:
            csrc = f"{source}: guest CPU"
            key = cpu_key.encode("utf-8")
            cpu = (cache or CpuCache()).guest_from_key(key, csrc)
        meta = meta or {}
        name, xml_state = _str(f[0]), _str(f[2])
        if not name:
            raise _Bad
        return Domain(
            name=name,
            uuid=_ostr(f[1]) or meta.get("uuid"),
            state=meta.get("state") or xml_state,
            persistent=meta.get("persistent"),
            memory_kib=_nat(f[3]),
            vcpus=_nat(f[4]),
            cpu=cpu,
            machine=_ostr(f[6]),
            arch=_ostr(f[7]),
            domain_type=_ostr(f[8]),
            vcpupin=tuple((_nat(v), _ints(c)) for v, c in _rows(f[9], 2)),
            emulatorpin=_ints(f[10]),
            numatune_mode=_ostr(f[11]),
            numatune_nodes=_ints(f[12]),
            vnuma_cells=tuple((_nat(i), _ints(c), _nat(m)) for i, c, m in _rows(f[13], 3)),
            hugepages_kib=_ints(f[14]),
            disks=tuple(Disk(target=_str(t), device=_str(dv), source_type=_str(st),
                             source=_ostr(sr), protocol=_ostr(pr), pool=_ostr(po),
                             readonly=_bool(ro), shareable=_bool(sh))
                        for t, dv, st, sr, pr, po, ro, sh in _rows(f[15], 8)),
            hostdevs=tuple(HostDev(_str(k), _ostr(a)) for k, a in _rows(f[16], 2)),
            tsc_frequency=_oint(f[17]),
            host=host,
        )
    except (_Bad, InputError, KeyError, TypeError, ValueError):
        return None
