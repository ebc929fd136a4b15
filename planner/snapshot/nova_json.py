"""The snapshot's ``nova.json``: ``NovaFacts`` to JSON and back, validated field by field.

One declared shape per record (``_SHAPES``: field name and kind), used both ways, so the
writer and the reader cannot drift apart.  Reading checks every field and names the file
and the field in its error (``SNAP/nova.json: servers[2].flavor_vcpus: expected an integer
>= 0 or null, found '2'``).  Keys this version does not know are ignored (a later minor
addition); a ``schema`` other than ``NOVA_SCHEMA`` is refused.  Layout: docs/snapshot.md.

Never a credential: ``NovaFacts`` has no field for a user, password or token.
"""

from __future__ import annotations

import json
from typing import Any

from planner.errors import InputError
from planner.model import (
    NovaAggregate,
    NovaFacts,
    NovaHypervisor,
    NovaServer,
    NovaService,
    NovaZone,
)

NOVA_SCHEMA = 1

# kinds: "S" a non-empty string, "s" a string or null, "i" an integer >= 0 or null,
# "b" true/false or null, "L" a list of strings, "M" an object of string values (stored in
# the model as sorted (key, value) pairs).
_SHAPES: dict[type, tuple[tuple[str, str], ...]] = {
    NovaService: (("host", "S"), ("binary", "S"), ("id", "s"), ("zone", "s"), ("state", "s"),
                  ("status", "s"), ("disabled_reason", "s"), ("forced_down", "b"),
                  ("updated_at", "s")),
    NovaHypervisor: (("hostname", "S"), ("host", "s"), ("id", "s"), ("host_ip", "s"),
                     ("state", "s"), ("status", "s"), ("hypervisor_type", "s"),
                     ("hypervisor_version", "i")),
    NovaZone: (("name", "S"), ("available", "b"), ("hosts", "L")),
    NovaAggregate: (("name", "S"), ("id", "i"), ("availability_zone", "s"), ("hosts", "L"),
                    ("metadata", "M")),
    NovaServer: (("id", "S"), ("name", "S"), ("instance_name", "s"), ("host", "s"),
                 ("hypervisor_hostname", "s"), ("status", "s"), ("vm_state", "s"),
                 ("task_state", "s"), ("power_state", "i"), ("locked", "b"),
                 ("project_id", "s"), ("availability_zone", "s"), ("image_id", "s"),
                 ("flavor_name", "s"), ("flavor_ram_mib", "i"), ("flavor_vcpus", "i"),
                 ("flavor_disk_gb", "i"), ("flavor_swap_mib", "i"), ("flavor_ephemeral_gb", "i"),
                 ("extra_specs", "M"), ("image_properties", "M")),
}
# the lists of NovaFacts and the record each holds
_LISTS = (("services", NovaService), ("hypervisors", NovaHypervisor), ("zones", NovaZone),
          ("aggregates", NovaAggregate), ("servers", NovaServer))
_TOP = (("cloud", "s"), ("region", "s"), ("auth_url", "s"), ("compute_api_version", "s"))


def _encode(obj: Any, shape: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in shape:
        v = getattr(obj, name)
        if kind == "L":
            v = list(v)
        elif kind == "M":
            v = dict(v)
        out[name] = v
    return out


def nova_json(facts: NovaFacts) -> bytes:
    """The bytes of ``nova.json`` for ``facts`` (see docs/snapshot.md)."""
    doc: dict[str, Any] = {"schema": NOVA_SCHEMA}
    for name, _kind in _TOP:
        doc[name] = getattr(facts, name)
    for name, cls in _LISTS:
        doc[name] = [_encode(x, _SHAPES[cls]) for x in getattr(facts, name)]
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _bad(label: str, where: str, expected: str, value: Any) -> InputError:
    return InputError(f"{label}: {where}: expected {expected}, found {value!r:.60}")


def _value(v: Any, kind: str, label: str, where: str) -> Any:
    if kind == "S":
        if type(v) is not str or not v:
            raise _bad(label, where, "a non-empty string", v)
    elif kind == "s":
        if v is not None and type(v) is not str:
            raise _bad(label, where, "a string or null", v)
    elif kind == "i":
        if v is not None and (type(v) is not int or v < 0):
            raise _bad(label, where, "an integer >= 0 or null", v)
    elif kind == "b":
        if v is not None and type(v) is not bool:
            raise _bad(label, where, "true, false or null", v)
    elif kind == "L":
        if type(v) is not list or any(type(x) is not str for x in v):
            raise _bad(label, where, "a list of strings", v)
        return tuple(v)
    elif kind == "M":
        if type(v) is not dict or any(type(x) is not str for x in v.values()):
            raise _bad(label, where, "an object of string values", v)
        return tuple(sorted(v.items()))
    return v


def _decode(raw: Any, cls: type, label: str, where: str) -> Any:
    if type(raw) is not dict:
        raise _bad(label, where, "an object", raw)
    kwargs = {}
    for name, kind in _SHAPES[cls]:
        if name not in raw and kind == "S":
            raise InputError(f"{label}: {where}: no {name!r}")
        default: Any = [] if kind == "L" else {} if kind == "M" else None
        kwargs[name] = _value(raw.get(name, default), kind, label, f"{where}.{name}")
    return cls(**kwargs)


def parse_nova_json(data: bytes, label: str) -> NovaFacts:
    """``NovaFacts`` from the bytes of a ``nova.json`` (``label`` names the file in errors)."""
    if not data.strip():
        raise InputError(f"{label}: the file is empty")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{label}: not valid JSON: {err}") from None
    if type(doc) is not dict:
        raise InputError(f"{label}: expected a JSON object")
    schema = doc.get("schema")
    if schema != NOVA_SCHEMA:
        raise InputError(f"{label}: schema {schema!r} is not one this migplan reads "
                         f"({NOVA_SCHEMA}); collect the snapshot again or upgrade migplan")
    kwargs: dict[str, Any] = {}
    for name, kind in _TOP:
        kwargs[name] = _value(doc.get(name), kind, label, name)
    for name, cls in _LISTS:
        items = doc.get(name, [])
        if type(items) is not list:
            raise _bad(label, name, "a list", items)
        kwargs[name] = tuple(_decode(x, cls, label, f"{name}[{i}]") for i, x in enumerate(items))
    return NovaFacts(**kwargs)
