"""The snapshot's JSON documents checked at load: every field of the type collect writes.

``host.json``, the entries of ``domains.json``, ``pools.json`` and ``manifest.json``:
a count is a whole number >= 0 (not ``"48"``, not ``-1``, not ``48.5``, not ``true``),
a name is a string, a flag a boolean; ``null`` where collect writes null for "not read".
An error names the file and the field (``hosts/cn01/host.json: nodeinfo.cpus: expected
a whole number >= 0, found '48'``), so a hand-edited snapshot fails at load with what to
fix, never later as ``internal error: TypeError`` or a "-1862.6 GiB free" verdict.
NaN and Infinity never get this far (``files.parse_json`` refuses them).
The layout is docs/snapshot.md's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import InputError

#: Larger than any memory in bytes a host can have: a bound, not a limit of libvirt's.
MAX_COUNT = 2**63 - 1
_STR_OR_NONE = (str, type(None))


def _bad(label: str, field: str, want: str, value: Any) -> InputError:
    return InputError(f"{label}: {field}: expected {want}, found {value!r}")


def count(value: Any, label: str, field: str, *, optional: bool = True,
          minimum: int = 0) -> int | None:
    """A whole number >= ``minimum`` (booleans and floats are not)."""
    if value is None and optional:
        return None
    if type(value) is not int or not minimum <= value <= MAX_COUNT:
        raise _bad(label, field, f"a whole number >= {minimum}"
                   + (" or null" if optional else ""), value)
    return value


def text(value: Any, label: str, field: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(label, field, "a string" + (" or null" if optional else ""), value)
    return value


def flag(value: Any, label: str, field: str) -> bool | None:
    if value is not None and type(value) is not bool:
        raise _bad(label, field, "true, false or null", value)
    return value


def _obj(value: Any, label: str, field: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(label, field, "an object or null", value)
    return value


def check_host_json(doc: Any, label: str) -> dict[str, Any]:
    """host.json, every field collect writes (unknown fields are left alone)."""
    if not isinstance(doc, dict):
        raise InputError(f"{label}: expected a JSON object")
    text(doc.get("uri"), label, "uri")
    text(doc.get("hostname"), label, "hostname")
    count(doc.get("free_memory_bytes"), label, "free_memory_bytes")
    ver = _obj(doc.get("versions"), label, "versions") or {}
    for k in ("libvirt", "hypervisor_type", "hypervisor"):
        text(ver.get(k), label, f"versions.{k}")
    node = _obj(doc.get("nodeinfo"), label, "nodeinfo") or {}
    text(node.get("model"), label, "nodeinfo.model")
    count(node.get("cpus"), label, "nodeinfo.cpus", minimum=1)
    for k in ("memory_kib", "mhz", "nodes", "sockets", "cores", "threads"):
        count(node.get(k), label, f"nodeinfo.{k}")
    names = doc.get("cpu_model_names")
    if names is not None and (not isinstance(names, list)
                              or not set(map(type, names)) <= {str}):
        raise _bad(label, "cpu_model_names", "a list of strings or null", names)
    cells = doc.get("cells")
    if cells is not None:
        if not isinstance(cells, list):
            raise _bad(label, "cells", "a list or null", cells)
        for i, c in enumerate(cells):
            where = f"cells[{i}]"
            if not isinstance(c, dict):
                raise _bad(label, where, "an object", c)
            count(c.get("id"), label, f"{where}.id", optional=False)
            count(c.get("free_bytes"), label, f"{where}.free_bytes")
            pages = _obj(c.get("free_pages"), label, f"{where}.free_pages") or {}
            for size, n in pages.items():
                if not size.isdigit():
                    raise _bad(label, f"{where}.free_pages", "page sizes in KiB as keys", size)
                count(n, label, f"{where}.free_pages.{size}", optional=False)
    errors = _obj(doc.get("errors"), label, "errors") or {}
    for k, v in errors.items():
        text(v, label, f"errors.{k}", optional=False)
    return doc


def check_guest_entry(e: Mapping[str, Any], label: str, i: int) -> None:
    """One entry of domains.json (its digest is checked where it is used)."""
    # The hot path of a large load (100,000 entries): one test per field, no call when
    # all is well; the checks below say what is wrong.
    reason, pers = e.get("reason"), e.get("persistent")
    if type(e.get("name")) is str and type(e.get("uuid")) in _STR_OR_NONE \
            and type(e.get("state")) in _STR_OR_NONE and "disks" not in e \
            and (reason is None or (type(reason) is int and 0 <= reason <= MAX_COUNT)) \
            and (pers is None or type(pers) is bool):
        return
    where = f"entry {i + 1}"
    text(e.get("name"), label, f"{where}.name")
    text(e.get("uuid"), label, f"{where}.uuid")
    text(e.get("state"), label, f"{where}.state")
    count(e.get("reason"), label, f"{where}.reason")
    flag(e.get("persistent"), label, f"{where}.persistent")
    disks = _obj(e.get("disks"), label, f"{where}.disks") or {}
    for target, size in disks.items():
        if not isinstance(size, dict):
            raise _bad(label, f"{where}.disks.{target}", "an object", size)
        for k in ("capacity", "allocation", "physical"):
            count(size.get(k), label, f"{where}.disks.{target}.{k}", optional=False)


def check_pool_entry(e: Mapping[str, Any], label: str, i: int) -> None:
    where = f"entry {i + 1}"
    text(e.get("name"), label, f"{where}.name")
    flag(e.get("active"), label, f"{where}.active")
    flag(e.get("persistent"), label, f"{where}.persistent")


def check_manifest_host(e: Mapping[str, Any], label: str, i: int) -> None:
    where = f"hosts[{i}]"
    for k in ("uri", "status", "error", "dir", "hostname"):
        text(e.get(k), label, f"{where}.{k}")
