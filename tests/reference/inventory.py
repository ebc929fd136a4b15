"""Reference copy of planner/snapshot/read.py as of 7d96033 (before the fast loader).

One host after the other, every document parsed on its own; only
tests/test_load_equivalence.py uses it.  Do not optimise this file.
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.model import Domain, Host, Inventory, StoragePool
from reference.parse_host import CpuCache, build_host, parse_domain, parse_pool

MAX_FILE = 64 * 1024 * 1024

# What each optional file lets the planner check; the text goes into Host.missing.
MISSING = {
    "domcapabilities": "domcapabilities.xml (host-model CPU, usable CPU models)",
    "host.json": "host.json (free memory and huge pages per NUMA cell, libvirt/QEMU versions)",
    "pools": "storage pools (pools.json)",
    "domains": "guests (domains/)",
    "domains.json": "guest state and persistence (domains.json)",
    "free_memory": "free memory per NUMA cell",
    "free_pages": "free huge pages per NUMA cell",
    "versions": "libvirt/QEMU versions",
    "cpu_model_names": "CPU model names",
}


def _read(path: Path, label: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise InputError(f"{label}: {size} bytes is larger than the {MAX_FILE}-byte limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None


def _json(path: Path, label: str) -> Any:
    data = _read(path, label)
    if not data.strip():
        raise InputError(f"{label}: the file is empty")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{label}: not valid JSON: {err}") from None


def _opt(path: Path) -> bool:
    return path.is_file()


def load_host(d: Path, name: str, label: str, *, uri: str | None = None,
              cache: CpuCache | None = None) -> Host:
    """One host directory (``hosts/<name>``) to a Host."""
    missing: list[str] = []
    caps = _read(d / "capabilities.xml", f"{label}/capabilities.xml")
    domcaps = None
    if _opt(d / "domcapabilities.xml"):
        domcaps = _read(d / "domcapabilities.xml", f"{label}/domcapabilities.xml")
    else:
        missing.append(MISSING["domcapabilities"])
    facts: dict[str, Any] | None = None
    if _opt(d / "host.json"):
        facts = _json(d / "host.json", f"{label}/host.json")
        if not isinstance(facts, dict):
            raise InputError(f"{label}/host.json: expected a JSON object")
        for key in (facts.get("errors") or {}):
            text = MISSING.get(key)
            if text and text not in missing:
                missing.append(text)
        uri = uri or facts.get("uri")
    else:
        missing.append(MISSING["host.json"])

    pools: list[StoragePool] | None = None
    if _opt(d / "pools.json"):
        index = _json(d / "pools.json", f"{label}/pools.json")
        pools = []
        for p in _list_of_dicts(index, f"{label}/pools.json"):
            f = _member(d, p.get("file"), f"{label}/pools.json")
            pools.append(parse_pool(_read(f, f"{label}/{p['file']}"), f"{label}/{p['file']}",
                                    p.get("active")))
    elif (d / "pools").is_dir():
        pools = [parse_pool(_read(f, f"{label}/pools/{f.name}"), f"{label}/pools/{f.name}")
                 for f in sorted((d / "pools").glob("*.xml"))]
    else:
        missing.append(MISSING["pools"])

    domains: list[Domain] = []
    if _opt(d / "domains.json"):
        index = _json(d / "domains.json", f"{label}/domains.json")
        for g in _list_of_dicts(index, f"{label}/domains.json"):
            f = _member(d, g.get("file"), f"{label}/domains.json")
            src = f"{label}/{g['file']}"
            domains.append(parse_domain(_read(f, src), src, host=name, meta=g))
    elif (d / "domains").is_dir():
        missing.append(MISSING["domains.json"])
        for f in sorted((d / "domains").glob("*.xml")):
            src = f"{label}/domains/{f.name}"
            domains.append(parse_domain(_read(f, src), src, host=name))
    else:
        missing.append(MISSING["domains"])
    seen: set[str] = set()
    for dom in domains:
        if dom.name in seen:
            raise InputError(f"{label}: guest {dom.name!r} appears twice")
        seen.add(dom.name)

    return build_host(name, caps, uri=uri, domcapabilities=domcaps, facts=facts, pools=pools,
                      domains=domains, missing=missing, cache=cache, source=f"{label}/",
                      guests_listed=MISSING["domains"] not in missing)


def _list_of_dicts(obj: Any, label: str) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(x, dict) for x in obj):
        raise InputError(f"{label}: expected a JSON list of objects")
    return obj


def _member(d: Path, rel: Any, label: str) -> Path:
    """A file named inside a snapshot index, refused if it points outside the host dir.

    Checked on the name (no absolute path, no ``..``) rather than with
    ``resolve()``: that costs a realpath per file, a third of a 10,000-host load.
    """
    if not isinstance(rel, str) or not rel:
        raise InputError(f"{label}: entry without a 'file'")
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or ".." in parts:
        raise InputError(f"{label}: file {rel!r} points outside the host directory")
    return d / rel


def load(path: str | Path) -> Inventory:
    """The parsed inventory of a snapshot directory (see docs/snapshot.md)."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such snapshot directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (a snapshot is a directory with hosts/)")
    hosts_dir = root / "hosts"
    cache = CpuCache()
    hosts: list[Host] = []
    errors: list[tuple[str, str]] = []
    collected_at = None
    if (root / "manifest.json").exists():
        man = _json(root / "manifest.json", f"{root}/manifest.json")
        if not isinstance(man, dict) or not isinstance(man.get("hosts"), list):
            raise InputError(f"{root}/manifest.json: expected an object with a 'hosts' list")
        collected_at = man.get("collected_at")
        names: set[str] = set()
        for i, h in enumerate(_list_of_dicts(man["hosts"], f"{root}/manifest.json")):
            name = h.get("name")
            if not isinstance(name, str) or not name:
                raise InputError(f"{root}/manifest.json: host #{i + 1} has no name")
            if name in names:
                raise InputError(f"{root}/manifest.json: duplicate host name {name!r}")
            names.add(name)
            if h.get("status") != "ok":
                errors.append((name, str(h.get("error") or h.get("status") or "not collected")))
                continue
            d = _member(root, h.get("dir") or f"hosts/{name}", f"{root}/manifest.json")
            if not d.is_dir():
                raise InputError(f"{root}/manifest.json: host {name}: directory {d} is missing")
            hosts.append(load_host(d, name, f"{root}/hosts/{name}", uri=h.get("uri"),
                                   cache=cache))
    else:
        if not hosts_dir.is_dir():
            raise InputError(f"{root}: not a snapshot: no manifest.json and no hosts/ directory")
        lowered: dict[str, str] = {}
        for d in sorted(hosts_dir.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            # Host names are DNS names: case-insensitive, so cn1 and CN1 clash.
            if d.name.lower() in lowered:
                raise InputError(f"{hosts_dir}: duplicate host names {lowered[d.name.lower()]!r} "
                                 f"and {d.name!r}")
            lowered[d.name.lower()] = d.name
            if not (d / "capabilities.xml").exists():
                raise InputError(f"{d}: no capabilities.xml (the one file every host needs: "
                                 "virsh capabilities > capabilities.xml)")
            hosts.append(load_host(d, d.name, str(d), cache=cache))
    if not hosts:
        extra = f" ({len(errors)} could not be collected)" if errors else ""
        raise InputError(f"{root}: the snapshot has no hosts{extra}")
    return Inventory(hosts=tuple(hosts), collected_at=collected_at, source=str(root),
                     errors=tuple(errors))
