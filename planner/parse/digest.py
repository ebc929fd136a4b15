"""Guest digests: what ``parse_domain`` makes of a guest's XML, as validated JSON."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from lxml import etree

from planner.errors import InputError
from planner.model import Disk, Domain, HostDev, NovaInstance
from planner.parse.guest import children, domain_from_root, with_sizes
from planner.parse.host import CpuCache, document_root
from planner.parse.xmlsafe import check_document

# --- guest digests -----------------------------------------------------------------------------
#
# What parse_domain makes of a guest's XML, as JSON, with the SHA-256 of the
# XML it was made from.  ``migplan collect`` stores one per guest in
# domains.json; a load uses it instead of parsing the XML whenever the hash
# matches the XML file's bytes (parsing 100,000 guest documents is most of a
# 10,000-host load).  The XML stays the source of truth: an edited XML file no
# longer matches and is parsed; a digest of another version or of a wrong
# shape is ignored and the XML parsed.  See docs/snapshot.md.

#: 2: guests' networks (issue 14); 3: the <nova:instance> metadata (issue 12).  Digests of
#: another version are ignored, their XML parsed.
DIGEST_VERSION = 3

# NovaInstance's fields in digest order: (name, kind) with kind "s" (str or None) or "i" (int
# or None).  The digest stores them as a list in this order, or null for a guest Nova does not
# manage.  Not its uuid: that is the domain's (field 1, or domains.json's), as when parsing.
_NOVA_FIELDS = (("name", "s"), ("flavor", "s"), ("flavor_memory_mib", "i"),
                ("flavor_vcpus", "i"), ("flavor_disk_gb", "i"), ("project_id", "s"),
                ("project_name", "s"), ("root_type", "s"), ("namespace", "s"), ("package", "s"),
                ("creation_time", "s"), ("flavor_swap_mib", "i"), ("flavor_ephemeral_gb", "i"),
                ("user_id", "s"), ("user_name", "s"), ("root_id", "s"))


def domain_digest(xml: bytes, source: str = "domain.xml") -> dict[str, Any] | None:
    """The digest of a guest's XML (see above); None when the XML does not parse
    (the load then parses it and reports the error)."""
    try:
        root = document_root(xml, source, "domain")
        d = domain_from_root(root, source, "", None, None)
    except InputError:
        return None
    cpu_els = children(root, frozenset({"cpu"})).get("cpu")
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
              d.tsc_frequency, list(d.networks),
              None if d.nova is None else [getattr(d.nova, f) for f, _k in _NOVA_FIELDS]],
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


def _strs(x: Any) -> tuple[str, ...]:
    if type(x) is not list:
        raise _Bad
    return tuple(map(_str, x))


def _rows(x: Any, n: int) -> list[list[Any]]:
    if type(x) is not list or any(type(r) is not list or len(r) != n for r in x):
        raise _Bad
    return x


def _bool(x: Any) -> bool:
    if type(x) is not bool:
        raise _Bad
    return x


def _nova(x: Any, uuid: str | None) -> NovaInstance | None:
    if x is None:
        return None
    if type(x) is not list or len(x) != len(_NOVA_FIELDS):
        raise _Bad
    values: dict[str, Any] = {f: (_ostr(v) if k == "s" else _oint(v))
                              for (f, k), v in zip(_NOVA_FIELDS, x, strict=True)}
    return NovaInstance(uuid=uuid, **values)


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
        if type(f) is not list or len(f) != 20:
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
        uuid = _ostr(f[1]) or meta.get("uuid")
        return Domain(
            name=name,
            uuid=uuid,
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
            disks=with_sizes(tuple(Disk(target=_str(t), device=_str(dv), source_type=_str(st),
                                        source=_ostr(sr), protocol=_ostr(pr), pool=_ostr(po),
                                        readonly=_bool(ro), shareable=_bool(sh))
                                   for t, dv, st, sr, pr, po, ro, sh in _rows(f[15], 8)), meta),
            hostdevs=tuple(HostDev(_str(k), _ostr(a)) for k, a in _rows(f[16], 2)),
            tsc_frequency=_oint(f[17]),
            host=host,
            networks=_strs(f[18]),
            nova=_nova(f[19], uuid),
        )
    except (_Bad, InputError, KeyError, TypeError, ValueError):
        return None
