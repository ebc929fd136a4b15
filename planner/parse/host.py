"""Host XML (capabilities, domcapabilities, pools) and the snapshot's JSON facts to the model.

Pure: bytes and dicts in, frozen dataclasses out; no libvirt, no file paths.
Every document goes through ``planner.parse.xmlsafe.parse_document``; every
``<cpu>`` through ``planner.cpu.parse.parse_cpu_element``.  With a
``CpuCache`` (one per load), what repeats is parsed once: byte-identical
``<cpu>`` elements and domcapabilities, and capabilities documents that
differ only in the host UUID's text (see ``_caps_key``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from planner.cpu.cpudef import CpuDef
from planner.cpu.parse import parse_cpu_element
from planner.errors import InputError
from planner.model import Domain, Host, NumaCell, PageSize, StoragePool
from planner.parse.units import element_kib, parse_int, to_kib
from planner.parse.xmlsafe import parse_document

#: Pool types whose volumes every host of a cluster sees (a guest on them
#: needs no storage copy), versus types that live on one host's disks.
#: libvirt itself does not say; this is the rule Nova follows too (shared
#: when the backing store is network storage).  Unknown types: None.
SHARED_POOL_TYPES = frozenset({"netfs", "rbd", "gluster", "iscsi", "iscsi-direct", "sheepdog",
                               "vstorage"})
LOCAL_POOL_TYPES = frozenset({"dir", "fs", "logical", "disk", "zfs", "mpath", "scsi"})

# --- capabilities ------------------------------------------------------------------------


@dataclass(frozen=True)
class CapsSummary:
    """What collect needs from capabilities to ask the right follow-up questions."""

    arch: str | None
    cell_ids: tuple[int, ...]
    page_sizes_kib: tuple[int, ...]
    domain_types: tuple[str, ...]  # for the host arch: kvm, qemu ...


def caps_summary(xml: bytes, source: str = "capabilities.xml") -> CapsSummary:
    root = document_root(xml, source, "capabilities")
    arch = root.findtext("host/cpu/arch")
    cells = tuple(parse_int(c.get("id"), source, "cell id")
                  for c in root.findall("host/topology/cells/cell"))
    pages = tuple(parse_int(p.get("size"), source, "page size") for p in root.findall("host/cpu/pages"))
    types: list[str] = []
    for g in root.findall("guest"):
        a = g.find("arch")
        if a is not None and a.get("name") == arch:
            for d in a.findall("domain"):
                t = d.get("type")
                if t and t not in types:
                    types.append(t)
    return CapsSummary(arch, cells, pages, tuple(types))


def document_root(xml: bytes, source: str, tag: str) -> Any:
    """The hardened parse of a document whose root must be ``<tag>``."""
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

    def caps_parts(self, key: bytes) -> _CapsParts | None:
        """What an earlier capabilities document with this key (``_caps_key``) gave."""
        return self._caps.get(key)

    def remember_caps(self, key: bytes, parts: _CapsParts | None) -> None:
        """Share ``parts`` with later documents of ``key``; None: parse those every time."""
        self._caps[key] = parts

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
        cid = parse_int(c.get("id"), source, "cell id")
        mem_el = c.find("memory")
        memory = element_kib(mem_el, source, "cell memory") if mem_el is not None else None
        try:  # the hot loop of a large load: plain int() on thousands of ids
            cpus = tuple(map(int, _CELL_CPU_IDS(c)))
        except (TypeError, ValueError):
            raise InputError(f"{source}: invalid cpu id in NUMA cell {cid}") from None
        if cpus and min(cpus) < 0:
            raise InputError(f"{source}: invalid cpu id {min(cpus)} in NUMA cell {cid}")
        pages = []
        for p in c.findall("pages"):
            size = _pageelement_kib(p, source)
            total = parse_int(p.text, source, "page count") if p.text and p.text.strip() else None
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


def _pageelement_kib(p: Any, source: str) -> int:
    return to_kib(p.get("size"), p.get("unit"), source, "page size")


def _domain_types(root: Any, arch: str | None) -> tuple[str, ...] | None:
    """The guest types (kvm, qemu ...) capabilities offer for the host's architecture."""
    types: list[str] = []
    for g in root.findall("guest"):
        a = g.find("arch")
        if a is None or a.get("name") != arch:
            continue
        for d in a.findall("domain"):
            t = d.get("type")
            if t and t not in types:
                types.append(t)
    return tuple(types) if types else None


def _page_sizes(root: Any, source: str) -> tuple[int, ...] | None:
    """<host><cpu><pages>: every page size the host offers (KiB), or None when unsaid."""
    pages = root.findall("host/cpu/pages")
    if not pages:
        return None
    return tuple(sorted({_pageelement_kib(p, source) for p in pages}))


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
    root = document_root(xml, source, "domainCapabilities")
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
    root = document_root(xml, source, "pool")
    ptype = root.get("type") or "unknown"
    shared = True if ptype in SHARED_POOL_TYPES else False if ptype in LOCAL_POOL_TYPES else None
    target = root.findtext("target/path")
    if ptype == "rbd":
        target = target or root.findtext("source/name")
    return StoragePool(root.findtext("name") or "", ptype, target or None, shared, active)


def hostdev_network(xml: bytes, source: str) -> str | None:
    """The network's name when it is a pool of SR-IOV VFs (``<forward mode='hostdev'>``:
    each guest interface on it is a PCI device assigned to the guest), else None."""
    root = document_root(xml, source, "network")
    fwd = root.find("forward")
    if fwd is not None and fwd.get("mode") == "hostdev":
        return root.findtext("name") or None
    return None


@dataclass(frozen=True)
class _CapsParts:
    """What build_host takes from a capabilities document, besides the host UUID."""

    cpu: CpuDef
    layout: tuple[_CellLayout, ...]
    machines: tuple[str, ...] | None
    domain_types: tuple[str, ...] | None
    page_sizes: tuple[int, ...] | None


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
    guests_listed: bool = True,
    hostdev_networks: Sequence[str] | None = None,
) -> Host:
    """One Host from its capabilities and whatever else the snapshot holds.

    ``facts`` is the snapshot's host.json (versions, node info, free memory and
    pages per cell); see docs/snapshot.md.
    """
    src = f"{source}capabilities.xml"
    key = _caps_key(capabilities) if cache is not None else None
    parts = cache.caps_parts(key[0]) if cache is not None and key is not None else None
    root = None
    if parts is not None and key is not None:
        cpu, host_uuid = parts.cpu, key[1]
    else:
        root = document_root(capabilities, src, "capabilities")
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
        parts = _CapsParts(cpu, _cell_layout(root, src), _machines(root, arch),
                           _domain_types(root, arch), _page_sizes(root, src))
        if cache is not None and key is not None:
            # Only when the one <uuid> of the document is the host's UUID do
            # documents differing in it alone share what was parsed here.
            cache.remember_caps(key[0], parts if key[1] == host_uuid else None)
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
        domain_types=parts.domain_types,
        page_sizes_kib=parts.page_sizes,
        guests_listed=guests_listed,
        hostdev_networks=tuple(hostdev_networks) if hostdev_networks is not None else None,
    )
