"""Load an inventory snapshot directory into the model: ``load(path) -> Inventory``.

Adapter: reads files, hands bytes to the pure parsers (``planner.parse.host``).
Accepts what ``migplan collect`` writes and hand-made snapshots: only
``hosts/<name>/capabilities.xml`` is required; whatever else is absent is
listed per host in ``Host.missing`` so the rules can answer "unknown".
Layout: docs/snapshot.md.

Scale (issue 3 and 4: 10,000 hosts, 100,000 guests): guest XML is the bulk.
A guest whose domains.json entry carries a digest matching its XML's bytes
(``migplan collect`` writes them; ``planner.parse.host.domain_digest``) is
built from the digest; every other document is parsed in full (hardened,
``planner.parse.xmlsafe``); what
repeats across hosts (host CPUs, domcapabilities, capabilities but for their
UUID, guest ``<cpu>`` elements) is parsed once per load; above
``PARALLEL_MIN_HOSTS`` hosts, worker processes load chunks of hosts.
``benchmarks/bench_inventory_load.py`` measures it.  ``nova.json``, when present, becomes
``Inventory.nova`` (``planner.snapshot.nova_json``).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.model import Domain, Host, Inventory, StoragePool
from planner.parse.digest import domain_from_digest
from planner.parse.guest import parse_domain
from planner.parse.host import CpuCache, build_host, hostdev_network, parse_pool
from planner.snapshot.facts import (
    check_guest_entry,
    check_host_json,
    check_manifest_host,
    check_pool_entry,
    text,
)
from planner.snapshot.files import SnapshotFiles, member, parse_json
from planner.snapshot.identity import merge_same_hosts
from planner.snapshot.nova_json import parse_nova_json

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


def load_host(d: Path, name: str, label: str, *, uri: str | None = None,
              cache: CpuCache | None = None, files: SnapshotFiles | None = None) -> Host:
    """One host directory (``hosts/<name>``) to a Host; ``files``: the snapshot it is in
    (its links may not leave it; default: this host directory)."""
    missing: list[str] = []
    ds = os.fspath(d)
    fs = files or SnapshotFiles(ds)
    fs.check_dir(ds, label)
    caps = fs.read(f"{ds}/capabilities.xml", f"{label}/capabilities.xml")
    domcaps = fs.read_opt(f"{ds}/domcapabilities.xml", f"{label}/domcapabilities.xml")
    if domcaps is None:
        missing.append(MISSING["domcapabilities"])
    facts: dict[str, Any] | None = None
    raw = fs.read_opt(f"{ds}/host.json", f"{label}/host.json")
    if raw is not None:
        facts = check_host_json(parse_json(raw, f"{label}/host.json"), f"{label}/host.json")
        for key in (facts.get("errors") or {}):
            text = MISSING.get(key)
            if text and text not in missing:
                missing.append(text)
        uri = uri or facts.get("uri")
    else:
        missing.append(MISSING["host.json"])

    pools: list[StoragePool] | None = None
    raw = fs.read_opt(f"{ds}/pools.json", f"{label}/pools.json")
    if raw is not None:
        index = parse_json(raw, f"{label}/pools.json")
        pools = []
        for i, p in enumerate(_list_of_dicts(index, f"{label}/pools.json")):
            check_pool_entry(p, f"{label}/pools.json", i)
            f = member(ds, p.get("file"), f"{label}/pools.json")
            pools.append(parse_pool(fs.read(f, f"{label}/{p['file']}"), f"{label}/{p['file']}",
                                    p.get("active")))
    elif (d / "pools").is_dir():
        fs.check_dir(f"{ds}/pools", f"{label}/pools")
        pools = [parse_pool(fs.read(f, f"{label}/pools/{f.name}"), f"{label}/pools/{f.name}")
                 for f in sorted((d / "pools").glob("*.xml"))]
    else:
        missing.append(MISSING["pools"])

    networks: list[str] | None = None  # the hostdev (SR-IOV VF pool) networks
    raw = fs.read_opt(f"{ds}/networks.json", f"{label}/networks.json")
    if raw is not None:
        networks = []
        for i, n in enumerate(_list_of_dicts(parse_json(raw, f"{label}/networks.json"),
                                             f"{label}/networks.json")):
            check_pool_entry(n, f"{label}/networks.json", i)  # name, active, persistent
            f = member(ds, n.get("file"), f"{label}/networks.json")
            name_if = hostdev_network(fs.read(f, f"{label}/{n['file']}"), f"{label}/{n['file']}")
            if name_if is not None:
                networks.append(name_if)

    domains: list[Domain] = []
    listed = True
    raw = fs.read_opt(f"{ds}/domains.json", f"{label}/domains.json")
    if raw is not None:
        index = parse_json(raw, f"{label}/domains.json")
        for i, g in enumerate(_list_of_dicts(index, f"{label}/domains.json")):
            check_guest_entry(g, f"{label}/domains.json", i)
            f = member(ds, g.get("file"), f"{label}/domains.json")
            src = f"{label}/{g['file']}"
            raw = fs.read(f, src)
            dg = g.get("digest")
            dom = None if dg is None else \
                domain_from_digest(dg, raw, src, host=name, meta=g, cache=cache)
            domains.append(dom or parse_domain(raw, src, host=name, meta=g, cache=cache))
    elif (d / "domains").is_dir():
        missing.append(MISSING["domains.json"])
        fs.check_dir(f"{ds}/domains", f"{label}/domains")
        for fp in sorted((d / "domains").glob("*.xml")):
            src = f"{label}/domains/{fp.name}"
            domains.append(parse_domain(fs.read(fp, src), src, host=name, cache=cache))
    else:
        missing.append(MISSING["domains"])
        listed = False
    seen: set[str] = set()
    for dom in domains:
        if dom.name in seen:
            raise InputError(f"{label}: guest {dom.name!r} appears twice")
        seen.add(dom.name)

    return build_host(name, caps, uri=uri, domcapabilities=domcaps, facts=facts, pools=pools,
                      domains=domains, missing=missing, cache=cache, source=f"{label}/",
                      guests_listed=listed, hostdev_networks=networks)


def _list_of_dicts(obj: Any, label: str) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(x, dict) for x in obj):
        raise InputError(f"{label}: expected a JSON list of objects")
    return obj


#: Snapshots of at least this many hosts are loaded by worker processes (one a
#: CPU): below it, starting them costs more than they save.
PARALLEL_MIN_HOSTS = 400
#: Hosts a worker loads per task: small enough that the parent unpickles one
#: task's hosts while the workers go on, large enough to pickle CPUs once.
CHUNK_HOSTS = 250

# (host directory, name, label, uri from the manifest, snapshot root)
_Task = tuple[str, str, str, "str | None", str]

_worker_cache: CpuCache | None = None
_worker_files: dict[str, SnapshotFiles] = {}


def _files(root: str, known: dict[str, SnapshotFiles]) -> SnapshotFiles:
    fs = known.get(root)
    if fs is None:
        fs = known[root] = SnapshotFiles(root)
    return fs


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _forkable() -> bool:
    """fork (workers start at once, with planner already imported) only when
    nothing else runs in this process: forking beside threads can copy a lock
    some thread holds."""
    return threading.active_count() == 1 and "fork" in mp.get_all_start_methods()


def _load_chunk(tasks: list[_Task]) -> list[Host]:
    """Worker: hosts in order, with a cache that lives as long as the worker."""
    # Forked while load() had gc off: the worker runs without it too.
    global _worker_cache
    if _worker_cache is None:
        _worker_cache = CpuCache()
    cache = _worker_cache
    return [load_host(Path(d), name, label, uri=uri, cache=cache, files=_files(r, _worker_files))
            for d, name, label, uri, r in tasks]


def _load_hosts(tasks: list[_Task]) -> list[Host]:
    """Every task's Host, in task order; the first failing task's error, as one process would."""
    cpus = min(_workers(), 8)
    cache = CpuCache()
    known: dict[str, SnapshotFiles] = {}
    if len(tasks) < PARALLEL_MIN_HOSTS or cpus < 2 or not _forkable():
        return [load_host(Path(d), name, label, uri=uri, cache=cache, files=_files(r, known))
                for d, name, label, uri, r in tasks]
    size = max(1, min(CHUNK_HOSTS, -(-len(tasks) // (cpus * 4))))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    # This process loads chunks too (what it loads needs no pickling), taking
    # the next one whenever the workers have enough queued: cpus - 1 workers.
    done: dict[int, list[Host] | BaseException] = {}
    with ProcessPoolExecutor(max_workers=cpus - 1, mp_context=mp.get_context("fork")) as ex:
        futures: dict[int, Future[list[Host]]] = {}
        i = 0
        try:
            while i < len(chunks):
                queued = sum(1 for f in futures.values() if not f.done())
                if queued < cpus:
                    futures[i] = ex.submit(_load_chunk, chunks[i])
                else:
                    try:
                        done[i] = [load_host(Path(d), name, label, uri=uri, cache=cache,
                                             files=_files(r, known))
                                   for d, name, label, uri, r in chunks[i]]
                    except Exception as err:  # raised below if no earlier chunk failed
                        done[i] = err
                        break  # what comes after it cannot matter
                i += 1
            hosts: list[Host] = []
            for k in range(len(chunks)):
                part = done[k] if k in done else futures[k].result()
                if isinstance(part, BaseException):
                    raise part
                hosts += part
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return hosts


def host_uris(path: str | Path) -> dict[str, str]:
    """Host name -> libvirt URI of every collected host (for `migrate`/`drain --snapshot`).

    Read with the same checks as ``load``.  A redacted URI (``***``) cannot be used to
    connect and is left out: the operator gives that host's URI instead.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: no such snapshot directory")
    fs = SnapshotFiles(root)
    entries: list[dict[str, Any]] = []
    if (root / "manifest.json").exists():
        label = f"{root}/manifest.json"
        man = fs.json(root / "manifest.json", label)
        if not isinstance(man, dict) or not isinstance(man.get("hosts"), list):
            raise InputError(f"{label}: expected an object with a 'hosts' list")
        entries = _list_of_dicts(man["hosts"], label)
    elif (root / "hosts").is_dir():
        for d in sorted((root / "hosts").iterdir()):
            if d.is_dir() and (d / "host.json").is_file():
                facts = fs.json(d / "host.json", f"{d}/host.json")
                if isinstance(facts, dict):
                    entries.append({**facts, "name": d.name})
    else:
        raise InputError(f"{root}: not a snapshot: no manifest.json and no hosts/ directory")
    out = {}
    for e in entries:
        name, uri = e.get("name"), e.get("uri")
        if isinstance(name, str) and name and isinstance(uri, str) and uri and "***" not in uri:
            out[name] = uri
    return out


def load(path: str | Path) -> Inventory:
    """The parsed inventory of a snapshot directory (see docs/snapshot.md).

    Large snapshots are loaded by worker processes; the hosts come back in
    snapshot order and equal what one process builds.
    """
    enabled = gc.isenabled()
    # A load allocates millions of objects and frees none of them: the cyclic
    # collector would rescan them all again and again for nothing (a third of
    # a 10,000-host load).
    gc.disable()
    try:
        return _load(Path(path))
    finally:
        if enabled:
            gc.enable()


def _load(root: Path) -> Inventory:
    if not root.exists():
        raise InputError(f"{root}: no such snapshot directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (a snapshot is a directory with hosts/)")
    hosts_dir = root / "hosts"
    fs = SnapshotFiles(root)
    tasks: list[_Task] = []
    errors: list[tuple[str, str]] = []
    collected_at = None
    # An error found while listing hosts is raised after the hosts listed
    # before it are loaded: the same first error as loading one after the other.
    late: InputError | None = None
    try:
        if (root / "manifest.json").exists():
            man = fs.json(root / "manifest.json", f"{root}/manifest.json")
            if not isinstance(man, dict) or not isinstance(man.get("hosts"), list):
                raise InputError(f"{root}/manifest.json: expected an object with a 'hosts' list")
            collected_at = text(man.get("collected_at"), f"{root}/manifest.json",
                                "collected_at")
            names: set[str] = set()
            for i, h in enumerate(_list_of_dicts(man["hosts"], f"{root}/manifest.json")):
                check_manifest_host(h, f"{root}/manifest.json", i)
                name = h.get("name")
                if not isinstance(name, str) or not name:
                    raise InputError(f"{root}/manifest.json: host #{i + 1} has no name")
                if name in names:
                    raise InputError(f"{root}/manifest.json: duplicate host name {name!r}")
                names.add(name)
                if h.get("status") != "ok":
                    errors.append((name, str(h.get("error") or h.get("status") or "not collected")))
                    continue
                d = Path(member(str(root), h.get("dir") or f"hosts/{name}",
                                f"{root}/manifest.json"))
                if not d.is_dir():
                    raise InputError(f"{root}/manifest.json: host {name}: directory {d} is missing")
                tasks.append((str(d), name, f"{root}/hosts/{name}", h.get("uri"), str(root)))
        else:
            if not hosts_dir.is_dir():
                raise InputError(f"{root}: not a snapshot: no manifest.json and no hosts/ directory")
            lowered: dict[str, str] = {}
            for d in sorted(hosts_dir.iterdir()):
                if not d.is_dir() or d.name.startswith("."):
                    continue
                # Host names are DNS names: case-insensitive, so cn1 and CN1 clash.
                if d.name.lower() in lowered:
                    raise InputError(f"{hosts_dir}: duplicate host names "
                                     f"{lowered[d.name.lower()]!r} and {d.name!r}")
                lowered[d.name.lower()] = d.name
                if not (d / "capabilities.xml").exists():
                    raise InputError(f"{d}: no capabilities.xml (the one file every host needs: "
                                     "virsh capabilities > capabilities.xml)")
                tasks.append((str(d), d.name, str(d), None, str(root)))
    except InputError as err:
        if not tasks:
            raise
        late = err
    hosts = _load_hosts(tasks)
    if late is not None:
        raise late
    if not hosts:
        extra = f" ({len(errors)} could not be collected)" if errors else ""
        raise InputError(f"{root}: the snapshot has no hosts{extra}")
    hosts, warnings, aliases = merge_same_hosts(hosts)
    nova_raw = fs.read_opt(root / "nova.json", f"{root}/nova.json")
    nova = parse_nova_json(nova_raw, f"{root}/nova.json") if nova_raw is not None else None
    return Inventory(hosts=tuple(hosts), collected_at=collected_at, source=str(root),
                     errors=tuple(errors), warnings=tuple(warnings),
                     aliases=tuple(aliases.items()), nova=nova)
